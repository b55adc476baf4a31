"""Incremental observers of Anthropic Messages responses: plain, streamed (SSE) and errors.

Usage follows the fixtures' normalization: Anthropic's ``input_tokens`` excludes cache reads and
writes, so the record's input is their sum; stream usage is a cumulative snapshot, so
``message_delta`` fields override those of ``message_start`` (absent fields keep their value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers._buffered import BufferedBody
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
    from collections.abc import Callable

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
_decode_event = msgspec.json.Decoder(StreamEvent).decode
_decode_error = msgspec.json.Decoder(ErrorEnvelope).decode


class _Typed(msgspec.Struct):
    type: str = ""


_decode_type = msgspec.json.Decoder(_Typed).decode
_MAX_NOTED = 5


def decode_event(data: bytes) -> StreamEvent | str:
    """One event's data: the event, or the ``type`` we do not know (``""`` if none); raises
    ``msgspec.DecodeError`` for JSON that does not parse or a known event that does not fit."""
    try:
        return _decode_event(data)
    except msgspec.ValidationError:
        kind = _decode_type(data).type
        if kind.encode() in EVENT_NAMES:
            raise
        return kind


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


class MessagesJSONObserver(BufferedBody):
    """A non-streamed ``message`` body, decoded once at the end."""

    __slots__ = ("_capture",)

    def __init__(self, capture: bool) -> None:
        super().__init__()
        self._capture = capture

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


class _ToolSlot:
    __slots__ = ("id", "input", "name", "pieces")

    def __init__(self, id: str | None, name: str | None, input: bytes) -> None:
        self.id = id
        self.name = name
        self.input = input
        self.pieces: list[str] = []


class MessagesStreamObserver:
    """Reads Messages stream events as they pass; marks token arrival (text, thinking, tool input) for TTFT.

    ``completed`` needs ``message_stop``; an ``event: error`` ends the stream with ``finish_reason``
    ``error`` and the provider's error type. Events whose JSON does not parse make the record say
    ``invalid_response``; unknown event types are only noted in ``error_message``.
    """

    __slots__ = (
        "_bad",
        "_capture",
        "_chars",
        "_done",
        "_error",
        "_events",
        "_exchange",
        "_id",
        "_listener",
        "_model",
        "_parser",
        "_stop_reason",
        "_texts",
        "_tools",
        "_unknown",
        "_usage",
    )

    def __init__(self, exchange: Exchange, capture: bool) -> None:
        self._exchange = exchange
        self._capture = capture
        self._parser = SSEParser()
        self._listener: Callable[[StreamEvent], object] | None = None
        self._id: str | None = None
        self._model: str | None = None
        self._usage: AnthropicUsage | None = None
        self._stop_reason: str | None = None
        self._tools: dict[int, _ToolSlot] = {}
        self._texts: list[str] = []
        self._chars = 0
        self._events = 0
        self._done = False
        self._error: tuple[str, str | None] | None = None
        self._bad: list[str] = []
        self._unknown: list[str] = []

    def listen(self, listener: Callable[[StreamEvent], object]) -> None:
        """Hand each decoded event to ``listener`` too (a stream translator: the stream is parsed once)."""
        self._listener = listener

    def feed(self, chunk: bytes, now_ns: int) -> None:
        self._handle(self._parser.feed(chunk), now_ns)

    def flush(self) -> None:
        """Read an event left unterminated at the end of the stream (``finish`` does it too)."""
        self._handle(self._parser.close(), 0)

    def _handle(self, events: list[tuple[bytes, bytes]], now_ns: int) -> None:
        saw_token = False
        listener = self._listener
        for name, data in events:
            self._events += 1
            if name == b"ping":
                continue
            if name and name not in EVENT_NAMES:
                if len(self._unknown) < _MAX_NOTED:
                    self._unknown.append(name.decode(errors="replace"))
                continue  # passed through, uncounted in the result
            try:
                event = decode_event(data)
            except msgspec.DecodeError:
                if len(self._bad) < _MAX_NOTED:
                    self._bad.append(name.decode(errors="replace") or "(unnamed)")
                continue
            if isinstance(event, str):  # an unnamed event with a type we do not know
                if len(self._unknown) < _MAX_NOTED:
                    self._unknown.append(event or "(untyped)")
                continue
            if listener is not None:
                listener(event)
            if self._apply(event):
                saw_token = True
        if saw_token:
            self._exchange.mark_token(now_ns)

    def _apply(self, event: StreamEvent) -> bool:
        """Fold one event into the state; ``True`` when it carried output tokens."""
        if isinstance(event, ContentBlockDelta):
            delta = event.delta
            if delta is None:
                return False
            if delta.text:
                self._chars += len(delta.text)
                if self._capture:
                    self._texts.append(delta.text)
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
        if isinstance(event, ContentBlockStart):
            block = event.content_block
            if block is None:
                return False
            if block.type == "tool_use":
                self._tools[event.index] = _ToolSlot(block.id, block.name, bytes(block.input))
                self._chars += len(block.name or "")
                return True
            if block.type == "text" and block.text:  # normally "", the text follows in deltas
                self._chars += len(block.text)
                if self._capture:
                    self._texts.append(block.text)
                return True
            return False
        if isinstance(event, MessageStart):
            message = event.message
            if message is not None:
                self._id = message.id
                self._model = message.model
                if message.usage is not None:
                    self._usage = message.usage
        elif isinstance(event, MessageDelta):
            if event.delta is not None and event.delta.stop_reason is not None:
                self._stop_reason = event.delta.stop_reason
            if event.usage is not None:
                self._usage = merge_usage(self._usage, event.usage)
        elif isinstance(event, MessageStop):
            self._done = True
        elif isinstance(event, StreamError):
            error = event.error
            self._error = ((error.type if error else None) or "stream_error", error.message if error else None)
        return False  # content_block_stop, ping

    def finish(self) -> NormalizedResponse:
        self.flush()
        tool_calls = [
            ToolCall(id=slot.id, name=slot.name or "", arguments="".join(slot.pieces) or slot.input.decode() or "{}")
            for _, slot in sorted(self._tools.items())
        ]
        raw = self._stop_reason
        error_type, message = self._error if self._error is not None else (None, None)
        if self._bad:
            note = f"unparsable stream events: {', '.join(self._bad)}"
            error_type, message = error_type or "invalid_response", message or note
        elif self._unknown and message is None:
            message = f"unknown stream events passed through: {', '.join(self._unknown)}"
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


class MessagesErrorObserver(BufferedBody):
    """An error status: the record keeps Anthropic's error type (``overloaded_error``, ``rate_limit_error``...)."""

    __slots__ = ("_status",)

    def __init__(self, status: int) -> None:
        super().__init__()
        self._status = status

    def finish(self) -> NormalizedResponse:
        error_type, message = f"http_{self._status}", None
        try:
            error = _decode_error(self._body() or b"").error
        except msgspec.DecodeError:
            error = None
        if error is not None:
            error_type, message = error.type or error_type, error.message
        return NormalizedResponse(completed=False, finish_reason="error", error_type=error_type, error_message=message)
