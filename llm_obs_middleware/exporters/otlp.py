"""OTLP traces: one CLIENT span per record, following the OpenTelemetry GenAI semantic conventions.

Spans are built in the export worker, after the fact, from the record's real start/end times and
the ids the trace-context middleware propagated (``x-request-id`` and ``traceparent`` echoed to the
client point at this very span). The SDK has no API to choose a span's id, so the tracer is given an
:class:`IdGenerator` whose next ids are set just before each ``start_span``; the worker is a single
task, so nothing interleaves.

Each batch is exported by the sink itself (in a thread), not by a background span processor, so a
collector that is down makes :meth:`OTLPSink.export` raise and the pipeline retries the same
records, with the same ids, until the collector takes them: nothing is lost or sent twice. The
gateway's SERVER spans (made on the request path) go through a separate provider with the usual
batch processor.

Attribute names follow https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ (the GenAI
conventions as of v1.41; the Python ``opentelemetry-semantic-conventions`` constants are deprecated
in favour of a separate repository, so the names are spelled out here). Our own attributes live
under ``llm_obs.``. Virtual keys, users and request bodies are never exported; captured content
(opt-in) goes to ``gen_ai.input.messages``/``gen_ai.output.messages``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import msgspec
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..errors import ExportError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

    from ..config import OTLPConfig
    from ..schema import Attempt, Cost, LLMRecord, Message

__all__ = ["OTLPSink", "record_attributes"]

_SCOPE: Final = "llm_obs_middleware"
_ERROR_OUTCOMES: Final = frozenset({"upstream_error", "app_error"})
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_encode = msgspec.json.Encoder().encode


class _PresetIdGenerator(IdGenerator):
    """Hands out the ids set on it (once each), random ones otherwise."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self.trace_id = 0
        self.span_id = 0

    def generate_span_id(self) -> int:
        span_id, self.span_id = self.span_id, 0
        return span_id or self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        trace_id, self.trace_id = self.trace_id, 0
        return trace_id or self._random.generate_trace_id()


class _Collector(SpanProcessor):
    """Keeps ended spans until the sink exports them (the export worker is the only caller)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class OTLPSink:
    """Exports one span per record over OTLP; implements :class:`~.base.Sink`.

    Args:
        config: the collector endpoint, protocol, headers and timeout.
        service_name: ``service.name`` of the resource (``OTEL_SERVICE_NAME`` or a ``service.name``
            in ``OTEL_RESOURCE_ATTRIBUTES`` wins when set).
        tracer_provider: an SDK provider to emit through (its processors decide where spans go, and
            ``config``'s endpoint is not used; delivery is then that provider's business). By
            default the sink exports itself, and :attr:`tracer_provider` is a provider it builds and
            owns for other spans (the gateway's SERVER spans).
        span_exporter: export with this instead of an OTLP exporter built from ``config`` (tests pass
            an ``InMemorySpanExporter``).
    """

    name = "otlp"

    def __init__(
        self,
        config: OTLPConfig,
        *,
        service_name: str,
        tracer_provider: TracerProvider | None = None,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        self.config = config
        self._ids = _PresetIdGenerator()
        self._owns_provider = tracer_provider is None
        self._closed = False
        self._exporter: SpanExporter | None = None
        self._collector: _Collector | None = None
        self._records_provider: TracerProvider | None = None
        if tracer_provider is None:
            resource = _resource(service_name)
            self._exporter = span_exporter if span_exporter is not None else _build_exporter(config)
            self._collector = _Collector()
            self._records_provider = TracerProvider(resource=resource, id_generator=self._ids)
            self._records_provider.add_span_processor(self._collector)
            tracer_provider = TracerProvider(resource=resource)
            if span_exporter is not None:
                tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
            else:
                tracer_provider.add_span_processor(BatchSpanProcessor(_build_exporter(config)))
        self.tracer_provider = tracer_provider
        """Where spans other than the records' go (the gateway's SERVER spans)."""
        tracer = (self._records_provider or tracer_provider).get_tracer(_SCOPE)
        if isinstance(tracer, Tracer):  # not when OTEL_SDK_DISABLED hands out a no-op tracer
            # Only this Tracer instance reads our generator; the provider's other tracers are untouched.
            tracer.id_generator = self._ids
        self._tracer = tracer

    async def start(self) -> None:
        """Nothing to open: the exporter connects on its first batch."""

    async def export(self, records: Sequence[LLMRecord]) -> None:
        """Emit one span per record and export them in a thread.

        Raises:
            ExportError: the collector did not take the spans (the pipeline retries the records).
        """
        if self._closed:
            return
        for record in records:
            self.emit(record)
        if self._collector is None or self._exporter is None:
            return  # a caller's provider: its processors export
        spans, self._collector.spans = self._collector.spans, []
        if spans:
            result = await asyncio.to_thread(self._exporter.export, spans)
            if result is not SpanExportResult.SUCCESS:
                raise ExportError(f"the OTLP collector did not take {len(spans)} spans")

    def emit(self, record: LLMRecord) -> None:
        """Start and end the span of one record (synchronous)."""
        ids = self._ids
        trace_id = _hex_id(record.trace_id)
        context = None
        if record.parent_span_id and trace_id and (parent_id := _hex_id(record.parent_span_id)):
            parent = SpanContext(trace_id, parent_id, is_remote=True, trace_flags=_SAMPLED)
            context = trace.set_span_in_context(NonRecordingSpan(parent))
        ids.trace_id = trace_id
        ids.span_id = _hex_id(record.span_id)
        timing = record.timing
        span = self._tracer.start_span(
            f"{record.operation} {record.requested_model or record.response_model or 'unknown'}",
            context=context,
            kind=SpanKind.CLIENT,
            attributes=record_attributes(record),
            start_time=timing.start_unix_nano,
        )
        # Reset in case the sampler dropped the span before asking for ids.
        ids.trace_id = ids.span_id = 0
        if record.attempts:
            parent_context = trace.set_span_in_context(span)
            for index, attempt in enumerate(record.attempts):
                self._emit_attempt(record, index, attempt, parent_context)
        if _is_error(record):
            span.set_status(Status(StatusCode.ERROR, record.error_message))
        span.end(end_time=timing.end_unix_nano)

    def _emit_attempt(self, record: LLMRecord, index: int, attempt: Attempt, context: Context) -> None:
        """One child span per upstream attempt, its id derived from the record's so a re-export is idempotent."""
        start = record.timing.start_unix_nano + int((attempt.start_offset_s or 0.0) * 1e9)
        end = start + int((attempt.latency_s or 0.0) * 1e9)
        attributes: dict[str, AttributeValue] = {
            "gen_ai.request.model": attempt.model or "",
            "llm_obs.attempt.index": index,
            "llm_obs.request_id": record.request_id,
            "llm_obs.route": attempt.provider,
            "llm_obs.fallback_index": attempt.fallback_index,
        }
        if attempt.deployment:
            attributes["llm_obs.deployment"] = attempt.deployment
        if attempt.key_id:
            attributes["llm_obs.key_id"] = attempt.key_id
        if attempt.status is not None:
            attributes["http.response.status_code"] = attempt.status
        failed = attempt.error_type is not None or (attempt.status or 0) >= 400
        if failed:
            attributes["error.type"] = attempt.error_type or str(attempt.status)
        digest = hashlib.blake2b(f"{record.span_id}:{index}".encode(), digest_size=8).digest()
        self._ids.span_id = int.from_bytes(digest, "big") or 1
        span = self._tracer.start_span(
            f"attempt {attempt.deployment or attempt.provider}",
            context=context,
            # INTERNAL: the LLM call stays the one CLIENT span per request that GenAI dashboards count.
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=start,
        )
        self._ids.span_id = 0
        if failed:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=max(start, end))

    async def close(self) -> None:
        """Export what is buffered, then shut the exporters down (only a provider the sink owns)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self.tracer_provider.force_flush(int(self.config.timeout * 1000))
        if self._owns_provider:
            self.tracer_provider.shutdown()
            if self._records_provider is not None:
                self._records_provider.shutdown()
            if self._exporter is not None:
                self._exporter.shutdown()


def record_attributes(record: LLMRecord) -> dict[str, AttributeValue]:
    """The span attributes of one record (GenAI semconv plus ``llm_obs.*``); ``None`` values left out."""
    attrs: dict[str, AttributeValue] = {
        "gen_ai.operation.name": record.operation,
        "gen_ai.provider.name": record.provider,
        "llm_obs.request_id": record.request_id,
        "llm_obs.status_code": record.status,
        "llm_obs.outcome": record.outcome,
        "llm_obs.streamed": record.streamed,
        "llm_obs.retries": record.retries,
    }
    optional: tuple[tuple[str, Any], ...] = (
        ("gen_ai.request.model", record.requested_model),
        ("gen_ai.response.model", record.response_model),
        ("gen_ai.response.id", record.response_id),
        ("gen_ai.conversation.id", record.session_id),
        ("server.address", record.server_address),
        ("server.port", record.server_port),
        ("llm_obs.route", record.route),
        ("llm_obs.time_to_first_token_s", record.timing.time_to_first_token_s),
    )
    for key, value in optional:
        if value is not None:
            attrs[key] = value
    finish_reasons = record.finish_reasons or ([record.finish_reason] if record.finish_reason else None)
    if finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = finish_reasons
    if (params := record.params) is not None:
        for key, value in (
            ("gen_ai.request.temperature", params.temperature),
            ("gen_ai.request.top_p", params.top_p),
            ("gen_ai.request.max_tokens", params.max_tokens),
            ("gen_ai.request.seed", params.seed),
            ("gen_ai.request.choice.count", params.n),
            ("gen_ai.request.stop_sequences", params.stop),
            ("gen_ai.request.frequency_penalty", params.frequency_penalty),
            ("gen_ai.request.presence_penalty", params.presence_penalty),
        ):
            if value is not None:
                attrs[key] = value
    if (usage := record.usage) is not None:
        for key, value in (
            ("gen_ai.usage.input_tokens", usage.input_tokens),
            ("gen_ai.usage.output_tokens", usage.output_tokens),
            ("gen_ai.usage.cache_read.input_tokens", usage.cache_read_tokens),
            ("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens),
            ("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens),
        ):
            if value is not None:
                attrs[key] = value
    if record.cost is not None:
        cost = record.cost
        attrs["llm_obs.cost.usd"] = cost.total_usd
        for component, usd in _cost_components(cost):
            attrs[f"llm_obs.cost.{component}_usd"] = usd
    if record.estimated:
        attrs["llm_obs.usage.estimated"] = True
    error_type = _error_type(record)
    if error_type is not None:
        attrs["error.type"] = error_type
    for key, value in record.metadata.items():
        # Only headers the operator listed in trace_context.metadata_headers reach the metadata.
        attrs[f"llm_obs.metadata.{key}"] = value
    if record.input_messages is not None:
        attrs["gen_ai.input.messages"] = _encode([_message(m) for m in record.input_messages]).decode()
    if record.output_text is not None:
        output: dict[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": record.output_text}]}
        if record.finish_reason:
            output["finish_reason"] = record.finish_reason
        attrs["gen_ai.output.messages"] = _encode([output]).decode()
    return attrs


def _cost_components(cost: Cost) -> list[tuple[str, float]]:
    """The non-zero parts of a cost (input, cache_read, cache_write, output, other)."""
    parts = (
        ("input", cost.input_usd),
        ("cache_read", cost.cache_read_usd),
        ("cache_write", cost.cache_write_usd),
        ("output", cost.output_usd),
        ("other", cost.other_usd),
    )
    return [(name, usd) for name, usd in parts if usd]


def _message(message: Message) -> dict[str, Any]:
    # The GenAI "parts" message shape: https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-input-messages.json
    parts: list[dict[str, Any]] = []
    if message.role == "tool" and message.tool_call_id is not None:
        parts.append({"type": "tool_call_response", "id": message.tool_call_id, "response": message.content})
    elif message.content is not None:
        parts.append({"type": "text", "content": message.content})
    for call in message.tool_calls:
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
    return {"role": message.role, "parts": parts}


def _error_type(record: LLMRecord) -> str | None:
    if record.error_type:
        return record.error_type
    if record.status >= 400:
        return str(record.status)  # the HTTP status code, as the HTTP conventions do
    if record.outcome in _ERROR_OUTCOMES:
        return record.outcome
    return None


def _is_error(record: LLMRecord) -> bool:
    return bool(record.error_type) or record.status >= 400 or record.outcome in _ERROR_OUTCOMES


def _hex_id(value: str) -> int:
    """A W3C hex id as an int; 0 (invalid) when it is not hex, so a random id is used instead."""
    try:
        return int(value, 16)
    except ValueError:
        return 0


def _resource(service_name: str) -> Resource:
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME but lets explicit
    # attributes win; the environment should win over our config default, so ours only fills a gap.
    detected = Resource.create()
    if os.environ.get("OTEL_SERVICE_NAME") or not str(detected.attributes.get("service.name", "")).startswith(
        "unknown_service"
    ):
        return detected
    return detected.merge(Resource({"service.name": service_name}))


def _build_exporter(config: OTLPConfig) -> SpanExporter:
    headers = dict(config.headers)
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCExporter

        return GRPCExporter(endpoint=config.endpoint, headers=headers, timeout=config.timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter

    endpoint = config.endpoint
    if urlsplit(endpoint).path in ("", "/"):
        # Like OTEL_EXPORTER_OTLP_ENDPOINT, a bare collector URL gets the signal path appended.
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HTTPExporter(endpoint=endpoint, headers=headers, timeout=config.timeout)
