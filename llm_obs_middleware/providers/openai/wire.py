"""msgspec view Structs of the OpenAI wire format: only the fields the record needs."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "CapturedInputItem",
    "ChatChunk",
    "ChatRequest",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "ErrorEnvelope",
    "ResponsesEvent",
    "ResponsesObject",
    "ResponsesRequest",
    "StreamOptions",
]


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class _ResponseFormat(msgspec.Struct):
    type: str | None = None


class _CapturedFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _CapturedToolCall(msgspec.Struct):
    id: str | None = None
    function: _CapturedFunction | None = None


class CapturedMessage(msgspec.Struct):
    role: str = "user"
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[_CapturedToolCall] | None = None
    tool_call_id: str | None = None


class _InputPart(msgspec.Struct):
    """A content part of a Responses input message (``input_text``, ``input_image``, ``input_file``...)."""

    type: str = ""
    text: str | None = None
    image_url: str | None = None
    file_id: str | None = None


class CapturedInputItem(msgspec.Struct):
    """A Responses ``input`` item: a message, a ``function_call`` or a ``function_call_output``."""

    type: str = "message"
    role: str = "user"
    content: str | list[_InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: msgspec.Raw = msgspec.Raw()
    """A string, or (newer API) a list of content parts: kept as JSON unless it is a string."""


class ChatRequest(msgspec.Struct):
    model: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    messages: list[msgspec.Raw] = []
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    tools: list[msgspec.Raw] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: _ResponseFormat | None = None
    user: str | None = None
    service_tier: str | None = None


class ResponsesRequest(msgspec.Struct):
    model: str | None = None
    stream: bool | None = None
    input: str | list[msgspec.Raw] | None = None
    instructions: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    tools: list[msgspec.Raw] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    service_tier: str | None = None


class EmbeddingsRequest(msgspec.Struct):
    model: str | None = None
    input: msgspec.Raw = msgspec.Raw()
    user: str | None = None


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None
    audio_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None


class ChatUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    # DeepSeek reports its cache hits here (and may omit prompt_tokens_details).
    prompt_cache_hit_tokens: int | None = None


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _Function | None = None


class _ChatMessage(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _ChatChoice(msgspec.Struct):
    index: int = 0
    message: _ChatMessage | None = None
    delta: _ChatMessage | None = None
    finish_reason: str | None = None


class _ErrorBody(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class _XGroq(msgspec.Struct):
    usage: ChatUsage | None = None


class ChatChunk(msgspec.Struct):
    """A chat completion or one streamed ``chat.completion.chunk`` (same shape for what we read)."""

    id: str | None = None
    model: str | None = None
    choices: list[_ChatChoice] = []
    usage: ChatUsage | None = None
    error: _ErrorBody | None = None
    # Groq streams report usage here, on the finish chunk, instead of in ``usage``.
    x_groq: _XGroq | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


class _InputDetails(msgspec.Struct):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class ResponsesUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None


class _OutputContent(msgspec.Struct):
    type: str = ""
    text: str | None = None


class _OutputItem(msgspec.Struct):
    type: str = ""
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    content: list[_OutputContent] | None = None


class _IncompleteDetails(msgspec.Struct):
    reason: str | None = None


class ResponsesObject(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    status: str | None = None
    output: list[_OutputItem] = []
    usage: ResponsesUsage | None = None
    incomplete_details: _IncompleteDetails | None = None
    error: _ErrorBody | None = None
    service_tier: str | None = None


class ResponsesEvent(msgspec.Struct):
    """One streamed Responses API event; ``response`` is set on created/completed/incomplete/failed."""

    type: str = ""
    response: ResponsesObject | None = None
    item: _OutputItem | None = None
    message: str | None = None
    code: str | None = None


class _EmbeddingsUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    total_tokens: int | None = None


class EmbeddingsResponse(msgspec.Struct):
    model: str | None = None
    usage: _EmbeddingsUsage | None = None


class ErrorEnvelope(msgspec.Struct):
    error: _ErrorBody | str | None = None
