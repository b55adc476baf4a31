"""Providers, their key pools and the model aliases' deployments, precomputed once for the router."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from llm_obs_middleware.config.settings import Config, ProviderConfig
from llm_obs_middleware.providers.base import AdapterDefaults, ProviderAdapter
from llm_obs_middleware.providers.registry import PROVIDER_NAMES, adapter_for_kind
from llm_obs_middleware.providers.translators import UnsupportedRule
from llm_obs_middleware.records.bounds import bounded
from llm_obs_middleware.routing.balancing import DeploymentState, KeyPool, KeyState
from llm_obs_middleware.routing.passthrough_rules import PassthroughRules
from llm_obs_middleware.upstream.paths import contained_path

__all__ = ["AliasRoute", "ProviderTarget", "Routes"]

_MAX_NATIVE_DEPLOYMENTS = 1024  # native routes name any model: keep the health table bounded


class ProviderTarget:
    """A configured provider: base URL, adapter, static headers, key pool and timeouts."""

    __slots__ = (
        "adapter",
        "base_url",
        "config",
        "gen_ai_name",
        "headers",
        "host",
        "kind",
        "name",
        "passthrough",
        "pool",
        "port",
        "signs",
        "timeout",
        "total_timeout",
    )

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config
        self.kind = config.kind
        self.adapter: ProviderAdapter = adapter_for_kind(config.kind)
        self.adapter.prepare(name, config)  # credentials are checked at start-up, not on the first request
        # Only a signing adapter (Bedrock's SigV4) needs the final request as an httpx.Request.
        self.signs = getattr(type(self.adapter), "sign", None) is not AdapterDefaults.sign
        self.gen_ai_name = PROVIDER_NAMES[config.kind]
        self.base_url = config.base_url.rstrip("/")
        url = urlsplit(self.base_url)
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.headers: list[tuple[bytes, bytes]] = [
            (key.lower().encode(), value.encode()) for key, value in config.headers.items()
        ]
        self.headers.append((b"accept-encoding", b"identity"))  # we observe the bytes we forward
        keys = [
            KeyState(key.name or f"{name}#{index}", self.adapter.auth_headers(key.get_secret_value()), key.weight)
            for index, key in enumerate(config.api_keys)
        ]
        # A provider without keys (local servers, SigV4-signed Bedrock) still needs one "key" to pick.
        self.pool = KeyPool(keys or [KeyState(f"{name}#none", [])], config.key_strategy)
        timeout = config.timeout
        # No phase outlasts the total: the transport then bounds the wait for the headers, no timer needed.
        connect, read = min(timeout.connect, timeout.total), min(timeout.read, timeout.total)
        self.timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
        self.total_timeout = timeout.total
        endpoints = config.passthrough_endpoints
        self.passthrough = PassthroughRules(
            self.adapter.passthrough_endpoints if endpoints is None else endpoints,
            where=f"providers.{name}.passthrough_endpoints",
        )

    def url(self, path: str, query: str = "") -> str | None:
        """The upstream URL of ``path`` (percent-encoded, relative to ``base_url``) and ``query``; ``None``
        when the path would leave the base path (dot segments, however encoded) or start a query itself.
        Every URL sent with this provider's credentials is built here."""
        if not contained_path(path):
            return None
        if not query:
            return self.base_url + path
        return self.base_url + path + "?" + (query.replace("#", "%23") if "#" in query else query)


class AliasRoute:
    """A model alias: its deployments, how to pick among them, and what to fall back to."""

    __slots__ = ("alias", "cum_weights", "deployments", "fallbacks", "strategy", "unsupported")

    def __init__(
        self,
        alias: str,
        deployments: list[DeploymentState],
        strategy: str,
        fallbacks: list[str],
        unsupported: UnsupportedRule = "drop",
    ) -> None:
        self.alias = alias
        self.deployments = deployments
        self.strategy = strategy
        self.fallbacks = fallbacks
        self.unsupported = unsupported
        """What translation does with a parameter the provider lacks: ``drop`` or ``error``."""
        total = 0.0
        self.cum_weights: list[float] = []
        for deployment in deployments:
            total += deployment.weight
            self.cum_weights.append(total)


class Routes:
    """Every provider and alias; native routes get a deployment per (provider, model) on first use."""

    def __init__(self, config: Config) -> None:
        self.providers = {name: ProviderTarget(name, provider) for name, provider in config.providers.items()}
        self.aliases: dict[str, AliasRoute] = {}
        for alias, route in config.models.items():
            deployments = [
                DeploymentState(
                    f"{alias}/{target.provider}/{target.model or alias}",
                    self.providers[target.provider],
                    target.model or alias,
                    target.weight,
                )
                for target in route.targets()
            ]
            unsupported = route.unsupported_params or config.routing.unsupported_params
            self.aliases[alias] = AliasRoute(alias, deployments, route.strategy, list(route.fallbacks), unsupported)
        self.unsupported: UnsupportedRule = config.routing.unsupported_params
        self.default = self.providers[config.default_provider] if config.default_provider else None
        self._native: dict[tuple[str, str], DeploymentState] = {}
        self._default_routes: dict[str, AliasRoute] = {}

    def native(self, provider: ProviderTarget, model: str) -> AliasRoute:
        """The one-deployment route of a native request (health kept per provider and model)."""
        key = (provider.name, model)
        deployment = self._native.get(key)
        if deployment is None:
            if len(self._native) >= _MAX_NATIVE_DEPLOYMENTS:
                self._native.pop(next(iter(self._native)))
            deployment = self._native[key] = DeploymentState(bounded(f"{provider.name}/{model}"), provider, model, 1.0)
        return AliasRoute(model, [deployment], "weighted", [], self.unsupported)

    def provider_model(self, model: str) -> AliasRoute | None:
        """The route of ``{provider}/{model}``, when the first segment names a configured provider."""
        name, _, rest = model.partition("/")
        provider = self.providers.get(name) if rest else None
        return self.native(provider, rest) if provider is not None else None

    def for_default(self, model: str) -> AliasRoute | None:
        """The route of a model not in ``models`` when a default provider is configured."""
        if self.default is None:
            return None
        route = self._default_routes.get(model)
        if route is None:
            if len(self._default_routes) >= _MAX_NATIVE_DEPLOYMENTS:
                self._default_routes.pop(next(iter(self._default_routes)))
            deployment = DeploymentState(bounded(f"{self.default.name}/{model}"), self.default, model, 1.0)
            route = AliasRoute(model, [deployment], "weighted", [], self.unsupported)
            self._default_routes[model] = route
        return route

    def all_deployments(self) -> list[DeploymentState]:
        seen = [d for route in self.aliases.values() for d in route.deployments]
        return seen + list(self._native.values()) + [d for r in self._default_routes.values() for d in r.deployments]
