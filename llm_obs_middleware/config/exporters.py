"""The export side of the configuration: the sinks (Prometheus, OTLP, the log store, JSONL), the
redaction applied before any of them, and the export queue in front of them."""

from __future__ import annotations

import re
from typing import Literal, get_args

import msgspec

from llm_obs_middleware.errors import ConfigurationError

__all__ = [
    "GATEWAY_LOG_STORE_URL",
    "ExportersConfig",
    "JSONLConfig",
    "LogStoreConfig",
    "OTLPConfig",
    "PrometheusConfig",
    "PrometheusLabel",
    "QueueConfig",
    "RedactConfig",
    "RedactField",
    "ServerSpans",
]

GATEWAY_LOG_STORE_URL = "sqlite:///llm_obs.db"
"""The gateway's log store when ``exporters.log_store.url`` is unset (relative to the working directory)."""

ServerSpans = Literal["record", "instrumentation", "off"]
"""Where the gateway's HTTP SERVER spans come from (``exporters.otlp.server_spans``)."""

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
    server_spans: ServerSpans | bool = "record"
    """Gateway only: the HTTP SERVER span above each LLM span. ``record`` (or ``true``): one per LLM
    request, built from the record in the export worker like the LLM span (no request-path cost; admin
    routes are not traced). ``instrumentation``: OpenTelemetry's ASGI middleware wraps the gateway, the
    standard SERVER span of every request and the ``http.server.*`` metrics (sent with ``metrics: true``),
    made on the request path (about 1 ms of CPU per request measured). ``off`` (or ``false``): none."""

    @property
    def server_span_mode(self) -> ServerSpans:
        """``server_spans`` with ``true``/``false`` spelt ``record``/``off``."""
        if isinstance(self.server_spans, bool):
            return "record" if self.server_spans else "off"
        return self.server_spans

    def __post_init__(self) -> None:
        if not self.metrics_interval_s > 0:
            raise ConfigurationError("exporters.otlp.metrics_interval_s: must be positive")


class LogStoreConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str | None = None
    """Where records are stored: ``sqlite:///path.db`` (relative), ``sqlite:////abs/path.db``, or
    ``postgresql://user@host:5432/database`` (the ``postgres`` extra; the database must exist). Unset: the
    gateway stores them in ``sqlite:///llm_obs.db`` (:data:`GATEWAY_LOG_STORE_URL`); a middleware stack
    stores nothing, so it never writes a file it was not told to."""
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
