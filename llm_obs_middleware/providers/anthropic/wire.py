"""msgspec view Structs of the Anthropic Messages API: only the fields the record needs.

https://docs.claude.com/en/api/messages and https://docs.claude.com/en/docs/build-with-claude/streaming
"""

from __future__ import annotations

import msgspec

__all__ = [
    "AnthropicUsage",
    "CapturedMessage",
    "ErrorEnvelope",
    "ImageSource",
    "MessagesRequest",
    "MessagesResponse",
    "StreamEvent",
    "TextPart",
]


class _ToolChoice(msgspec.Struct):
    type: str | None = None


class _Metadata(msgspec.Struct):
    user_id: str | None = None


class TextPart(msgspec.Struct):
    """A content block of a request, read only for its text (system prompt, tool results)."""

    type: str = ""
    text: str | None = None


class MessagesRequest(msgspec.Struct):
    model: str | None = None
    stream: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None
    messages: list[msgspec.Raw] = []
    system: str | list[TextPart] | None = None
    tools: list[msgspec.Raw] | None = None
    tool_choice: _ToolChoice | None = None
    metadata: _Metadata | None = None
    service_tier: str | None = None


class ImageSource(msgspec.Struct):
    """``source`` of an ``image`` block: ``base64`` (``media_type``, ``data``), ``url`` or ``file``."""

    type: str = ""
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None


class _CapturedBlock(msgspec.Struct):
    type: str = ""
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw()
    tool_use_id: str | None = None
    content: str | list[_ResultBlock] | None = None
    source: ImageSource | None = None


class _ResultBlock(TextPart):
    """A block of a ``tool_result``: text, or an image."""

    source: ImageSource | None = None


class CapturedMessage(msgspec.Struct):
    role: str = "user"
    content: str | list[_CapturedBlock] | None = None


class _CacheCreation(msgspec.Struct, gc=False):
    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class _OutputDetails(msgspec.Struct, gc=False):
    thinking_tokens: int | None = None


class AnthropicUsage(msgspec.Struct):
    """``usage`` of a message. ``input_tokens`` excludes cache reads and writes (they are added up)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _CacheCreation | None = None
    output_tokens_details: _OutputDetails | None = None
    service_tier: str | None = None


class _Block(msgspec.Struct):
    """An output content block (``text``, ``thinking``, ``tool_use``, server tool blocks...)."""

    type: str = ""
    text: str | None = None
    thinking: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw()


class _Error(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class MessagesResponse(msgspec.Struct):
    """A ``message`` object: the non-streamed body, and ``message_start.message`` in a stream."""

    id: str | None = None
    model: str | None = None
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: AnthropicUsage | None = None
    error: _Error | None = None
    """Set when a 200 body is an error object after all (``{"type": "error", "error": {...}}``)."""


class _Delta(msgspec.Struct):
    """``content_block_delta.delta`` (text, thinking, tool input JSON) or ``message_delta.delta``."""

    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class StreamEvent(msgspec.Struct):
    """The data of one stream event; which fields are set depends on ``type``."""

    type: str = ""
    message: MessagesResponse | None = None
    index: int = 0
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: AnthropicUsage | None = None
    error: _Error | None = None


class ErrorEnvelope(msgspec.Struct):
    """``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``."""

    error: _Error | None = None
