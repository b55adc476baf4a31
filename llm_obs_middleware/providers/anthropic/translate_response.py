"""Anthropic Messages answers as OpenAI Chat Completions: the body, the SSE stream and errors.

Read with the wire Structs and the observer's own readers (usage, stop reason, event decoding), so
the translated client and the record say the same: the client's ``finish_reason`` is
``openai_finish_reason`` of the record's. Text and ``thinking`` (as ``reasoning_content``) blocks,
``tool_use`` blocks as tool calls; usage counts cache reads and writes in ``prompt_tokens``.
"""

from __future__ import annotations

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
    CompletionTokensDetails,
    Delta,
    FunctionDelta,
    OpenAIUsage,
    OutputFunction,
    OutputToolCall,
    PromptTokensDetails,
    ToolCallDelta,
    assistant_completion,
    encode,
    error_event,
)
from llm_obs_middleware.providers.translate_base import (
    DONE,
    EventTranslator,
    ResponseContext,
    TranslatedError,
    compact_json,
    openai_error,
    openai_finish_reason,
    raw_error_message,
)

__all__ = ["AnthropicStream", "openai_answer", "openai_error_answer", "openai_usage"]

_decode_message = msgspec.json.Decoder(MessagesResponse).decode
_decode_error = msgspec.json.Decoder(ErrorEnvelope).decode


def openai_usage(usage: AnthropicUsage | None) -> OpenAIUsage | None:
    """The record's usage (:func:`anthropic_usage`) in OpenAI's shape."""
    normalized = anthropic_usage(usage)
    if normalized is None:
        return None
    prompt, completion = normalized.input_tokens or 0, normalized.output_tokens or 0
    reasoning = normalized.reasoning_tokens
    return OpenAIUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=normalized.cache_read_tokens or 0),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning) if reasoning else None,
    )


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
        out = self._out
        if isinstance(event, ContentBlockDelta):
            delta = event.delta
            if delta is None:
                return b""
            if delta.type == "text_delta" and delta.text:
                return out.delta(Delta(content=delta.text))
            if delta.type == "thinking_delta" and delta.thinking:
                return out.delta(Delta(reasoning_content=delta.thinking))
            if delta.type == "input_json_delta" and delta.partial_json:
                index = self._blocks.get(event.index)
                if index is not None:
                    call = ToolCallDelta(index=index, function=FunctionDelta(arguments=delta.partial_json))
                    return out.delta(Delta(tool_calls=[call]))
            return b""
        if isinstance(event, ContentBlockStart):
            block = event.content_block
            if block is None or block.type != "tool_use":
                return b""
            index = self._blocks[event.index] = self._tools
            self._tools += 1
            function = FunctionDelta(name=block.name, arguments="")
            return out.delta(
                Delta(tool_calls=[ToolCallDelta(index=index, id=block.id, type="function", function=function)])
            )
        if isinstance(event, MessageStart) and event.message is not None:
            out.id = event.message.id or out.id
            out.model = event.message.model or out.model
            if event.message.usage is not None:
                self._usage = event.message.usage
            return out.delta(Delta(role="assistant", content=""))
        if isinstance(event, MessageDelta):
            if event.usage is not None:
                self._usage = merge_usage(self._usage, event.usage)
            if event.delta is not None and event.delta.stop_reason is not None:
                normalized = finish_reason(event.delta.stop_reason, self._tools > 0)
                return out.delta(Delta(), openai_finish_reason(normalized))
            return b""
        if isinstance(event, MessageStop):
            self._completed = True
        elif isinstance(event, StreamError):
            kind = (event.error.type if event.error else None) or "api_error"
            return error_event((event.error.message if event.error else None) or "", kind, kind)
        return b""

    def close(self) -> bytes:
        tail = self._drain()
        if not self._completed:
            return tail  # an unfinished stream ends without [DONE], as OpenAI's would
        usage = openai_usage(self._usage) if self._include_usage else None
        return tail + (self._out.usage(usage) if usage is not None else b"") + DONE
