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
from llm_obs_middleware.config.pricing import PriceOverride, PricingConfig
from llm_obs_middleware.config.routing import ApiKey, Deployment, ModelRoute, RoutingConfig, decode_api_key
from llm_obs_middleware.errors import ConfigurationError

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


PrometheusLabel = Literal["provider", "model", "operation", "status_class", "error_type"]


class PrometheusConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    """Serve metrics at ``/metrics`` (gateway) and update them from records."""
    labels: list[PrometheusLabel] = msgspec.field(default_factory=lambda: list(get_args(PrometheusLabel)))
    """Label dimensions kept; the others are exported empty, which Prometheus treats as absent."""
    allowed_values: dict[PrometheusLabel, list[str]] = {}
    """Per label, the values reported as they are; any other value is reported as ``other``
    (e.g. ``{model: [gpt-4o, gpt-4o-mini]}``)."""
    pushgateway: str | None = None
    """Prometheus Pushgateway URL, e.g. ``http://127.0.0.1:9091``: metrics are pushed there periodically
    and at shutdown (grouped by job and instance), besides being served at ``/metrics``."""
    push_interval_s: float = 15.0
    """Seconds between two pushes to the Pushgateway."""
    push_job: str = "llm_obs"
    """``job`` the metrics are pushed under."""

    def __post_init__(self) -> None:
        if not self.push_interval_s > 0:
            raise ConfigurationError("exporters.prometheus.push_interval_s: must be positive")


class OTLPConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where traces (and metrics) go. Unset fields come from the standard ``OTEL_EXPORTER_OTLP_*``
    variables (signal-specific first), then the OTLP defaults: the config always wins."""

    endpoint: str | None = None
    """Collector URL, e.g. ``http://127.0.0.1:4318`` (http) or ``http://127.0.0.1:4317`` (grpc);
    ``https://`` for TLS. Unset: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``/``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    protocol: Literal["http", "grpc"] | None = None
    """``http`` (protobuf over HTTP) or ``grpc``. Unset: ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``, else ``http``."""
    headers: dict[str, str] = {}
    """Headers sent with every export (e.g. an auth token, may use ``${ENV}``), added to (and winning
    over) those of ``OTEL_EXPORTER_OTLP_[TRACES_]HEADERS``."""
    insecure: bool | None = None
    """gRPC: ``true`` for a plaintext channel, ``false`` for TLS. Unset: ``OTEL_EXPORTER_OTLP_[TRACES_]INSECURE``,
    else the endpoint's scheme decides (as it always does over http)."""
    certificate: str | None = None
    """PEM file of the CA (or self-signed certificate) the collector's TLS certificate is checked
    against. Unset: ``OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE``, else the system's trust store."""
    resource_attributes: dict[str, str] = {}
    """Resource attributes (e.g. ``deployment.environment.name``), winning over ``OTEL_RESOURCE_ATTRIBUTES``."""
    openinference: bool = False
    """Also put OpenInference attributes on the spans (``openinference.span.kind``, ``llm.*``,
    ``session.id``...), so Arize Phoenix shows them natively."""
    metrics: bool = False
    """Also export the GenAI client metrics (``gen_ai.client.token.usage``,
    ``gen_ai.client.operation.duration``, ``gen_ai.server.time_to_first_token``) over OTLP."""
    metrics_interval_s: float = 10.0
    """Seconds between two metric exports (and one more at shutdown)."""
    timeout: float = 10.0
    """Seconds per export call."""
    enabled: bool = True
    """Set false to keep the block but stop exporting."""
    server_spans: bool = True
    """Gateway only: wrap it in OpenTelemetry's ASGI middleware so each HTTP request has a SERVER span
    with the LLM span beneath it. Costs some request-path CPU; turn off for the leanest path."""

    def __post_init__(self) -> None:
        if not self.metrics_interval_s > 0:
            raise ConfigurationError("exporters.otlp.metrics_interval_s: must be positive")


class LogStoreConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "sqlite:///llm_obs.db"
    """Where records are stored: ``sqlite:///path.db`` (relative), ``sqlite:////abs/path.db``, or
    ``postgresql://user@host:5432/database`` (the ``postgres`` extra; the database must exist)."""
    enabled: bool = True
    """Set false to store nothing (``/logs`` then answers 404)."""
    retention_days: float | None = 30.0
    """Records older than this are deleted (at start, then hourly); ``null`` keeps everything."""
    timeout_s: float = 10.0
    """Longest a database call may take or wait for a lock (PostgreSQL ``statement_timeout`` and
    ``lock_timeout``, SQLite busy timeout); ``/logs`` answers 504 when the store takes longer. A
    write that times out is retried by the export pipeline."""
    read_pool_size: int = 4
    """PostgreSQL: connections ``/logs`` reads share at most (an async pool, beside the write connection)."""

    def __post_init__(self) -> None:
        if self.retention_days is not None and not self.retention_days > 0:
            raise ConfigurationError("exporters.log_store.retention_days: must be positive (or null to keep all)")
        if not self.timeout_s > 0 or self.read_pool_size < 1:
            raise ConfigurationError("exporters.log_store: timeout_s must be positive and read_pool_size at least 1")


class JSONLConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str
    """File records are appended to, one JSON object per line (the ``/logs`` record format)."""
    max_bytes: int = 100 * 1024 * 1024
    """Size at which the file is rotated: ``path`` becomes ``path.1``, ``path.1`` becomes ``path.2``..."""
    backup_count: int = 5
    """Rotated files kept; older ones are deleted (0: the file is truncated instead)."""
    enabled: bool = True
    """Set false to keep the block but stop writing."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.backup_count < 0:
            raise ConfigurationError("exporters.jsonl: max_bytes must be positive and backup_count >= 0")


class ExportersConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    prometheus: PrometheusConfig = PrometheusConfig()
    otlp: OTLPConfig | None = None
    log_store: LogStoreConfig = LogStoreConfig()
    jsonl: JSONLConfig | None = None
    """A JSON-lines file with size-based rotation, for any log shipper."""


RedactField = Literal["messages", "output", "metadata", "user", "error_message"]


class RedactConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What is removed from records before any sink sees them (so before anything leaves the process)."""

    fields: list[RedactField] = []
    """Record fields dropped entirely: ``messages`` (captured prompts), ``output`` (captured completion),
    ``metadata``, ``user``, ``error_message``."""
    patterns: list[str] = []
    """Regular expressions replaced by ``replacement`` in captured content, tool arguments, metadata
    values, the user and error messages (e.g. ``sk-[A-Za-z0-9]{20,}``, an e-mail pattern)."""
    replacement: str = "[REDACTED]"
    """What a pattern match becomes."""
    max_content_chars: int | None = None
    """Captured messages and completions are cut to this many characters (``null``: no cap)."""

    def __post_init__(self) -> None:
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigurationError(
                    f"redact.patterns: {pattern!r} is not a valid regular expression: {exc}"
                ) from None
        if self.max_content_chars is not None and self.max_content_chars < 0:
            raise ConfigurationError("redact.max_content_chars: must be >= 0")


class QueueConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The export queue: its bound, what happens when it is full, batching, retries and shutdown."""

    max_records: int = 10_000
    """Records held at most, in the queue in front of the sinks and again in each sink's own queue."""
    on_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    """Which record a full queue drops (every drop is counted in ``llm_obs_export_records_dropped_total``)."""
    batch_size: int = 256
    """Records handed to a sink per call."""
    flush_interval_s: float = 0.5
    """Longest a record waits for its batch to fill before the sink gets it (0: as soon as the sink is free)."""
    retry_initial_backoff_s: float = 0.5
    """Wait before retrying a sink whose export failed; doubled (with jitter) after each failure."""
    retry_max_backoff_s: float = 30.0
    """Longest wait between two retries of a sink that stays down."""
    shutdown_grace_s: float = 10.0
    """At shutdown, time given to the sinks to export everything queued; what is left is dropped and counted
    (or spooled, with ``spool_dir``)."""
    spool_dir: str | None = None
    """Directory where a sink that stays down parks its records (one file per sink), replayed when it is
    back, also by the next process; ``null``: no spool, such records are dropped and counted."""
    spool_max_bytes: int = 256 * 1024 * 1024
    """Most bytes each sink's spool holds; records beyond it are dropped and counted."""
    spool_after_s: float = 1.0
    """With ``spool_dir``: longest a record waits in memory for a sink that has not written it (down,
    backing off, or slow to write its batch) before it is also on disk, so ``kill -9`` loses at most
    this much (plus the dispatcher's few milliseconds)."""

    def __post_init__(self) -> None:
        if self.max_records <= 0 or self.batch_size <= 0 or self.spool_max_bytes <= 0:
            raise ConfigurationError("queue.max_records, queue.batch_size and queue.spool_max_bytes: must be positive")
        waits = (
            self.flush_interval_s,
            self.retry_initial_backoff_s,
            self.retry_max_backoff_s,
            self.shutdown_grace_s,
            self.spool_after_s,
        )
        if not all(value >= 0 for value in waits):
            raise ConfigurationError("queue: durations must be >= 0")


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
    """HTTP transport to providers: ``aiohttp`` (the ``fast`` extra), ``httpx`` (httpx's own), or ``auto``:
    aiohttp when installed."""
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
                import yaml

                data = yaml.safe_load(text)
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
