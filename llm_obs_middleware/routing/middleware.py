"""Routes LLM requests to providers: aliases, deployments, key pools, retries and fallbacks."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import msgspec

from llm_obs_middleware.asgi.aliases import ASGIApp, Receive, Scope, Send
from llm_obs_middleware.asgi.messages import error_json, get_header, route_path, send_json
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.config.settings import Config
from llm_obs_middleware.providers.registry import RequestMatch, llm_path, native_provider, recognise
from llm_obs_middleware.providers.request_body import open_request
from llm_obs_middleware.routing.attempts import Attempts
from llm_obs_middleware.routing.capacity import UpstreamSlots
from llm_obs_middleware.routing.cooldowns import retry_after_seconds
from llm_obs_middleware.routing.forwarding import HeaderFilter, Outbound
from llm_obs_middleware.routing.passthrough import proxy
from llm_obs_middleware.routing.targets import AliasRoute, Routes
from llm_obs_middleware.routing.url_parts import refuse_url_part, unusable_url_part
from llm_obs_middleware.upstream.client import Upstream, upstream_of

__all__ = ["RouterMiddleware", "retry_after_seconds"]

_encode = msgspec.json.Encoder().encode


class RouterMiddleware:
    """Forwards LLM requests to providers; everything else reaches ``app``.

    Maps the requested model (an alias with weighted deployments, or a native ``/{provider}/...``
    route) to a deployment and a key from the provider's pool, replaces the client's credentials,
    propagates ``traceparent`` (our LLM span as parent) and streams the response back as it
    arrives. Connect errors, timeouts, 429, 5xx and 529 are retried (another key or deployment
    first, with backoff and ``Retry-After``), then the alias's fallbacks; a 400 never is, and a
    stream is never retried once a byte reached the client. 401/403 cool the key down for
    ``routing.auth_cooldown_s``. Cooldowns steer requests, they never refuse one: when every deployment
    and key is cooling down (and no fallback can serve), the one that recovers soonest is tried (a
    half-open probe) and the client gets its real answer. When every attempt failed the client gets
    the last upstream error, or a 502/504 JSON error naming the attempts. Every attempt is recorded.
    Unknown model: 404; malformed JSON: 400; oversized body: 413; an upstream path that would leave
    the provider's base path: 400. Other endpoints of a provider's API under ``/{provider}/`` are
    forwarded as its ``passthrough_endpoints`` allow (404/405 otherwise) and recorded as ``http``
    operations.

    Args:
        app: the ASGI app for every other path.
        config: providers, models, ``routing`` and ``route_prefix``.
        client: the shared upstream: an ``httpx.AsyncClient`` of the caller's own, or an ``Upstream``
            (default: the gateway's own, built by :func:`upstream.client.build_upstream`).
        rng: randomness for weighted picks and jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: Config,
        client: httpx.AsyncClient | Upstream | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.app = app
        self.prefix = config.route_prefix
        self.max_request_bytes = config.max_request_bytes
        self.capture_content = config.capture_content
        self.policy = config.routing
        self.upstream = upstream_of(client, config)
        self.forward = HeaderFilter(config.routing.forward_headers)
        # As many slots as the pool has connections: the transport itself then never waits for one.
        capacity = min(config.routing.max_connections, self.upstream.max_connections or config.routing.max_connections)
        self.slots = UpstreamSlots(capacity, config.routing.pool_wait_s)
        self.rng = rng or random.Random()
        self.outbound = Outbound(self.upstream, self.slots, self.forward, self.rng)
        self.attempts = Attempts(self.outbound, self.policy)
        self.routes = Routes(config)
        self.providers = self.routes.providers
        self.provider_kinds = {name: provider.kind for name, provider in config.providers.items()}
        self.known_models = ", ".join(sorted(self.routes.aliases)) or "none"
        self.models_body = _encode(
            {
                "object": "list",
                "data": [
                    {"id": alias, "object": "model", "owned_by": route.deployments[0].provider.name}
                    for alias, route in sorted(self.routes.aliases.items())
                ],
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        prefix = self.prefix
        path, routed = llm_path(scope, prefix)
        if not routed:
            await self.app(scope, receive, send)
            return
        matched = recognise(scope, path, self.provider_kinds)
        if matched is None:
            native = native_provider(path, self.provider_kinds)
            if native is not None:  # a provider endpoint we do not observe (e.g. token counting): proxy it
                if (problem := unusable_url_part("path", path)) is not None:
                    await refuse_url_part(problem, send)
                    return
                provider, rest = self.providers[native[0]], native[1]
                await proxy(self.outbound, provider, rest, scope, receive, send, self.max_request_bytes)
            elif scope["method"] == "GET" and path in ("/v1/models", "/models"):
                await send_json(send, 200, self.models_body)
            elif prefix:
                message = f"no LLM endpoint at {scope['method']} {route_path(scope)}"
                await send_json(send, 404, error_json(message, "invalid_request_error", code="unknown_endpoint"))
            else:
                await self.app(scope, receive, send)
            return
        exchange = await open_request(  # the request side, unless accounting wrote it already
            scope, matched, receive, send, max_bytes=self.max_request_bytes, capture_content=self.capture_content
        )
        if exchange is not None:
            await self._route(exchange, matched, scope, receive, send)

    def health(self) -> dict[str, Any]:
        """Every deployment and key: healthy, cooling down (for how long, and why), recent errors and latency."""
        now = time.monotonic()
        return {"deployments": [deployment.snapshot(now) for deployment in self.routes.all_deployments()]}

    async def _route(self, ex: Exchange, matched: RequestMatch, scope: Scope, receive: Receive, send: Send) -> None:
        model = await _requested_model(ex, matched, send)
        if model is None:
            return
        ex.requested_model = model
        force, no_fallbacks, deadline = self._overrides(scope)
        if matched.provider is not None:
            chain = self._native_chain(ex, matched.provider, model)
        elif (route := self._model_route(ex, model)) is not None:
            chain = [route] if no_fallbacks else [route, *(self.routes.aliases[name] for name in route.fallbacks)]
        else:
            ex.fail("rejected", "model_not_found")
            message = f"model {model!r} is not configured; configured models: {self.known_models}"
            await send_json(
                send, 404, error_json(message, "invalid_request_error", code="model_not_found", param="model")
            )
            return
        if force is not None:
            chain = [
                AliasRoute(
                    r.alias, [d for d in r.deployments if d.provider.name == force], r.strategy, [], r.unsupported
                )
                for r in chain
            ]
            if not any(r.deployments for r in chain):
                ex.fail("rejected", "invalid_request")
                message = f"provider {force!r} does not serve model {model!r}"
                await send_json(send, 400, error_json(message, "invalid_request_error", param="x-llm-obs-provider"))
                return
        await self.attempts.run(ex, matched, chain, deadline, scope, receive, send)

    def _native_chain(self, ex: Exchange, provider_name: str, model: str) -> list[AliasRoute]:
        """A native route: the client named the provider; an alias's deployments on it still apply."""
        provider = self.providers[provider_name]
        alias = self.routes.aliases.get(model)
        on_provider = [d for d in alias.deployments if d.provider is provider] if alias else []
        if alias is not None and on_provider:
            ex.rule = model
            return [AliasRoute(model, on_provider, alias.strategy, [])]
        ex.rule = "native"
        return [self.routes.native(provider, model)]

    def _model_route(self, ex: Exchange, model: str) -> AliasRoute | None:
        """The route of an OpenAI-format request's model: an alias, ``provider/model``, or the default
        provider's (``ex.rule`` says which); ``None`` when none serves it."""
        route = self.routes.aliases.get(model)
        ex.rule = model
        if route is None:
            route = self.routes.provider_model(model)  # "anthropic/claude-sonnet-4-5"
            ex.rule = "provider_model"
        if route is None:
            route = self.routes.for_default(model)
            ex.rule = "default_provider"
        return route

    def _overrides(self, scope: Scope) -> tuple[str | None, bool, float | None]:
        """Per-request routing headers, honoured only when ``routing.allow_request_overrides`` is set."""
        if not self.policy.allow_request_overrides:
            return None, False, None
        force = get_header(scope, b"x-llm-obs-provider")
        no_fallbacks = get_header(scope, b"x-llm-obs-no-fallbacks") in (b"1", b"true", b"yes")
        raw_timeout = get_header(scope, b"x-llm-obs-timeout")
        deadline = None
        if raw_timeout is not None:
            try:
                deadline = time.perf_counter() + max(0.001, float(raw_timeout))
            except ValueError:
                deadline = None  # an unreadable override is ignored, as an absent one is
        return (force.decode("latin-1") if force else None), no_fallbacks, deadline


async def _requested_model(ex: Exchange, matched: RequestMatch, send: Send) -> str | None:
    """The model the client asked for; ``None`` once the client has our 400 (no JSON body, no model, or
    a path or model that cannot go into an upstream URL)."""
    if ex.request is None:
        ex.fail("rejected", "invalid_request")
        message = ex.request_error or "request body is not valid JSON"
        await send_json(send, 400, error_json(message, "invalid_request_error", code="invalid_json"))
        return None
    model = matched.adapter.path_model(matched.endpoint, matched.path) or ex.request.model
    if not model:
        ex.fail("rejected", "invalid_request")
        await send_json(send, 400, error_json("'model' is required", "invalid_request_error", param="model"))
        return None
    problem = unusable_url_part("path", matched.path) or unusable_url_part("model", model)
    if problem is not None:
        ex.fail("rejected", "invalid_url")
        await refuse_url_part(problem, send)
        return None
    return model
