"""Anthropic Messages answers as OpenAI Chat Completions: the body, the SSE stream and errors.

Read with the wire Structs and the observer's own readers (usage, stop reason, event decoding), so
the translated client and the record say the same: the client's ``finish_reason`` is
``openai_finish_reason`` of the record's. Text and ``thinking`` (as ``reasoning_content``) blocks,
``tool_use`` blocks as tool calls; usage counts cache reads and writes in ``prompt_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from llm_obs_middleware.providers.anthropic.observe import MessagesStreamObserver, anthropic_usage, merge_usage
from llm_obs_middleware.providers.anthropic.wire import (
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
from llm_obs_middleware.providers.openai.chat_shapes import (
    ChunkWriter,
    Delta,
    OpenAIUsage,
    OutputFunction,
    OutputToolCall,
    assistant_completion,
    encode,
    error_event,
)
from llm_obs_middleware.providers.translate_base import (
    EventTranslator,
    ResponseContext,
    TranslatedError,
    compact_json,
    openai_error,
    openai_finish_reason,
    openai_usage as record_usage,
    raw_error_message,
)

__all__ = ["AnthropicStream", "openai_answer", "openai_error_answer", "openai_usage"]

_decode_message = msgspec.json.Decoder(MessagesResponse).decode
_decode_error = msgspec.json.Decoder(ErrorEnvelope).decode


def openai_usage(usage: AnthropicUsage | None) -> OpenAIUsage | None:
    """The record's usage (:func:`anthropic_usage`) in OpenAI's shape."""
    return record_usage(anthropic_usage(usage))


def openai_answer(body: bytes, context: ResponseContext) -> bytes:
    """A ``message`` body as a ``chat.completion``."""
    message = _decode_message(body)
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[OutputToolCall] = []
    for block in message.content:
        if block.type == "text" and block.text:
            texts.append(block.text)
        elif block.type == "thinking" and block.thinking:
            thinking.append(block.thinking)
        elif block.type == "tool_use":
            arguments = compact_json(block.input)
            calls.append(OutputToolCall(id=block.id or "", function=OutputFunction(block.name or "", arguments)))
    completion = assistant_completion(
        id=message.id or context.response_id,
        created=context.created,
        model=message.model or context.model,
        texts=texts,
        reasoning=thinking,
        calls=calls,
        finish_reason=openai_finish_reason(finish_reason(message.stop_reason, bool(calls))),
        usage=openai_usage(message.usage),
    )
    return encode(completion)


def openai_error_answer(status: int, body: bytes, retry_after: str | None) -> TranslatedError:
    """An Anthropic error answer in OpenAI's format (``overloaded_error`` keeps its type: OpenAI has none)."""
    try:
        detail = _decode_error(body).error
    except msgspec.DecodeError:
        detail = None
    if detail is None:
        return openai_error(status, raw_error_message(body, "anthropic", status), None, retry_after)
    error_type = "overloaded_error" if detail.type == "overloaded_error" else None
    return openai_error(status, detail.message or "", detail.type, retry_after, error_type=error_type)


class AnthropicStream(EventTranslator[StreamEvent]):
    """Anthropic's Messages stream events (decoded by :class:`MessagesStreamObserver`) to OpenAI chunks."""

    __slots__ = ("_blocks", "_completed", "_include_usage", "_out", "_tools", "_usage")
    source = MessagesStreamObserver

    def __init__(self, context: ResponseContext) -> None:
        super().__init__()
        self._out = ChunkWriter(context.created, context.response_id, context.model)
        self._include_usage = context.include_usage
        self._usage: AnthropicUsage | None = None
        self._tools = 0
        self._blocks: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool call index
        self._completed = False

    def event(self, event: StreamEvent) -> bytes:
        handler = _HANDLERS.get(type(event))
        return handler(self, event) if handler is not None else b""

    def _block_delta(self, event: ContentBlockDelta) -> bytes:
        delta = event.delta
        if delta is None:
            return b""
        if delta.type == "text_delta" and delta.text:
            return self._out.delta(Delta(content=delta.text))
        if delta.type == "thinking_delta" and delta.thinking:
            return self._out.delta(Delta(reasoning_content=delta.thinking))
        if delta.type == "input_json_delta" and delta.partial_json:
            index = self._blocks.get(event.index)
            if index is not None:
                return self._out.tool_arguments(index, delta.partial_json)
        return b""

    def _block_start(self, event: ContentBlockStart) -> bytes:
        block = event.content_block
        if block is None or block.type != "tool_use":
            return b""
        index = self._blocks[event.index] = self._tools
        self._tools += 1
        return self._out.tool_call(index, block.id, block.name)

    def _message_start(self, event: MessageStart) -> bytes:
        message = event.message
        if message is None:
            return b""
        out = self._out
        out.id = message.id or out.id
        out.model = message.model or out.model
        if message.usage is not None:
            self._usage = message.usage
        return out.start()

    def _message_delta(self, event: MessageDelta) -> bytes:
        if event.usage is not None:
            self._usage = merge_usage(self._usage, event.usage)
        if event.delta is None or event.delta.stop_reason is None:
            return b""
        normalized = finish_reason(event.delta.stop_reason, self._tools > 0)
        return self._out.delta(Delta(), openai_finish_reason(normalized))

    def _message_stop(self, event: MessageStop) -> bytes:
        self._completed = True
        return b""

    def _error(self, event: StreamError) -> bytes:
        kind = (event.error.type if event.error else None) or "api_error"
        return error_event((event.error.message if event.error else None) or "", kind, kind)

    def close(self) -> bytes:
        tail = self._drain()
        if not self._completed:
            return tail  # an unfinished stream ends without [DONE], as OpenAI's would
        return tail + self._out.done(openai_usage(self._usage) if self._include_usage else None)


# The stream events a client sees something of, and what each becomes (the others: nothing).
_HANDLERS: dict[type[Any], Callable[[AnthropicStream, Any], bytes]] = {
    ContentBlockDelta: AnthropicStream._block_delta,
    ContentBlockStart: AnthropicStream._block_start,
    MessageStart: AnthropicStream._message_start,
    MessageDelta: AnthropicStream._message_delta,
    MessageStop: AnthropicStream._message_stop,
    StreamError: AnthropicStream._error,
}
