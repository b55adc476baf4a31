"""Incremental observers of Cohere v2 chat responses: plain, streamed (SSE) and errors.

Usage follows the fixtures' rules: input/output come from ``usage.tokens`` (raw model tokens, of
which ``cached_tokens`` is a subset), not from ``usage.billed_units``. Responses name no model, so
the observer takes the one the request was sent with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from llm_obs_middleware.providers._buffered import BufferedBody
from llm_obs_middleware.providers._observing import (
    NamedEventObserver,
    StatusBody,
    ToolSlots,
    stream_problem,
    typed_event_decoder,
)
from llm_obs_middleware.providers.cohere.wire import (
    EVENT_NAMES,
    ChatResponse,
    CohereUsage,
    ContentDelta,
    ContentStart,
    ErrorBody,
    MessageEnd,
    MessageStart,
    StreamEvent,
    ToolCallDelta,
    ToolCallStart,
    ToolPlanDelta,
    failed,
    finish_reason,
)
from llm_obs_middleware.records.schema import NormalizedResponse, ToolCall, Usage

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange

__all__ = [
    "ChatErrorObserver",
    "ChatJSONObserver",
    "ChatStreamObserver",
    "cohere_usage",
    "decode_event",
    "finish_reason",
]

_decode_response = msgspec.json.Decoder(ChatResponse).decode
_decode_error = msgspec.json.Decoder(ErrorBody).decode
decode_event: Callable[[bytes], StreamEvent | str] = typed_event_decoder(StreamEvent, EVENT_NAMES)
"""One event's data: the event, or the ``type`` we do not know (``""`` if none); raises
``msgspec.DecodeError`` for JSON that does not parse or a known event that does not fit."""


def _int(value: int | float | None) -> int | None:
    return None if value is None else int(value)


def cohere_usage(usage: CohereUsage | None) -> Usage | None:
    """Normalize Cohere usage from ``usage.tokens``; the total is input + output (none is reported)."""
    if usage is None:
        return None
    tokens = usage.tokens
    input_tokens = _int(tokens.input_tokens) if tokens is not None else None
    output_tokens = _int(tokens.output_tokens) if tokens is not None else None
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens if input_tokens is not None and output_tokens is not None else None,
        cache_read_tokens=_int(usage.cached_tokens),
        billed_input_tokens=_int(billed.input_tokens) if (billed := usage.billed_units) is not None else None,
        billed_output_tokens=_int(billed.output_tokens) if billed is not None else None,
    )


def _response_model(exchange: Exchange) -> str | None:
    request = exchange.request
    return exchange.served_model or (request.model if request is not None else None)


class ChatJSONObserver(BufferedBody):
    """A non-streamed chat body, decoded once at the end."""

    __slots__ = ("_capture", "_model")

    def __init__(self, exchange: Exchange, capture: bool) -> None:
        super().__init__()
        self._capture = capture
        self._model = _response_model(exchange)

    def _result(self, body: bytes) -> NormalizedResponse:
        try:
            response = _decode_response(body)
        except msgspec.DecodeError as exc:
            return NormalizedResponse(
                completed=False, error_type="invalid_response", error_message=f"unparsable chat body: {exc}"
            )
        message = response.message
        tool_calls: list[ToolCall] = []
        texts: list[str] = []
        chars = 0
        if message is not None:
            for part in message.content:
                if part.type == "text" and part.text:
                    chars += len(part.text)
                    if self._capture:
                        texts.append(part.text)
                elif part.thinking:
                    chars += len(part.thinking)
            chars += len(message.tool_plan or "")
            for call in message.tool_calls:
                function = call.function
                name, arguments = (function.name or "", function.arguments or "") if function else ("", "")
                chars += len(name) + len(arguments)
                tool_calls.append(ToolCall(id=call.id, name=name, arguments=arguments))
        raw = response.finish_reason
        failure = failed(raw, None)
        return NormalizedResponse(
            id=response.id,
            model=self._model,
            finish_reasons=[raw] if raw else [],
            finish_reason=finish_reason(raw, bool(tool_calls)),
            usage=cohere_usage(response.usage),
            tool_calls=tool_calls,
            output_text="".join(texts) if texts else None,
            completed=not failure,
            error_type=raw if failure else None,
            output_chars=chars,
        )


class ChatStreamObserver(NamedEventObserver[StreamEvent]):
    """Reads v2 chat stream events as they pass; marks token arrival (text, thinking, tool plan, tool calls).

    ``completed`` needs ``message-end`` without an error (``data: [DONE]`` is optional). A
    ``message-end`` reporting ``ERROR``/``TIMEOUT`` or an ``error`` text ends it with
    ``finish_reason`` ``error``. Unparsable events make the record say ``invalid_response``; unknown
    event types are only noted in ``error_message``.
    """

    __slots__ = ("_ended", "_error", "_id", "_model", "_reason", "_tools", "_usage")

    _NAMES = EVENT_NAMES
    _DONE = b"[DONE]"

    _DECODE = decode_event

    def __init__(self, exchange: Exchange, capture: bool) -> None:
        super().__init__(exchange, capture)
        self._model = _response_model(exchange)
        self._id: str | None = None
        self._usage: CohereUsage | None = None
        self._reason: str | None = None
        self._error: str | None = None
        self._ended = False
        self._tools = ToolSlots()

    def _on_content(self, event: ContentDelta | ContentStart) -> bool:
        message = event.delta.message if event.delta is not None else None
        content = message.content if message is not None else None
        if content is None:
            return False
        if content.text:
            self._text(content.text)
            return True
        if content.thinking:
            self._chars += len(content.thinking)
            return True
        return False

    def _on_tool_plan(self, event: ToolPlanDelta) -> bool:
        plan = event.delta.message.tool_plan if event.delta is not None and event.delta.message else None
        self._chars += len(plan or "")
        return bool(plan)

    def _on_tool_call(self, event: ToolCallStart | ToolCallDelta) -> bool:
        call = event.delta.message.tool_calls if event.delta is not None and event.delta.message else None
        if call is None:
            return False
        function = call.function
        slot = self._tools.slot(event.index)
        if function is None:
            slot.add(call.id, None, None)
        else:
            self._chars += slot.add(call.id, function.name, function.arguments)
        return isinstance(event, ToolCallStart) or bool(function and function.arguments)

    def _on_message_start(self, event: MessageStart) -> bool:
        self._id = event.id
        return False

    def _on_message_end(self, event: MessageEnd) -> bool:
        self._ended = True
        if (delta := event.delta) is not None:
            self._reason = delta.finish_reason or self._reason
            self._usage = delta.usage or self._usage
            self._error = delta.error
        return False

    _HANDLERS: ClassVar[dict[type, Callable[[Any, Any], bool]]] = {
        ContentDelta: _on_content,
        ContentStart: _on_content,
        ToolPlanDelta: _on_tool_plan,
        ToolCallStart: _on_tool_call,
        ToolCallDelta: _on_tool_call,
        MessageStart: _on_message_start,
        MessageEnd: _on_message_end,
    }  # content-end, tool-call-end, citations, debug: nothing to fold

    def finish(self) -> NormalizedResponse:
        self.flush()
        tool_calls = self._tools.calls()
        raw = self._reason
        failure = failed(raw, self._error)
        error_type, message = stream_problem(
            (raw or "stream_error") if failure else None, self._error, self._bad, self._unknown
        )
        return NormalizedResponse(
            id=self._id,
            model=self._model,
            finish_reasons=[raw] if raw else [],
            finish_reason="error" if failure else finish_reason(raw, bool(tool_calls)),
            usage=cohere_usage(self._usage),
            tool_calls=tool_calls,
            output_text="".join(self._texts) if self._texts else None,
            completed=self._ended and not failure,
            error_type=error_type,
            error_message=message,
            events=self._events,
            output_chars=self._chars,
        )


class ChatErrorObserver(StatusBody):
    """An error status. Cohere bodies carry no error type, so the record says ``http_<status>``."""

    def finish(self) -> NormalizedResponse:
        try:
            error: ErrorBody | None = _decode_error(self._body() or b"")
        except msgspec.DecodeError:
            error = None
        return NormalizedResponse(
            completed=False,
            finish_reason="error",
            error_type=f"http_{self._status}",
            error_message=error.message if error is not None else None,
            # Cohere names the failed request only in the error body (no request id header).
            extra={"cohere.request_id": error.id} if error is not None and error.id else {},
        )
