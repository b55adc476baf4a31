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

import msgspec

from .errors import ConfigurationError

__all__ = [
    "PROVIDER_KINDS",
    "Config",
    "ExportersConfig",
    "LogStoreConfig",
    "ModelRoute",
    "OTLPConfig",
    "PrometheusConfig",
    "ProviderConfig",
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
    api_keys: list[Secret] = []
    """Keys sent upstream in place of the client's own ``Authorization``; the first is used."""
    headers: dict[str, str] = {}
    """Extra headers sent upstream on every request."""
    timeout: TimeoutConfig = TimeoutConfig()
    """Upstream timeouts."""


class ModelRoute(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    provider: str
    """Name of a configured provider."""
    model: str | None = None
    """Model name sent upstream; defaults to the alias itself."""


class TraceContextConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_header: str = "x-session-id"
    """Request header holding the session/conversation id (``session.id`` baggage also works)."""
    user_header: str = "x-user-id"
    """Request header holding the end user's id."""
    metadata_headers: list[str] = []
    """Request headers copied into the record's ``metadata`` (e.g. ``x-tenant-id``)."""
    echo_headers: bool = True
    """Echo ``x-request-id`` and ``traceparent`` on LLM responses."""


class PrometheusConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    """Serve metrics at ``/metrics`` (gateway) and update them from records."""


class OTLPConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    endpoint: str
    """Collector URL, e.g. ``http://127.0.0.1:4318`` (http) or ``http://127.0.0.1:4317`` (grpc)."""
    protocol: Literal["http", "grpc"] = "http"
    """``http`` (protobuf over HTTP) or ``grpc``."""
    headers: dict[str, str] = {}
    """Headers sent with every export (e.g. an auth token, may use ``${ENV}``)."""
    timeout: float = 10.0
    """Seconds per export call."""
    enabled: bool = True
    """Set false to keep the block but stop exporting."""
    server_spans: bool = True
    """Gateway only: wrap it in OpenTelemetry's ASGI middleware so each HTTP request has a SERVER span
    with the LLM span beneath it. Costs some request-path CPU; turn off for the leanest path."""


class LogStoreConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "sqlite:///llm_obs.db"
    """Where records are stored: ``sqlite:///path.db`` (relative) or ``sqlite:////abs/path.db``."""
    enabled: bool = True
    """Set false to store nothing (``/logs`` then answers 404)."""


class ExportersConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    prometheus: PrometheusConfig = PrometheusConfig()
    otlp: OTLPConfig | None = None
    log_store: LogStoreConfig = LogStoreConfig()
    queue_size: int = 10_000
    """Records held for export at most; beyond it new records are dropped and counted."""
    batch_size: int = 256
    """Records handed to the sinks per batch."""


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
    service_name: str = "llm-obs"
    """``service.name`` of exported spans (``OTEL_SERVICE_NAME`` wins when set)."""
    trace_context: TraceContextConfig = TraceContextConfig()
    exporters: ExportersConfig = ExportersConfig()

    def __post_init__(self) -> None:
        if self.route_prefix and (not self.route_prefix.startswith("/") or self.route_prefix.endswith("/")):
            raise ConfigurationError(
                f"route_prefix: must start with '/' and not end with one, got {self.route_prefix!r}"
            )
        if self.max_request_bytes <= 0:
            raise ConfigurationError("max_request_bytes: must be positive")
        for alias, route in self.models.items():
            if route.provider not in self.providers:
                raise ConfigurationError(
                    f"models.{alias}.provider: {route.provider!r} is not a configured provider "
                    f"(configured: {', '.join(sorted(self.providers)) or 'none'})"
                )
        if self.default_provider is not None and self.default_provider not in self.providers:
            raise ConfigurationError(f"default_provider: {self.default_provider!r} is not a configured provider")
        if self.exporters.queue_size <= 0 or self.exporters.batch_size <= 0:
            raise ConfigurationError("exporters.queue_size and exporters.batch_size: must be positive")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> Config:
        """Validate a mapping (``${ENV_VAR}`` placeholders are substituted from ``environ``)."""
        env = os.environ if environ is None else environ
        substituted = _substitute(dict(data), env, "")
        try:
            return msgspec.convert(substituted, cls, dec_hook=_decode_hook)
        except msgspec.ValidationError as exc:
            raise ConfigurationError(f"invalid config: {_name_mapping_keys(substituted, exc)}") from None

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
                import yaml

                data = yaml.safe_load(text) or {}
            elif suffix == ".toml":
                data = tomllib.loads(text)
            elif suffix == ".json":
                data = json.loads(text)
            else:
                raise ConfigurationError(f"config file {file}: unknown format {suffix!r} (use .yaml, .toml or .json)")
        except ConfigurationError:
            raise
        except Exception as exc:  # each parser has its own error type; all mean the same to the user
            raise ConfigurationError(f"config file {file} is not valid {suffix.lstrip('.').upper()}: {exc}") from None
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
    if type_ is Secret:
        if isinstance(obj, Secret):
            return obj
        if isinstance(obj, str):
            return Secret(obj)
        raise msgspec.ValidationError("Expected `str`")
    raise NotImplementedError


def _name_mapping_keys(data: dict[str, Any], exc: msgspec.ValidationError) -> str:
    """msgspec writes ``$.providers[...]`` for dict entries; find and name the entry at fault."""
    message = str(exc)
    for section, struct in (("providers", ProviderConfig), ("models", ModelRoute)):
        marker = f"$.{section}[...]"
        entries = data.get(section)
        if marker not in message or not isinstance(entries, dict):
            continue
        for name, entry in entries.items():
            try:
                msgspec.convert(entry, struct, dec_hook=_decode_hook)
            except (msgspec.ValidationError, ConfigurationError) as entry_exc:
                return str(entry_exc).replace("$", f"$.{section}.{name}", 1)
    return message


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
