"""GenAI client metrics over OTLP (opt-in: ``exporters.otlp.metrics``).

The OpenTelemetry GenAI metric conventions
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/), recorded from records in the
export worker (never on the request path) and exported by the SDK's periodic reader to the same
collector as the traces (``/v1/metrics`` over HTTP, ``MetricsService`` over gRPC; endpoint, headers
and TLS resolved like the traces', with ``OTEL_EXPORTER_OTLP_METRICS_*`` as the signal-specific
variables):

- ``gen_ai.client.token.usage`` (histogram, ``{token}``, by ``gen_ai.token.type`` ``input``/``output``)
- ``gen_ai.client.operation.duration`` (histogram, ``s``; ``error.type`` on failures)
- ``gen_ai.server.time_to_first_token`` (histogram, ``s``; streamed requests that produced a token)

Each with the conventions' advised explicit bucket boundaries, and the attributes
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``server.address``, ``server.port``. Temporality is cumulative, so a
collector that misses an export loses nothing: the next one carries the totals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

from llm_obs_middleware.exporters.otlp.settings import build_metric_exporter, build_resource, resolve_settings

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from llm_obs_middleware.config.settings import OTLPConfig
    from llm_obs_middleware.records.schema import LLMRecord

__all__ = ["DURATION_BUCKETS", "TOKEN_BUCKETS", "TTFT_BUCKETS", "OTLPMetricsSink"]

_SCOPE: Final = "llm_obs_middleware"
TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
"""Advised boundaries of ``gen_ai.client.token.usage``."""
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
"""Advised boundaries of ``gen_ai.client.operation.duration``."""
TTFT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""Advised boundaries of ``gen_ai.server.time_to_first_token``."""
_ERROR_OUTCOMES: Final = frozenset({"upstream_error", "app_error"})


class OTLPMetricsSink:
    """Records the GenAI client metrics of each record; implements :class:`~.base.Sink`.

    Args:
        config: the collector (as for traces) and ``metrics_interval_s``.
        service_name: ``service.name`` of the resource (``None``: from the environment, else ``llm-obs``).
        metric_reader: read with this instead of a periodic OTLP exporter (tests pass an
            ``InMemoryMetricReader``).
    """

    name = "otlp_metrics"

    def __init__(
        self, config: OTLPConfig, *, service_name: str | None = None, metric_reader: MetricReader | None = None
    ) -> None:
        if metric_reader is None:
            metric_reader = PeriodicExportingMetricReader(
                build_metric_exporter(resolve_settings(config, "metrics")),
                export_interval_millis=config.metrics_interval_s * 1000,
                export_timeout_millis=config.timeout * 1000,
            )
        self._timeout_ms = config.timeout * 1000
        self._provider = MeterProvider(
            metric_readers=[metric_reader], resource=build_resource(service_name, config.resource_attributes)
        )
        meter = self._provider.get_meter(_SCOPE)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time to generate the first token, for successful streamed requests.",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS,
        )
        self._closed = False

    @property
    def meter_provider(self) -> MeterProvider:
        """The provider these metrics go through (the gateway's ``http.server.*`` metrics may share it)."""
        return self._provider

    async def start(self) -> None:
        """Nothing to open: the reader's thread exports on its own clock."""

    async def export(self, records: Sequence[LLMRecord]) -> None:
        """Record the metrics of ``records`` (in memory; the reader exports them)."""
        if self._closed:
            return
        for record in records:
            self.observe(record)

    def observe(self, record: LLMRecord) -> None:
        attributes = _attributes(record)
        error_type = _error_type(record)
        if error_type is None:
            self._duration.record(record.timing.duration_s, attributes)
        else:
            self._duration.record(record.timing.duration_s, {**attributes, "error.type": error_type})
        if (usage := record.usage) is not None:
            if usage.input_tokens is not None:
                self._tokens.record(usage.input_tokens, {**attributes, "gen_ai.token.type": "input"})
            if usage.output_tokens is not None:
                self._tokens.record(usage.output_tokens, {**attributes, "gen_ai.token.type": "output"})
        if record.streamed and error_type is None and (ttft := record.timing.time_to_first_token_s) is not None:
            self._ttft.record(ttft, attributes)

    async def close(self) -> None:
        """Export what was recorded since the last export, then stop the reader."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._provider.shutdown, timeout_millis=self._timeout_ms)


def _attributes(record: LLMRecord) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": record.operation,
        "gen_ai.provider.name": record.provider,
    }
    if record.requested_model:
        attributes["gen_ai.request.model"] = record.requested_model
    if record.response_model:
        attributes["gen_ai.response.model"] = record.response_model
    if record.server_address:
        attributes["server.address"] = record.server_address
    if record.server_port is not None:
        attributes["server.port"] = record.server_port
    return attributes


def _error_type(record: LLMRecord) -> str | None:
    if record.error_type:
        return record.error_type
    if record.status >= 400:
        return str(record.status)
    if record.outcome in _ERROR_OUTCOMES:
        return record.outcome
    return None
