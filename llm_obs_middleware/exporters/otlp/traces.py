"""OTLP traces: one CLIENT span per record, following the OpenTelemetry GenAI semantic conventions.

Spans are built in the export worker, after the fact, from the record's real start/end times and
the ids the trace-context middleware propagated (``x-request-id`` and ``traceparent`` echoed to the
client point at the LLM span), as finished spans (:mod:`._spans`): the gateway's SERVER span when it
makes one, the LLM CLIENT span, one INTERNAL span per upstream attempt.

Each batch is exported by the sink itself (in a thread), not by a background span processor, so a
collector that is down makes :meth:`OTLPSink.export` raise and the pipeline retries the same
records, with the same ids, until the collector takes them: nothing is lost or sent twice. The sink
encodes the request itself (:mod:`._otlp_encoding`, about a quarter of the stock encoder's CPU per
span) and sends it over OTLP/HTTP or OTLP/gRPC (:mod:`._otlp_transport`).

Attribute names follow https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ (the GenAI
conventions as of v1.41; the Python ``opentelemetry-semantic-conventions`` constants are deprecated
in favour of a separate repository, so the names are spelled out here). Our own attributes live
under ``llm_obs.``. Virtual keys, users and request bodies are never exported; captured content
(opt-in) goes to ``gen_ai.input.messages``/``gen_ai.output.messages``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

from llm_obs_middleware.errors import PermanentExportError, RetryableExportError
from llm_obs_middleware.exporters.otlp.encoding import SpanEncoder
from llm_obs_middleware.exporters.otlp.openinference import openinference_attributes
from llm_obs_middleware.exporters.otlp.settings import build_resource, build_span_exporter, resolve_settings
from llm_obs_middleware.exporters.otlp.spans import REPEATING_ATTRIBUTES as SPAN_BUILDER_REPEATING, SpanBuilder
from llm_obs_middleware.exporters.otlp.transport import build_trace_transport
from llm_obs_middleware.exporters.pipeline.export_pipeline import LOOP_SLICE, THREAD_SLICE, give_way_to_the_loop
from llm_obs_middleware.exporters.pipeline.sink_thread import SinkThread
from llm_obs_middleware.records.schema import RequestParams, Usage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.util.types import AttributeValue

    from llm_obs_middleware.config.settings import OTLPConfig
    from llm_obs_middleware.exporters.otlp.transport import TraceTransport
    from llm_obs_middleware.records.schema import Cost, LLMRecord, Message

__all__ = ["OTLPSink", "record_attributes"]

_ERROR_OUTCOMES: Final = frozenset({"upstream_error", "app_error"})
REPEATING_ATTRIBUTES: Final = SPAN_BUILDER_REPEATING | {
    # Attributes of the LLM span whose values come from a small set: encoded once, then cached
    # (:mod:`._otlp_encoding`). Ids, token counts, costs and timings vary and are set in place.
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.finish_reasons",
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.max_tokens",
    "gen_ai.request.choice.count",
    "gen_ai.request.stop_sequences",
    "server.address",
    "server.port",
    "llm_obs.status_code",
    "llm_obs.outcome",
    "llm_obs.streamed",
    "llm_obs.retries",
    "llm_obs.route",
    "llm_obs.usage.estimated",
    "error.type",
    # OpenInference (opt-in)
    "openinference.span.kind",
    "llm.provider",
    "llm.system",
    "llm.model_name",
    "input.mime_type",
    "output.mime_type",
    "llm.output_messages.0.message.role",
}
_encode = msgspec.json.Encoder().encode


class OTLPSink:
    """Exports one span per record over OTLP; implements :class:`~.base.Sink`.

    Args:
        config: the collector endpoint, protocol, headers and timeout.
        service_name: ``service.name`` of the resource; ``None``: ``OTEL_SERVICE_NAME``, then a
            ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``, then ``llm-obs``. The collector's
            endpoint, headers and TLS come from ``config``, then ``OTEL_EXPORTER_OTLP_*`` (see
            :mod:`._otlp_settings`).
        tracer_provider: an SDK provider to emit through (its processors decide where spans go, and
            ``config``'s endpoint is not used; delivery is then that provider's business). By
            default the sink exports itself (its own encoder and transport), and
            :attr:`tracer_provider` is a provider it builds and owns for spans of the caller's own
            (exported by the stock OTLP exporter, in batches).
        span_exporter: export with this instead of the sink's own OTLP encoder and transport (tests
            pass an ``InMemorySpanExporter``).
    """

    name = "otlp"

    def __init__(
        self,
        config: OTLPConfig,
        *,
        service_name: str | None = None,
        tracer_provider: TracerProvider | None = None,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        self.config = config
        self._owns_provider = tracer_provider is None
        self._closed = False
        self._thread = SinkThread("llm-obs-otlp")  # not the loop's default executor (issue 13, #10)
        # The SDK's kill switch covers spans we build ourselves too.
        self._disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        self._exporter: SpanExporter | None = None
        self._transport: TraceTransport | None = None
        self._processor: SpanProcessor | None = None
        if tracer_provider is None:
            resource = build_resource(service_name, config.resource_attributes)
            tracer_provider = TracerProvider(resource=resource)
            if span_exporter is not None:
                self._exporter = span_exporter
                tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
            else:
                settings = resolve_settings(config)  # the config, then OTEL_EXPORTER_OTLP_*, then defaults
                self._transport = build_trace_transport(settings)
                # Spans of the caller's own (tracer_provider) go through the stock batch exporter.
                tracer_provider.add_span_processor(BatchSpanProcessor(build_span_exporter(settings)))
        else:
            # A caller's provider: its processors decide where the spans go (no public API hands them
            # finished spans, hence the SDK's own multi-processor).
            self._processor = tracer_provider._active_span_processor
        self.tracer_provider = tracer_provider
        """A provider exporting where the records' spans go, for spans of the caller's own."""
        self._openinference = config.openinference
        self._spans = SpanBuilder(tracer_provider.resource, self._llm_attributes, _is_error)
        self._encoder = SpanEncoder(REPEATING_ATTRIBUTES)

    async def start(self) -> None:
        """Nothing to open: the exporter connects on its first batch."""

    async def export(self, records: Sequence[LLMRecord]) -> None:
        """Build the records' spans and export them in a thread.

        Raises:
            RetryableExportError: the collector could not take the spans now (the pipeline retries them).
            PermanentExportError: the collector refused them, or a record cannot become a span.
        """
        if self._closed or self._disabled:
            return
        spans: list[ReadableSpan] = []
        for start in range(0, len(records), LOOP_SLICE):
            try:
                for record in records[start : start + LOOP_SLICE]:
                    spans += self._spans.spans(record)
            except Exception as exc:  # a record no retry can turn into a span (the pipeline isolates it)
                raise PermanentExportError(f"building spans failed: {type(exc).__name__}") from exc
            await asyncio.sleep(0)
        if self._processor is not None:
            for span in spans:
                self._processor.on_end(span)
            return
        if not spans:
            return
        if self._transport is not None:
            await self._thread.run(self._send, self._transport, spans)
        elif self._exporter is not None:
            result = await self._thread.run(self._exporter.export, spans)
            if result is not SpanExportResult.SUCCESS:
                raise RetryableExportError(f"the OTLP collector did not take {len(spans)} spans")

    def _send(self, transport: TraceTransport, spans: list[ReadableSpan]) -> None:
        # In a thread: encoding a batch takes ~10-20 ms of GIL, handed to the event loop between slices.
        try:
            request = self._encoder.encode(spans, pause=give_way_to_the_loop, pause_every=THREAD_SLICE)
        except Exception as exc:  # e.g. a string that is not valid UTF-8: the same on every attempt
            raise PermanentExportError(f"encoding spans failed: {type(exc).__name__}") from exc
        transport.send(request)  # raises RetryableExportError or PermanentExportError

    def _llm_attributes(self, record: LLMRecord) -> dict[str, AttributeValue]:
        attributes = record_attributes(record)
        if self._openinference:
            attributes.update(openinference_attributes(record))
        return attributes

    async def close(self) -> None:
        """Export what is buffered, then shut the exporters down (only a provider the sink owns)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._thread.run(self._close)
        finally:
            self._thread.stop()

    def _close(self) -> None:
        self.tracer_provider.force_flush(int(self.config.timeout * 1000))
        if self._owns_provider:
            self.tracer_provider.shutdown()
            if self._exporter is not None:
                self._exporter.shutdown()
            if self._transport is not None:
                self._transport.close()


_NO_PARAMS: Final = RequestParams()
_NO_USAGE: Final = Usage()


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
    # One table of the optional attributes: a record without params or usage reads all-None stand-ins.
    # (A literal tuple is the fastest table here: an attrgetter-driven one cost ~30 % more per record.)
    params = record.params or _NO_PARAMS
    usage = record.usage or _NO_USAGE
    for key, value in (
        ("gen_ai.request.model", record.requested_model),
        ("gen_ai.response.model", record.response_model),
        ("gen_ai.response.id", record.response_id),
        ("gen_ai.conversation.id", record.session_id),
        ("server.address", record.server_address),
        ("server.port", record.server_port),
        ("llm_obs.route", record.route),
        ("llm_obs.time_to_first_token_s", record.timing.time_to_first_token_s),
        ("gen_ai.request.temperature", params.temperature),
        ("gen_ai.request.top_p", params.top_p),
        ("gen_ai.request.max_tokens", params.max_tokens),
        ("gen_ai.request.seed", params.seed),
        ("gen_ai.request.choice.count", params.n),
        ("gen_ai.request.frequency_penalty", params.frequency_penalty),
        ("gen_ai.request.presence_penalty", params.presence_penalty),
        ("gen_ai.usage.input_tokens", usage.input_tokens),
        ("gen_ai.usage.output_tokens", usage.output_tokens),
        ("gen_ai.usage.cache_read.input_tokens", usage.cache_read_tokens),
        ("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens),
        ("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens),
    ):
        if value is not None:
            attrs[key] = value
    # Sequences as tuples, as the SDK stores them: an attribute value never changes after the fact.
    if params.stop is not None:
        attrs["gen_ai.request.stop_sequences"] = tuple(params.stop)
    finish_reasons = record.finish_reasons or ([record.finish_reason] if record.finish_reason else None)
    if finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = tuple(finish_reasons)
    if (cost := record.cost) is not None:
        attrs["llm_obs.cost.usd"] = cost.total_usd
        for component, usd in _cost_components(cost):
            attrs[f"llm_obs.cost.{component}_usd"] = usd
    if record.estimated:
        attrs["llm_obs.usage.estimated"] = True
    if (error_type := _error_type(record)) is not None:
        attrs["error.type"] = error_type
    for key, value in record.metadata.items():
        # Only headers the operator listed in trace_context.metadata_headers reach the metadata.
        attrs[f"llm_obs.metadata.{key}"] = value
    if record.input_messages is not None or record.output_text is not None:
        _put_content(attrs, record)
    return attrs


def _put_content(attrs: dict[str, AttributeValue], record: LLMRecord) -> None:
    """The captured messages (content capture on) as ``gen_ai.input.messages``/``gen_ai.output.messages``."""
    if record.input_messages is not None:
        attrs["gen_ai.input.messages"] = _encode([_message(m) for m in record.input_messages]).decode()
    if record.output_text is not None:
        output: dict[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": record.output_text}]}
        if record.finish_reason:
            output["finish_reason"] = record.finish_reason
        attrs["gen_ai.output.messages"] = _encode([output]).decode()


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
