"""Incremental observers of Anthropic Messages responses: plain, streamed (SSE) and errors.

Usage follows the fixtures' normalization: Anthropic's ``input_tokens`` excludes cache reads and
writes, so the record's input is their sum; stream usage is a cumulative snapshot, so
``message_delta`` fields override those of ``message_start`` (absent fields keep their value).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from llm_obs_middleware.providers._observing import (
    CapturingBody,
    NamedEventObserver,
    StatusBody,
    ToolSlots,
    stream_problem,
    typed_event_decoder,
)
from llm_obs_middleware.providers.anthropic.wire import (
    EVENT_NAMES,
    AnthropicUsage,
    ContentBlockDelta,
    ContentBlockStart,
    ErrorEnvelope,
    MessageDelta,
    MessagesResponse,
    MessageStart,
    MessageStop,
    StreamError,
    StreamEvent,
    finish_reason,
)
from llm_obs_middleware.records.schema import ExtraValue, NormalizedResponse, ToolCall, Usage

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange

__all__ = [
    "MessagesErrorObserver",
    "MessagesJSONObserver",
    "MessagesStreamObserver",
    "anthropic_usage",
    "decode_event",
    "finish_reason",
    "merge_usage",
]

_decode_message = msgspec.json.Decoder(MessagesResponse).decode
_decode_error = msgspec.json.Decoder(ErrorEnvelope).decode
decode_event: Callable[[bytes], StreamEvent | str] = typed_event_decoder(StreamEvent, EVENT_NAMES)
"""One event's data: the event, or the ``type`` we do not know (``""`` if none); raises
``msgspec.DecodeError`` for JSON that does not parse or a known event that does not fit."""


def anthropic_usage(usage: AnthropicUsage | None) -> Usage | None:
    """Normalize Anthropic usage: input = uncached + cache writes + cache reads; 1 h writes kept apart."""
    if usage is None:
        return None
    uncached, written, read = usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens
    breakdown = usage.cache_creation
    written_1h = breakdown.ephemeral_1h_input_tokens if breakdown is not None else None
    if written is None and breakdown is not None and breakdown.ephemeral_5m_input_tokens is not None:
        written = breakdown.ephemeral_5m_input_tokens + (written_1h or 0)
    total_in = None if uncached is None and written is None and read is None else (uncached or 0) + (written or 0)
    if total_in is not None:
        total_in += read or 0
    output = usage.output_tokens
    details = usage.output_tokens_details
    return Usage(
        input_tokens=total_in,
        output_tokens=output,
        total_tokens=total_in + output if total_in is not None and output is not None else None,
        cache_read_tokens=read,
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
        reasoning_tokens=details.thinking_tokens if details is not None else None,
    )


def _extra(usage: AnthropicUsage | None) -> dict[str, ExtraValue]:
    """Vendor extras of a message: the tier that served it (``standard``, ``priority``, ``batch``)."""
    if usage is None or usage.service_tier is None:
        return {}
    return {"anthropic.service_tier": usage.service_tier}


def merge_usage(old: AnthropicUsage | None, new: AnthropicUsage) -> AnthropicUsage:
    """``message_delta.usage`` over ``message_start.usage``: the fields it reports win."""
    if old is None:
        return new
    changes = {field: value for field in new.__struct_fields__ if (value := getattr(new, field)) is not None}
    return msgspec.structs.replace(old, **changes)


class MessagesJSONObserver(CapturingBody):
    """A non-streamed ``message`` body, decoded once at the end."""

    def _result(self, body: bytes) -> NormalizedResponse:
        try:
            message = _decode_message(body)
        except msgspec.DecodeError as exc:
            return NormalizedResponse(
                completed=False, error_type="invalid_response", error_message=f"unparsable message body: {exc}"
            )
        if message.error is not None:
            error = message.error
            return NormalizedResponse(
                completed=False, finish_reason="error", error_type=error.type or "error", error_message=error.message
            )
        tool_calls: list[ToolCall] = []
        texts: list[str] = []
        chars = 0
        for block in message.content:
            if block.type == "text" and block.text:
                chars += len(block.text)
                if self._capture:
                    texts.append(block.text)
            elif block.type == "thinking" and block.thinking:
                chars += len(block.thinking)
            elif block.type == "tool_use":
                arguments = bytes(block.input).decode() or "{}"
                chars += len(block.name or "") + len(arguments)
                tool_calls.append(ToolCall(id=block.id, name=block.name or "", arguments=arguments))
        raw = message.stop_reason
        return NormalizedResponse(
            id=message.id,
            model=message.model,
            finish_reasons=[raw] if raw else [],
            finish_reason=finish_reason(raw, bool(tool_calls)),
            usage=anthropic_usage(message.usage),
            tool_calls=tool_calls,
            output_text="".join(texts) if texts else None,
            output_chars=chars,
            extra=_extra(message.usage),
        )


class MessagesStreamObserver(NamedEventObserver[StreamEvent]):
    """Reads Messages stream events as they pass; marks token arrival (text, thinking, tool input) for TTFT.

    ``completed`` needs ``message_stop``; an ``event: error`` ends the stream with ``finish_reason``
    ``error`` and the provider's error type. Events whose JSON does not parse make the record say
    ``invalid_response``; unknown event types are only noted in ``error_message``.
    """

    __slots__ = ("_done", "_error", "_id", "_model", "_stop_reason", "_tools", "_usage")

    _NAMES = EVENT_NAMES - {b"ping"}
    _SKIP = frozenset({b"ping"})

    _DECODE = decode_event

    def __init__(self, exchange: Exchange, capture: bool) -> None:
        super().__init__(exchange, capture)
        self._id: str | None = None
        self._model: str | None = None
        self._usage: AnthropicUsage | None = None
        self._stop_reason: str | None = None
        self._tools = ToolSlots()
        self._done = False
        self._error: tuple[str, str | None] | None = None

    def _on_block_delta(self, event: ContentBlockDelta) -> bool:
        delta = event.delta
        if delta is None:
            return False
        if delta.text:
            self._text(delta.text)
            return True
        if delta.thinking:
            self._chars += len(delta.thinking)
            return True
        if delta.partial_json:
            slot = self._tools.get(event.index)
            if slot is not None:
                slot.pieces.append(delta.partial_json)
            self._chars += len(delta.partial_json)
            return True
        return False

    def _on_block_start(self, event: ContentBlockStart) -> bool:
        block = event.content_block
        if block is None:
            return False
        if block.type == "tool_use":
            slot = self._tools.slot(event.index)
            slot.id, slot.name, slot.fallback = block.id, block.name, bytes(block.input).decode() or "{}"
            self._chars += len(block.name or "")
            return True
        if block.type == "text" and block.text:  # normally "", the text follows in deltas
            self._text(block.text)
            return True
        return False

    def _on_message_start(self, event: MessageStart) -> bool:
        message = event.message
        if message is not None:
            self._id = message.id
            self._model = message.model
            if message.usage is not None:
                self._usage = message.usage
        return False

    def _on_message_delta(self, event: MessageDelta) -> bool:
        if event.delta is not None and event.delta.stop_reason is not None:
            self._stop_reason = event.delta.stop_reason
        if event.usage is not None:
            self._usage = merge_usage(self._usage, event.usage)
        return False

    def _on_message_stop(self, event: MessageStop) -> bool:
        self._done = True
        return False

    def _on_error(self, event: StreamError) -> bool:
        error = event.error
        self._error = ((error.type if error else None) or "stream_error", error.message if error else None)
        return False

    _HANDLERS: ClassVar[dict[type, Callable[[Any, Any], bool]]] = {
        ContentBlockDelta: _on_block_delta,
        ContentBlockStart: _on_block_start,
        MessageStart: _on_message_start,
        MessageDelta: _on_message_delta,
        MessageStop: _on_message_stop,
        StreamError: _on_error,
    }  # content_block_stop, ping: nothing to fold

    def finish(self) -> NormalizedResponse:
        self.flush()
        tool_calls = self._tools.calls()
        raw = self._stop_reason
        error_type, message = self._error if self._error is not None else (None, None)
        error_type, message = stream_problem(error_type, message, self._bad, self._unknown)
        return NormalizedResponse(
            id=self._id,
            model=self._model,
            finish_reasons=[raw] if raw else [],
            finish_reason="error" if self._error is not None else finish_reason(raw, bool(tool_calls)),
            usage=anthropic_usage(self._usage),
            tool_calls=tool_calls,
            output_text="".join(self._texts) if self._texts else None,
            completed=self._done and self._error is None,
            error_type=error_type,
            error_message=message,
            events=self._events,
            output_chars=self._chars,
            extra=_extra(self._usage),
        )


class MessagesErrorObserver(StatusBody):
    """An error status: the record keeps Anthropic's error type (``overloaded_error``, ``rate_limit_error``...)."""

    def finish(self) -> NormalizedResponse:
        error_type, message = f"http_{self._status}", None
        try:
            error = _decode_error(self._body() or b"").error
        except msgspec.DecodeError:
            error = None
        if error is not None:
            error_type, message = error.type or error_type, error.message
        return NormalizedResponse(completed=False, finish_reason="error", error_type=error_type, error_message=message)
