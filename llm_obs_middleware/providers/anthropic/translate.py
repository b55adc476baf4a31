"""OpenAI Chat Completions <-> Anthropic Messages (``POST /v1/messages``, plain and SSE).

Request: system/developer messages become ``system``; tool calls become ``tool_use`` blocks and tool
messages ``tool_result`` blocks (consecutive results share one user turn); images by URL or base64
data URL become ``image`` blocks; ``max_tokens`` is required by Anthropic, so an absent limit sends
:data:`DEFAULT_MAX_TOKENS`. Response: text and ``thinking`` (as ``reasoning_content``) blocks,
``tool_use`` blocks as tool calls; usage counts cache reads and writes in ``prompt_tokens``.
https://docs.anthropic.com/en/api/messages
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers.openai.chat_shapes import (
    ABSENT,
    ChatMessage,
    ChatRequest,
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
    present,
)
from llm_obs_middleware.providers.translate_base import (
    DONE,
    OPENAI_ONLY,
    ChatDecoding,
    ResponseContext,
    TranslatedError,
    TranslationError,
    UnsupportedParams,
    UnsupportedRule,
    UpstreamRequest,
    arguments_object,
    compact_json,
    data_url,
    openai_error,
    raw_error_message,
)

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicTranslator"]

DEFAULT_MAX_TOKENS = 4096
"""Sent as ``max_tokens`` when the OpenAI request sets no limit (Anthropic requires one)."""
ANTHROPIC_VERSION = b"2023-06-01"
# OpenAI parameters Anthropic has no equivalent for (the drop/error rule applies to them).
_UNSUPPORTED = (
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    *OPENAI_ONLY,
)
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_EMPTY_SCHEMA = msgspec.Raw(b'{"type":"object","properties":{}}')
_TOOL_CHOICE = {"auto": "auto", "required": "any", "none": "none"}


# --- Anthropic response shapes (only what is mapped) ---------------------------------------------


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    thinking: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = ABSENT


class _OutputDetails(msgspec.Struct):
    thinking_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: _OutputDetails | None = None


class _Message(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: _Usage | None = None


class _Delta(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _ErrorDetail(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class _Event(msgspec.Struct):
    type: str
    index: int = 0
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: _ErrorDetail | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | None = None


_decode_message = msgspec.json.Decoder(_Message).decode
_decode_event = msgspec.json.Decoder(_Event).decode
_decode_error = msgspec.json.Decoder(_ErrorBody).decode


def _usage(usage: _Usage | None) -> OpenAIUsage | None:
    if usage is None:
        return None
    cached = usage.cache_read_input_tokens or 0
    prompt = (usage.input_tokens or 0) + cached + (usage.cache_creation_input_tokens or 0)
    completion = usage.output_tokens or 0
    details = usage.output_tokens_details
    reasoning = details.thinking_tokens if details is not None else None
    return OpenAIUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning) if reasoning else None,
    )


def _merge_usage(old: _Usage | None, new: _Usage) -> _Usage:
    """``message_delta`` usage is cumulative but may omit fields ``message_start`` gave."""
    if old is None:
        return new
    return _Usage(
        input_tokens=new.input_tokens if new.input_tokens is not None else old.input_tokens,
        output_tokens=new.output_tokens if new.output_tokens is not None else old.output_tokens,
        cache_creation_input_tokens=_first_set(new.cache_creation_input_tokens, old.cache_creation_input_tokens),
        cache_read_input_tokens=_first_set(new.cache_read_input_tokens, old.cache_read_input_tokens),
        output_tokens_details=new.output_tokens_details or old.output_tokens_details,
    )


def _first_set(a: int | None, b: int | None) -> int | None:
    return a if a is not None else b


def _finish(reason: str | None) -> str:
    return _FINISH.get(reason or "end_turn", "stop")


# --- request ----------------------------------------------------------------------------------------


def _text_of(message: ChatMessage, where: str) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type != "text":
            raise TranslationError(f"{where} messages may hold only text parts, not {part.type!r}", param="messages")
        texts.append(part.text or "")
    return "".join(texts)


def _user_blocks(message: ChatMessage, skipped: UnsupportedParams) -> str | list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            blocks.append({"type": "text", "text": part.text or ""})
        elif part.type == "image_url" and part.image_url is not None:
            inline = data_url(part.image_url.url)
            if inline is None:
                source = {"type": "url", "url": part.image_url.url}
            else:
                source = {"type": "base64", "media_type": inline[0], "data": inline[1]}
            blocks.append({"type": "image", "source": source})
        else:
            skipped.add(f"messages[].content[].{part.type}")
    return blocks


def _assistant_blocks(message: ChatMessage) -> str | list[dict[str, Any]]:
    text = _text_of(message, "assistant")
    if not message.tool_calls:
        return text
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call in message.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": arguments_object(call.function.arguments, call.id),
            }
        )
    return blocks


def _messages(chat: ChatRequest, skipped: UnsupportedParams) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the user turn collecting consecutive tool results
    for message in chat.messages:
        role = message.role
        if role == "tool":
            # Anthropic wants every result of one assistant turn in the next user turn.
            if results is None:
                results = []
                turns.append({"role": "user", "content": results})
            result_text = _text_of(message, "tool")
            results.append({"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": result_text})
            continue
        if role == "user" and results is not None:  # a user message right after tool results joins their turn
            content = _user_blocks(message, skipped)
            results.extend([{"type": "text", "text": content}] if isinstance(content, str) else content)
            results = None
            continue
        results = None
        if role in ("system", "developer"):
            system.append({"type": "text", "text": _text_of(message, role)})
        elif role == "user":
            turns.append({"role": "user", "content": _user_blocks(message, skipped)})
        elif role == "assistant":
            turns.append({"role": "assistant", "content": _assistant_blocks(message)})
        else:
            raise TranslationError(f"message role {role!r} cannot be sent to anthropic", param="messages")
    return system, turns


class AnthropicTranslator(ChatDecoding):
    """OpenAI Chat Completions to Anthropic Messages and back (see the module docstring)."""

    def request(self, chat: ChatRequest, model: str, *, unsupported: UnsupportedRule) -> UpstreamRequest:
        skipped = UnsupportedParams("anthropic")
        skipped.check(chat, _UNSUPPORTED)
        system, turns = _messages(chat, skipped)
        limit = chat.output_limit or DEFAULT_MAX_TOKENS
        body: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": limit}
        if system:
            body["system"] = system[0]["text"] if len(system) == 1 else system
        if chat.stream:
            body["stream"] = True
        if chat.temperature is not None:
            body["temperature"] = chat.temperature
        if chat.top_p is not None:
            body["top_p"] = chat.top_p
        if chat.stop_list:
            body["stop_sequences"] = chat.stop_list
        if chat.user:
            body["metadata"] = {"user_id": chat.user}
        if chat.tools:
            body["tools"] = [
                {
                    "name": tool.function.name,
                    **({"description": tool.function.description} if tool.function.description else {}),
                    "input_schema": tool.function.parameters if present(tool.function.parameters) else _EMPTY_SCHEMA,
                }
                for tool in chat.tools
            ]
        choice = self._tool_choice(chat)
        if choice is not None:
            body["tool_choice"] = choice
        format_ = chat.response_format
        if format_ is not None and format_.type != "text":
            skipped.add("response_format")
        dropped = skipped.resolve(unsupported)
        return UpstreamRequest("/v1/messages", encode(body), [(b"anthropic-version", ANTHROPIC_VERSION)], dropped)

    @staticmethod
    def _tool_choice(chat: ChatRequest) -> dict[str, Any] | None:
        choice = chat.tool_choice
        if choice is None:
            serial = chat.tools and chat.parallel_tool_calls is False
            result: dict[str, Any] | None = {"type": "auto"} if serial else None
        elif isinstance(choice, str):
            if choice not in _TOOL_CHOICE:
                raise TranslationError(f"tool_choice {choice!r} is not auto, required or none", param="tool_choice")
            result = {"type": _TOOL_CHOICE[choice]}
        elif choice.function is not None:
            result = {"type": "tool", "name": choice.function.name}
        else:
            raise TranslationError("tool_choice: a named choice needs function.name", param="tool_choice")
        if result is not None and chat.parallel_tool_calls is False and result["type"] != "none":
            result["disable_parallel_tool_use"] = True
        return result

    def response(self, body: bytes, context: ResponseContext) -> bytes:
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
            finish_reason=_finish(message.stop_reason),
            usage=_usage(message.usage),
        )
        return encode(completion)

    def stream(self, context: ResponseContext) -> AnthropicStream:
        return AnthropicStream(context)

    def error(self, status: int, body: bytes, headers: Mapping[str, str], retry_after: str | None) -> TranslatedError:
        try:
            detail = _decode_error(body).error
        except msgspec.DecodeError:
            detail = None
        if detail is None:
            message = raw_error_message(body, "anthropic", status)
            return openai_error(status, message, None, retry_after)
        error_type = "overloaded_error" if detail.type == "overloaded_error" else None
        return openai_error(status, detail.message, detail.type, retry_after, error_type=error_type)


class AnthropicStream:
    """Anthropic's named SSE events to OpenAI chunks, event by event."""

    __slots__ = ("_blocks", "_completed", "_include_usage", "_out", "_parser", "_tools", "_usage")

    def __init__(self, context: ResponseContext) -> None:
        self._parser = SSEParser()
        self._out = ChunkWriter(context.created, context.response_id, context.model)
        self._include_usage = context.include_usage
        self._usage: _Usage | None = None
        self._tools = 0
        self._blocks: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool call index
        self._completed = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join([self._event(data) for _name, data in self._parser.feed(chunk)])

    def _event(self, data: bytes) -> bytes:
        try:
            event = _decode_event(data)
        except msgspec.DecodeError:
            return b""  # not an event we know: skipped, as the observer does
        kind = event.type
        out = self._out
        if kind == "content_block_delta" and event.delta is not None:
            delta = event.delta
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
        if kind == "content_block_start" and event.content_block is not None:
            block = event.content_block
            if block.type != "tool_use":
                return b""
            index = self._blocks[event.index] = self._tools
            self._tools += 1
            function = FunctionDelta(name=block.name, arguments="")
            return out.delta(
                Delta(tool_calls=[ToolCallDelta(index=index, id=block.id, type="function", function=function)])
            )
        if kind == "message_start" and event.message is not None:
            out.id = event.message.id or out.id
            out.model = event.message.model or out.model
            if event.message.usage is not None:
                self._usage = event.message.usage
            return out.delta(Delta(role="assistant", content=""))
        if kind == "message_delta":
            if event.usage is not None:
                self._usage = _merge_usage(self._usage, event.usage)
            if event.delta is not None and event.delta.stop_reason is not None:
                return out.delta(Delta(), _finish(event.delta.stop_reason))
            return b""
        if kind == "message_stop":
            self._completed = True
        elif kind == "error":
            detail = event.error or _ErrorDetail()
            return error_event(detail.message, detail.type, detail.type)
        return b""

    def close(self) -> bytes:
        tail = b"".join([self._event(data) for _name, data in self._parser.close()])
        if not self._completed:
            return tail  # an unfinished stream ends without [DONE], as OpenAI's would
        usage = _usage(self._usage) if self._include_usage else None
        return tail + (self._out.usage(usage) if usage is not None else b"") + DONE
