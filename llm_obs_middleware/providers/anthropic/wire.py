"""msgspec view Structs of the Anthropic Messages API: only the fields the record needs.

https://docs.claude.com/en/api/messages and https://docs.claude.com/en/docs/build-with-claude/streaming
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ERROR_TYPES",
    "EVENT_NAMES",
    "STOP_REASONS",
    "AnthropicUsage",
    "ApiError",
    "CapturedMessage",
    "ContentBlockDelta",
    "ContentBlockStart",
    "ContentBlockStop",
    "ErrorEnvelope",
    "ImageSource",
    "MessageDelta",
    "MessageStart",
    "MessageStop",
    "MessagesRequest",
    "MessagesResponse",
    "OutputBlock",
    "Ping",
    "StreamError",
    "StreamEvent",
    "TextPart",
    "ToolDefinition",
    "finish_reason",
]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""``error.type`` of each documented HTTP error status (https://docs.claude.com/en/api/errors)."""

# Every documented ``stop_reason`` (https://docs.claude.com/en/api/handling-stop-reasons) on the shared
# vocabulary: the record's ``finish_reason``, and through ``openai_finish_reason`` the translated client's.
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    # The input filled the context window: the answer was cut for want of room, as by a token limit.
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # The turn paused mid-way for a long-running server tool (web search...): the answer is
    # incomplete and the client is to send it back to continue. Not a natural ``stop``, not a token
    # limit (``length`` would tell the client to raise max_tokens), not a failure: ``other``. OpenAI's
    # vocabulary has no such value, so the translated client reads ``stop`` (openai_finish_reason).
    "pause_turn": "other",
}


class _ToolChoice(msgspec.Struct):
    type: str | None = None
    name: str | None = None


class ToolDefinition(msgspec.Struct):
    """An entry of a request's ``tools`` (the adapter only counts them; the fake provider reads them)."""

    name: str = "tool"
    input_schema: dict[str, Any] | None = None


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


class OutputBlock(msgspec.Struct):
    """An output content block (``text``, ``thinking``, ``tool_use``, server tool blocks...)."""

    type: str = ""
    text: str | None = None
    thinking: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw()


class ApiError(msgspec.Struct):
    """``error`` of an error body or ``error`` event: ``overloaded_error``, ``rate_limit_error``..."""

    type: str | None = None
    message: str | None = None


class MessagesResponse(msgspec.Struct):
    """A ``message`` object: the non-streamed body, and ``message_start.message`` in a stream."""

    id: str | None = None
    model: str | None = None
    content: list[OutputBlock] = []
    stop_reason: str | None = None
    usage: AnthropicUsage | None = None
    error: ApiError | None = None
    """Set when a 200 body is an error object after all (``{"type": "error", "error": {...}}``)."""


# --- stream events: one Struct per ``type`` (https://docs.claude.com/en/docs/build-with-claude/streaming)


class _BlockDelta(msgspec.Struct):
    """``content_block_delta.delta``: ``text_delta``, ``thinking_delta``, ``input_json_delta``..."""

    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    partial_json: str | None = None


class _MessageDeltaBody(msgspec.Struct):
    stop_reason: str | None = None


class _Event(msgspec.Struct, tag_field="type"):
    pass


class MessageStart(_Event, tag="message_start"):
    message: MessagesResponse | None = None


class ContentBlockStart(_Event, tag="content_block_start"):
    index: int = 0
    content_block: OutputBlock | None = None


class ContentBlockDelta(_Event, tag="content_block_delta"):
    index: int = 0
    delta: _BlockDelta | None = None


class ContentBlockStop(_Event, tag="content_block_stop"):
    index: int = 0


class MessageDelta(_Event, tag="message_delta"):
    """The stop reason and the cumulative usage (fields it omits keep ``message_start``'s values)."""

    delta: _MessageDeltaBody | None = None
    usage: AnthropicUsage | None = None


class MessageStop(_Event, tag="message_stop"):
    pass


class Ping(_Event, tag="ping"):
    pass


class StreamError(_Event, tag="error"):
    """The in-band error that ends a stream (``overloaded_error`` mid-answer)."""

    error: ApiError | None = None


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | StreamError
)
"""The data of one stream event; an unknown ``type`` fails to decode (``msgspec.ValidationError``)."""
EVENT_NAMES = frozenset(str(member.__struct_config__.tag).encode() for member in StreamEvent.__args__)
"""The SSE event names (= ``type`` tags) of :data:`StreamEvent`."""


class ErrorEnvelope(msgspec.Struct):
    """An error body: ``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``."""

    error: ApiError | None = None
    request_id: str | None = None


def finish_reason(raw: str | None, has_tool_calls: bool) -> str | None:
    """A ``stop_reason`` on the shared vocabulary (:data:`STOP_REASONS`; one it does not know is ``other``).

    ``end_turn`` with ``tool_use`` blocks reads ``tool_calls``, as for every provider (fixtures README).
    """
    if raw is None:
        return None
    reason = STOP_REASONS.get(raw, "other")
    return "tool_calls" if reason == "stop" and has_tool_calls else reason
