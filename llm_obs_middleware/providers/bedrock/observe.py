"""Incremental observers of Bedrock Converse responses: JSON bodies, ConverseStream event streams, errors.

Usage is normalized as the fixtures README says: ``inputTokens`` excludes cache reads and writes, so
they are added back; ``totalTokens`` is kept as reported. Bedrock reports no response id (only the
``x-amzn-requestid`` header) and no model, so the model is the one the request was sent to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, NamedTuple, cast

import msgspec

from llm_obs_middleware.codecs.eventstream import EventStreamDecoder, EventStreamMessage
from llm_obs_middleware.providers._buffered import BufferedBody
from llm_obs_middleware.providers._observing import ToolSlots
from llm_obs_middleware.providers.bedrock.errors import stream_failure
from llm_obs_middleware.providers.bedrock.wire import (
    ConverseResponse,
    InvokeEmbedResponse,
    Metrics,
    StreamEvent,
    TokenUsage,
    finish_reason,
)
from llm_obs_middleware.providers.translate_base import compact_json
from llm_obs_middleware.records.schema import ExtraValue, NormalizedResponse, ToolCall, Usage

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange

__all__ = ["ConverseEvent", "ConverseJSONObserver", "ConverseStreamObserver", "InvokeEmbedObserver", "converse_usage"]

_decode_response = msgspec.json.Decoder(ConverseResponse).decode
_decode_event = msgspec.json.Decoder(StreamEvent).decode
_decode_invoke_response = msgspec.json.Decoder(InvokeEmbedResponse).decode
_MAX_NOTES = 5
_INVALID = "invalid_response"


class ConverseEvent(NamedTuple):
    """One decoded ConverseStream message, as :class:`ConverseStreamObserver` hands it to its listener."""

    name: str
    """The ``:event-type`` (``""`` for a failure)."""
    event: StreamEvent | None
    failure: tuple[str, str | None] | None = None
    """An in-band ``exception`` or ``error`` message: ``(error type, message)``."""


def converse_usage(usage: TokenUsage | None) -> Usage | None:
    if usage is None:
        return None
    read, write, output = usage.cache_read_input_tokens, usage.cache_write_input_tokens, usage.output_tokens
    total_input = None if usage.input_tokens is None else usage.input_tokens + (read or 0) + (write or 0)
    total = usage.total_tokens
    if total is None and total_input is not None and output is not None:
        total = total_input + output
    details = usage.cache_details
    return Usage(
        input_tokens=total_input,
        output_tokens=output,
        total_tokens=total,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=None if details is None else sum(d.input_tokens for d in details if d.ttl == "1h"),
    )


def _extra(metrics: Metrics | None) -> dict[str, ExtraValue]:
    """``bedrock.latency_ms``: the model's own processing time as Bedrock reports it."""
    if metrics is None or metrics.latency_ms is None:
        return {}
    return {"bedrock.latency_ms": metrics.latency_ms}


class ConverseJSONObserver(BufferedBody):
    """A ``/converse`` answer: one JSON object with the whole message and usage."""

    __slots__ = ("_capture", "_model")

    def __init__(self, model: str | None, capture: bool) -> None:
        super().__init__()
        self._model = model
        self._capture = capture

    def finish(self) -> NormalizedResponse:
        body = self._body()
        if not body:
            return NormalizedResponse(model=self._model, completed=False)
        try:
            response = _decode_response(body)
        except msgspec.DecodeError as exc:
            return NormalizedResponse(
                model=self._model, completed=False, error_type=_INVALID, error_message=f"converse body: {exc}"
            )
        tool_calls: list[ToolCall] = []
        texts: list[str] = []
        chars = 0
        message = response.output.message if response.output is not None else None
        for block in message.content if message is not None else ():
            if block.text is not None:
                chars += len(block.text)
                if self._capture:
                    texts.append(block.text)
            elif block.tool_use is not None:
                call = block.tool_use
                arguments = compact_json(call.input)
                tool_calls.append(ToolCall(id=call.tool_use_id, name=call.name or "", arguments=arguments))
                chars += len(call.name or "") + len(arguments)
            elif block.reasoning_content is not None and block.reasoning_content.reasoning_text is not None:
                chars += len(block.reasoning_content.reasoning_text.text or "")
        raw = response.stop_reason
        return NormalizedResponse(
            model=self._model,
            finish_reasons=[raw] if raw else [],
            finish_reason=finish_reason(raw, bool(tool_calls)),
            usage=converse_usage(response.usage),
            tool_calls=tool_calls,
            output_text="".join(texts) if texts else None,
            output_chars=chars,
            extra=_extra(response.metrics),
        )


class ConverseStreamObserver:
    """Decodes ConverseStream's event-stream frames as they pass; marks token arrival for TTFT.

    An ``exception`` (or ``error``) frame ends the stream in-band: ``completed=False``, finish reason
    ``error``, the exception type as the error type. A framing error (bad CRC, truncated message) or
    an undecodable known event ends parsing with ``error_type="invalid_response"``; unknown event
    types are counted and noted in ``error_message`` only. None of this changes the forwarded bytes.
    """

    __slots__ = (
        "_capture",
        "_chars",
        "_decoder",
        "_error",
        "_events",
        "_exchange",
        "_invalid",
        "_listener",
        "_metadata",
        "_metrics",
        "_model",
        "_notes",
        "_stop",
        "_texts",
        "_tools",
        "_usage",
    )

    def __init__(self, exchange: Exchange, model: str | None, capture: bool) -> None:
        self._exchange = exchange
        self._model = model
        self._capture = capture
        self._decoder = EventStreamDecoder()
        self._listener: Callable[[ConverseEvent], object] | None = None
        self._events = 0
        self._chars = 0
        self._texts: list[str] = []
        self._tools = ToolSlots()  # by content block index
        self._stop: str | None = None
        self._usage: TokenUsage | None = None
        self._metadata = False
        self._metrics: Metrics | None = None
        self._error: tuple[str, str | None] | None = None
        self._invalid: str | None = None
        self._notes: list[str] = []

    def listen(self, listener: Callable[[ConverseEvent], object]) -> None:
        """Hand each decoded message to ``listener`` too (a stream translator: the stream is parsed once)."""
        self._listener = listener

    def feed(self, chunk: bytes, now_ns: int) -> None:
        messages = self._decoder.feed(chunk)
        if messages and self._handle(messages):
            self._exchange.mark_token(now_ns)

    def flush(self) -> None:
        """Nothing to read at the end: a message is decoded only whole (``finish`` notes a truncated one)."""

    def _handle(self, messages: list[EventStreamMessage]) -> bool:
        saw_token = False
        for message in messages:
            self._events += 1
            headers = message.headers
            kind = headers.get(":message-type")
            if kind == "event":
                saw_token = self._event(headers.get(":event-type"), message.payload) or saw_token
            elif kind in ("exception", "error"):
                self._error = stream_failure(headers, message.payload)
                if self._listener is not None:
                    self._listener(ConverseEvent("", None, self._error))
            else:
                self._note(f"unknown event-stream message type {kind!r}")
        return saw_token

    def _event(self, name: object, payload: bytes) -> bool:
        handler = self._HANDLERS.get(name)
        if handler is None:
            self._note(f"unknown ConverseStream event {name!r} ignored")
            return False
        try:
            event = _decode_event(payload)
        except msgspec.DecodeError as exc:
            if self._invalid is None:
                self._invalid = f"undecodable {name} event: {exc}"
            return False
        if self._listener is not None:
            self._listener(ConverseEvent(cast(str, name), event))  # a key of _HANDLERS
        return handler(self, event)

    def _on_block_delta(self, event: StreamEvent) -> bool:
        delta = event.delta
        if delta is None:
            return False
        if delta.text:
            self._chars += len(delta.text)
            if self._capture:
                self._texts.append(delta.text)
            return True
        if delta.tool_use is not None:
            piece = delta.tool_use.input
            self._tools.slot(event.content_block_index or 0).pieces.append(piece or "")
            self._chars += len(piece or "")
            return bool(piece)
        if delta.reasoning_content is not None and delta.reasoning_content.text:
            self._chars += len(delta.reasoning_content.text)
            return True
        return False

    def _on_block_start(self, event: StreamEvent) -> bool:
        start = event.start.tool_use if event.start is not None else None
        if start is None:
            return False
        slot = self._tools.slot(event.content_block_index or 0)
        slot.id, slot.name = start.tool_use_id, start.name
        self._chars += len(start.name or "")
        return True

    def _on_message_stop(self, event: StreamEvent) -> bool:
        self._stop = event.stop_reason
        return False

    def _on_metadata(self, event: StreamEvent) -> bool:
        self._metadata = True
        if event.usage is not None:
            self._usage = event.usage
        self._metrics = event.metrics
        return False

    def _on_other(self, event: StreamEvent) -> bool:
        return False

    _HANDLERS: ClassVar[dict[object, Callable[[ConverseStreamObserver, StreamEvent], bool]]] = {
        "contentBlockDelta": _on_block_delta,
        "contentBlockStart": _on_block_start,
        "messageStop": _on_message_stop,
        "metadata": _on_metadata,
        "messageStart": _on_other,
        "contentBlockStop": _on_other,
    }
    """The ConverseStream events, by ``:event-type``: each folds one into the state, ``True`` when it
    carried output tokens."""

    def _note(self, note: str) -> None:
        if len(self._notes) < _MAX_NOTES and note not in self._notes:
            self._notes.append(note)

    def finish(self) -> NormalizedResponse:
        self._decoder.close()
        tool_calls = self._tools.calls()
        raw = self._stop
        error_type: str | None = None
        message: str | None = None
        invalid = self._decoder.error and f"event stream: {self._decoder.error}"
        invalid = invalid or self._invalid
        if self._error is not None:
            error_type, message = self._error
        elif invalid is not None:
            error_type, message = _INVALID, invalid
        if self._notes:
            message = "; ".join([message, *self._notes] if message else self._notes)
        return NormalizedResponse(
            model=self._model,
            finish_reasons=[raw] if raw else [],
            finish_reason="error" if self._error else finish_reason(raw, bool(tool_calls)),
            usage=converse_usage(self._usage),
            tool_calls=tool_calls,
            output_text="".join(self._texts) if self._texts else None,
            completed=self._metadata and self._error is None and invalid is None,
            error_type=error_type,
            error_message=message,
            events=self._events,
            output_chars=self._chars,
            extra=_extra(self._metrics),
        )


class InvokeEmbedObserver(BufferedBody):
    """An InvokeModel embeddings body: Titan's ``inputTextTokenCount``, else the token-count header
    Bedrock adds (read when the response is done, from the headers the client was sent)."""

    __slots__ = ("_exchange", "_model")

    def __init__(self, exchange: Exchange, model: str | None) -> None:
        super().__init__()
        self._exchange = exchange
        self._model = model

    def _result(self, body: bytes) -> NormalizedResponse:
        count = _decode_invoke_response(body).input_text_token_count
        if count is None:
            count = next(
                (
                    int(value)
                    for name, value in self._exchange.response_headers
                    if name.lower() == b"x-amzn-bedrock-input-token-count" and value.isdigit()
                ),
                None,
            )
        usage = Usage(input_tokens=count, total_tokens=count) if count is not None else None
        return NormalizedResponse(model=self._model, usage=usage)
