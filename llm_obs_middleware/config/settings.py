"""Configuration: frozen msgspec Structs validated once at start-up.

``Config.from_file`` reads YAML, TOML or JSON; ``Config.from_dict`` takes a mapping;
``Config.from_env`` reads ``LLM_OBS_CONFIG`` (a path). Strings may hold ``${ENV_VAR}``
placeholders, replaced when the config is loaded, so secrets stay out of files. A bad config raises
:class:`ConfigurationError` naming the field.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import msgspec

from llm_obs_middleware.config.checks import describe_error
from llm_obs_middleware.config.exporters import (
    ExportersConfig,
    JSONLConfig,
    LogStoreConfig,
    OTLPConfig,
    PrometheusConfig,
    PrometheusLabel,
    QueueConfig,
    RedactConfig,
)
from llm_obs_middleware.config.extras import load_yaml
from llm_obs_middleware.config.pricing import PriceOverride, PricingConfig
from llm_obs_middleware.config.routing import ApiKey, Deployment, ModelRoute, RoutingConfig, decode_api_key
from llm_obs_middleware.errors import ConfigurationError, MissingDependencyError

__all__ = [
    "PROVIDER_KINDS",
    "ApiKey",
    "Config",
    "Deployment",
    "ExportersConfig",
    "JSONLConfig",
    "LogStoreConfig",
    "ModelRoute",
    "OTLPConfig",
    "PriceOverride",
    "PricingConfig",
    "PrometheusConfig",
    "PrometheusLabel",
    "ProviderConfig",
    "QueueConfig",
    "RedactConfig",
    "RoutingConfig",
    "Secret",
    "TimeoutConfig",
    "TraceContextConfig",
]

ProviderKind = Literal[
    "openai",
    "azure_openai",
    "anthropic",
    "gemini",
    "bedrock",
    "cohere",
    "mistral",
    "groq",
    "deepseek",
    "vllm",
    "ollama",
    "openai_compatible",
]
PROVIDER_KINDS: tuple[str, ...] = get_args(ProviderKind)
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Secret:
    """A string that never shows itself in ``repr``/``str``, logs or error bodies."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class TimeoutConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    connect: float = 5.0
    """Seconds to open a connection to the provider."""
    read: float = 120.0
    """Seconds to wait for the first byte and between two chunks of a response."""
    total: float = 600.0
    """Seconds an exchange may take end to end before it is cut."""


class ProviderConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: ProviderKind
    """Wire format of the provider (fixed names, e.g. ``openai``, ``openai_compatible``)."""
    base_url: str
    """Root URL of the provider's API, e.g. ``https://api.openai.com/v1``."""
    api_keys: list[ApiKey] = []
    """Keys sent upstream in place of the client's own credentials: strings or ``{key, weight, name}``."""
    key_strategy: Literal["weighted", "round_robin", "least_busy"] = "weighted"
    """How a key is picked per request among those not cooling down."""
    headers: dict[str, str] = {}
    """Extra headers sent upstream on every request."""
    timeout: TimeoutConfig = TimeoutConfig()
    """Upstream timeouts."""
    aws_access_key_id: str | None = None
    """Bedrock: access key id that signs upstream requests (SigV4). Unset: ``AWS_ACCESS_KEY_ID`` (read once)."""
    aws_secret_access_key: Secret | None = None
    """Bedrock: secret access key paired with ``aws_access_key_id`` (unset: ``AWS_SECRET_ACCESS_KEY``)."""
    aws_session_token: Secret | None = None
    """Bedrock: session token of temporary credentials (unset: ``AWS_SESSION_TOKEN`` with env credentials)."""
    aws_region: str | None = None
    """Bedrock: signing region (unset: from a ``bedrock-runtime.<region>`` base_url, else ``AWS_REGION``)."""
    passthrough_endpoints: list[str] | None = None
    """Endpoints a native route forwards besides the LLM ones it observes, each call recorded (operation
    ``http``: method, path, status, latency): ``"METHOD[,METHOD] /path"`` relative to ``base_url``, where
    ``*`` is part of one path segment and ``/**`` any rest, e.g. ``["GET /models", "GET,DELETE /files/*"]``.
    Unset: the endpoints the provider's API offers; ``[]``: none. Others get 404 (405 for another method)."""

    def __post_init__(self) -> None:
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigurationError(
                f"base_url: expected an http:// or https:// URL with a host, got {self.base_url!r}"
            )
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ConfigurationError("aws_access_key_id and aws_secret_access_key: set both or neither")


class TraceContextConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_header: str = "x-session-id"
    """Request header holding the session/conversation id (``session.id`` baggage also works)."""
    user_header: str = "x-user-id"
    """Request header holding the end user's id."""
    metadata_headers: list[str] = []
    """Request headers copied into the record's ``metadata`` (e.g. ``x-tenant-id``)."""
    echo_headers: bool = True
    """Echo ``x-request-id`` and ``traceparent`` on LLM responses."""


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration of the stack and the gateway."""

    providers: dict[str, ProviderConfig] = {}
    """Upstream providers by name."""
    models: dict[str, ModelRoute] = {}
    """Model names clients may ask for, each mapped to a provider (and upstream model)."""
    default_provider: str | None = None
    """Provider for models not listed in ``models`` (unset: unknown models get a 404)."""
    route_prefix: str = ""
    """Path prefix routed to providers in middleware mode (e.g. ``/llm``); the gateway routes at its root."""
    max_request_bytes: int = 10 * 1024 * 1024
    """Largest LLM request body accepted (413 beyond it)."""
    capture_content: bool = False
    """Keep prompts and completions in records (off by default, as in OpenTelemetry GenAI)."""
    upstream_transport: Literal["auto", "aiohttp", "httpx"] = "auto"
    """HTTP transport to providers: ``aiohttp`` (installed with the package), ``httpx`` (httpx's own), or
    ``auto``: aiohttp when importable."""
    service_name: str | None = None
    """``service.name`` of exported telemetry; unset: ``OTEL_SERVICE_NAME``, then ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES``, then ``llm-obs``."""
    trace_context: TraceContextConfig = TraceContextConfig()
    exporters: ExportersConfig = ExportersConfig()
    routing: RoutingConfig = RoutingConfig()
    """Retries, backoff, cooldowns and per-request overrides."""
    queue: QueueConfig = QueueConfig()
    """The export queue in front of every sink."""
    redact: RedactConfig = RedactConfig()
    """Fields dropped and patterns masked in every record, for every sink."""
    admin_key: Secret | None = None
    """Key the gateway's admin routes (``/logs``, ``/logs/stats``, ``/sessions``) require, sent as
    ``Authorization: Bearer <key>`` or ``x-admin-key: <key>`` (use ``${ENV_VAR}``)."""
    allow_open_admin: bool = False
    """Let the gateway serve admin routes without ``admin_key`` on a non-loopback address."""
    protect_metrics: bool = False
    """Require ``admin_key`` on ``/metrics`` and ``/healthz`` too."""
    pricing: PricingConfig = PricingConfig()
    """Price overrides; see README "Cost"."""
    gc_freeze: bool = True
    """Gateway only: once started, keep the objects made at start-up (modules, price data, routes) out of
    the garbage collector's full collections (``gc.freeze()``; undone at shutdown). Measured under load:
    each full collection 42 -> 3 ms, about 4% of the gateway's CPU. Middleware use never touches the GC."""

    def __post_init__(self) -> None:
        if self.route_prefix and (not self.route_prefix.startswith("/") or self.route_prefix.endswith("/")):
            raise ConfigurationError(
                f"route_prefix: must start with '/' and not end with one, got {self.route_prefix!r}"
            )
        if self.max_request_bytes <= 0:
            raise ConfigurationError("max_request_bytes: must be positive")
        for alias, route in self.models.items():
            for index, target in enumerate(route.targets()):
                if target.provider not in self.providers:
                    where = f"models.{alias}.provider" if route.provider else f"models.{alias}.deployments[{index}]"
                    raise ConfigurationError(
                        f"{where}: {target.provider!r} is not a configured provider "
                        f"(configured: {', '.join(sorted(self.providers)) or 'none'})"
                    )
            for fallback in route.fallbacks:
                if fallback not in self.models or fallback == alias:
                    raise ConfigurationError(
                        f"models.{alias}.fallbacks: {fallback!r} is not another configured model alias"
                    )
        if self.default_provider is not None and self.default_provider not in self.providers:
            raise ConfigurationError(f"default_provider: {self.default_provider!r} is not a configured provider")
        if self.admin_key is not None and not self.admin_key.get_secret_value():
            raise ConfigurationError("admin_key: must not be empty (unset it to serve admin routes on loopback only)")
        if self.protect_metrics and self.admin_key is None:
            raise ConfigurationError("protect_metrics: needs admin_key")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> Config:
        """Validate a mapping (``${ENV_VAR}`` placeholders are substituted from ``environ``)."""
        env = os.environ if environ is None else environ
        substituted = _substitute(dict(data), env, "")
        try:
            return msgspec.convert(substituted, cls, dec_hook=_decode_hook)
        except msgspec.ValidationError as exc:
            raise ConfigurationError(describe_error(substituted, exc, cls, _decode_hook)) from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> Config:
        """Load a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read config file {file}: {exc.strerror}") from None
        suffix = file.suffix.lower()
        try:
            if suffix in (".yaml", ".yml"):
                data = load_yaml(text)
            elif suffix == ".toml":
                data = tomllib.loads(text)
            elif suffix == ".json":
                data = json.loads(text)
            else:
                raise ConfigurationError(f"config file {file}: unknown format {suffix!r} (use .yaml, .toml or .json)")
        except (ConfigurationError, MissingDependencyError):
            raise
        except Exception as exc:  # each parser has its own error type; all mean the same to the user
            raise ConfigurationError(f"config file {file} is not valid {suffix.lstrip('.').upper()}: {exc}") from None
        if not data:  # an empty file is a mistake (the wrong path, a failed template), not "no routes"
            raise ConfigurationError(f"config file {file} is empty")
        if not isinstance(data, dict):
            raise ConfigurationError(f"config file {file}: the top level must be a mapping")
        return cls.from_dict(data, environ=environ)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Load the file named by ``LLM_OBS_CONFIG``."""
        env = os.environ if environ is None else environ
        path = env.get("LLM_OBS_CONFIG")
        if not path:
            raise ConfigurationError("LLM_OBS_CONFIG is not set: point it at a YAML, TOML or JSON config file")
        return cls.from_file(path, environ=env)


def _decode_hook(type_: type, obj: Any) -> Any:
    if type_ is ApiKey:
        return decode_api_key(obj)
    if type_ is Secret:
        if isinstance(obj, Secret):
            return obj
        if isinstance(obj, str):
            return Secret(obj)
        raise msgspec.ValidationError("Expected `str`")
    raise NotImplementedError


def _substitute(value: Any, environ: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigurationError(f"{where or 'config'}: environment variable {name} is not set")
            return environ[name]

        return _ENV_PATTERN.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, environ, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, environ, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
