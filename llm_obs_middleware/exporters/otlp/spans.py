"""A record's finished spans, built directly in the export worker: the gateway's SERVER span (when it
makes one), the LLM CLIENT span and one INTERNAL span per upstream attempt.

The spans are over before they are built, so the SDK's tracer (samplers, processors, locks, a copy and
validation of every attribute, an id generator that cannot be told the ids) is skipped: a
``ReadableSpan`` is made with the ids the request already carries. That is about a third of the
tracer's CPU per span, and it takes the SERVER span off the request path altogether (OpenTelemetry's
ASGI middleware costs about 1 ms of CPU per request with its batch processor, benchmarks/results/).
Attempt span ids derive from the record's, so exporting a record twice sends the same spans.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.util.types import AttributeValue

    from llm_obs_middleware.records.schema import Attempt, LLMRecord

__all__ = ["REPEATING_ATTRIBUTES", "SpanBuilder", "hex_id"]

SCOPE: Final = "llm_obs_middleware"
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_UNSET: Final = Status(StatusCode.UNSET)
_ERROR: Final = Status(StatusCode.ERROR)

Attributes = dict[str, "AttributeValue"]

REPEATING_ATTRIBUTES: Final = frozenset(
    {
        # Attributes of the SERVER and attempt spans whose values come from a small set (the OTLP
        # encoder caches their encoding; ids and other varying values are encoded each time).
        "http.request.method",
        "url.path",
        "http.route",
        "http.response.status_code",
        "error.type",
        "gen_ai.request.model",
        "llm_obs.attempt.index",
        "llm_obs.route",
        "llm_obs.fallback_index",
        "llm_obs.deployment",
        "llm_obs.key_id",
    }
)


def hex_id(value: str | None) -> int:
    """A W3C hex id as an int (0 when missing or malformed)."""
    if not value:
        return 0
    try:
        return int(value, 16)
    except ValueError:
        return 0


class SpanBuilder:
    """Turns records into ``ReadableSpan`` objects for any span exporter or processor.

    Args:
        resource: the resource every span carries.
        llm_attributes: the LLM span's attributes of a record (GenAI semconv and ``llm_obs.*``).
        is_error: whether a record's LLM span has an error status.
    """

    def __init__(
        self,
        resource: Resource,
        llm_attributes: Callable[[LLMRecord], Attributes],
        is_error: Callable[[LLMRecord], bool],
    ) -> None:
        self._resource = resource
        self._scope = InstrumentationScope(SCOPE)
        self._llm_attributes = llm_attributes
        self._is_error = is_error

    def spans(self, record: LLMRecord) -> list[ReadableSpan]:
        """The record's spans, parents before children."""
        trace_id = hex_id(record.trace_id) or random.getrandbits(128)
        span_id = hex_id(record.span_id) or random.getrandbits(64)
        parent_id = hex_id(record.parent_span_id)
        caller = SpanContext(trace_id, parent_id, is_remote=True, trace_flags=_SAMPLED) if parent_id else None
        timing = record.timing
        out: list[ReadableSpan] = []
        llm_parent = caller
        if server_id := hex_id(record.server_span_id):
            server = SpanContext(trace_id, server_id, is_remote=False, trace_flags=_SAMPLED)
            out.append(self._server_span(record, server, caller))
            llm_parent = server
        llm = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
        out.append(
            ReadableSpan(
                name=f"{record.operation} {record.requested_model or record.response_model or 'unknown'}",
                context=llm,
                parent=llm_parent,
                resource=self._resource,
                attributes=self._llm_attributes(record),
                kind=SpanKind.CLIENT,
                status=Status(StatusCode.ERROR, record.error_message) if self._is_error(record) else _UNSET,
                start_time=timing.start_unix_nano,
                end_time=timing.end_unix_nano,
                instrumentation_scope=self._scope,
            )
        )
        for index, attempt in enumerate(record.attempts):
            out.append(self._attempt_span(record, index, attempt, llm))
        return out

    def _server_span(self, record: LLMRecord, context: SpanContext, parent: SpanContext | None) -> ReadableSpan:
        """The HTTP SERVER span of the request (HTTP semantic conventions, stable names)."""
        attributes: Attributes = {
            "http.request.method": record.method,
            "url.path": record.path,
            "http.route": record.path,
            "http.response.status_code": record.status,
            "llm_obs.request_id": record.request_id,
        }
        failed = record.status >= 500 or record.outcome == "app_error"
        if failed:
            attributes["error.type"] = str(record.status) if record.status >= 500 else (record.error_type or "_OTHER")
        timing = record.timing
        return ReadableSpan(
            name=f"{record.method} {record.path}",
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=SpanKind.SERVER,
            status=_ERROR if failed else _UNSET,
            start_time=timing.start_unix_nano,
            end_time=timing.end_unix_nano,
            instrumentation_scope=self._scope,
        )

    def _attempt_span(self, record: LLMRecord, index: int, attempt: Attempt, parent: SpanContext) -> ReadableSpan:
        """One child span per upstream attempt, its id derived from the record's."""
        start = record.timing.start_unix_nano + int((attempt.start_offset_s or 0.0) * 1e9)
        end = start + int((attempt.latency_s or 0.0) * 1e9)
        attributes: Attributes = {
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
        context = SpanContext(
            parent.trace_id, int.from_bytes(digest, "big") or 1, is_remote=False, trace_flags=_SAMPLED
        )
        return ReadableSpan(
            name=f"attempt {attempt.deployment or attempt.provider}",
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            # INTERNAL: the LLM call stays the one CLIENT span per request that GenAI dashboards count.
            kind=SpanKind.INTERNAL,
            status=_ERROR if failed else _UNSET,
            start_time=start,
            end_time=max(start, end),
            instrumentation_scope=self._scope,
        )
