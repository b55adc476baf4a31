"""Incremental observers of OpenAI Responses API bodies (``/v1/responses``): JSON and SSE."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers._observing import CapturingBody
from llm_obs_middleware.providers.base import normalize_finish_reason
from llm_obs_middleware.providers.openai.observe import vendor_extra
from llm_obs_middleware.providers.openai.wire import ResponsesEvent, ResponsesObject, ResponsesUsage
from llm_obs_middleware.records.schema import NormalizedResponse, ToolCall, Usage

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange

__all__ = ["ResponsesJSONObserver", "ResponsesStreamObserver", "responses_usage"]

_decode_responses = msgspec.json.Decoder(ResponsesObject).decode
_decode_responses_event = msgspec.json.Decoder(ResponsesEvent).decode


def responses_usage(usage: ResponsesUsage | None) -> Usage | None:
    if usage is None:
        return None
    details_in = usage.input_tokens_details
    details_out = usage.output_tokens_details
    total = usage.total_tokens
    if total is None and usage.input_tokens is not None and usage.output_tokens is not None:
        total = usage.input_tokens + usage.output_tokens
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=total,
        cache_read_tokens=details_in.cached_tokens if details_in is not None else None,
        cache_write_tokens=details_in.cache_write_tokens if details_in is not None else None,
        reasoning_tokens=details_out.reasoning_tokens if details_out is not None else None,
    )


def _responses_result(obj: ResponsesObject | None, capture: bool, events: int, completed: bool) -> NormalizedResponse:
    if obj is None:
        return NormalizedResponse(completed=False, events=events)
    tool_calls: list[ToolCall] = []
    texts: list[str] = []
    chars = 0
    for item in obj.output:
        if item.type == "function_call":
            tool_calls.append(ToolCall(id=item.call_id, name=item.name or "", arguments=item.arguments or ""))
            chars += len(item.name or "") + len(item.arguments or "")
        else:  # messages (output_text, refusal) and reasoning summaries
            chars += sum(len(part.text or "") for part in item.content or ())
            if item.type == "message" and capture:
                texts.extend(part.text for part in item.content or () if part.type == "output_text" and part.text)
    raw = obj.status
    if raw == "incomplete" and obj.incomplete_details is not None and obj.incomplete_details.reason:
        raw = obj.incomplete_details.reason
    error = obj.error
    return NormalizedResponse(
        id=obj.id,
        model=obj.model,
        finish_reasons=[raw] if raw else [],
        finish_reason=normalize_finish_reason(raw, bool(tool_calls)),
        usage=responses_usage(obj.usage),
        tool_calls=tool_calls,
        output_text="".join(texts) if texts else None,
        output_chars=chars,
        completed=completed and obj.status != "failed",
        error_type=str(error.code or error.type) if error is not None else None,
        error_message=error.message if error is not None else None,
        events=events,
        extra=vendor_extra(None, obj.service_tier),
    )


class ResponsesJSONObserver(CapturingBody):
    def _result(self, body: bytes) -> NormalizedResponse:
        obj = _decode_responses(body)
        return _responses_result(obj, self._capture, 0, True)


_RESPONSES_TOKEN_EVENTS = frozenset(
    {
        b"response.output_text.delta",
        b"response.function_call_arguments.delta",
        b"response.reasoning_text.delta",
        b"response.reasoning_summary_text.delta",
        b"response.refusal.delta",
        b"response.audio.delta",
    }
)
_RESPONSES_FINAL_EVENTS = frozenset({b"response.completed", b"response.incomplete", b"response.failed"})


class ResponsesStreamObserver:
    """Reads Responses API events; the final ``response.*`` event carries the whole response and usage."""

    __slots__ = ("_capture", "_error", "_events", "_exchange", "_final", "_last", "_parser")

    def __init__(self, exchange: Exchange, capture: bool) -> None:
        self._exchange = exchange
        self._capture = capture
        self._parser = SSEParser()
        self._events = 0
        self._final: ResponsesObject | None = None
        self._last: ResponsesObject | None = None
        self._error: tuple[str, str | None] | None = None

    def feed(self, chunk: bytes, now_ns: int) -> None:
        self._handle(self._parser.feed(chunk), now_ns)

    def _handle(self, events: list[tuple[bytes, bytes]], now_ns: int) -> None:
        saw_token = False
        for name, data in events:
            self._events += 1
            if name in _RESPONSES_TOKEN_EVENTS:
                saw_token = True
                continue  # deltas are rebuilt from the final event: no need to decode them
            if not name or name in _RESPONSES_FINAL_EVENTS or name == b"response.created" or name == b"error":
                try:
                    event = _decode_responses_event(data)
                except msgspec.DecodeError:
                    continue
                if event.type == "error":
                    self._error = (event.code or "stream_error", event.message)
                elif event.response is not None:
                    self._last = event.response
                    if event.type.encode() in _RESPONSES_FINAL_EVENTS:
                        self._final = event.response
                elif event.type.encode() in _RESPONSES_TOKEN_EVENTS:
                    saw_token = True
        if saw_token:
            self._exchange.mark_token(now_ns)

    def finish(self) -> NormalizedResponse:
        self._handle(self._parser.close(), 0)
        result = _responses_result(self._final or self._last, self._capture, self._events, self._final is not None)
        if self._error is not None:
            return msgspec.structs.replace(
                result, completed=False, finish_reason="error", error_type=self._error[0], error_message=self._error[1]
            )
        return result
