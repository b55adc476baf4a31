"""msgspec view Structs of Cohere's v2 Chat API: only the fields the record needs.

https://docs.cohere.com/reference/chat and https://docs.cohere.com/reference/chat-stream. Token counts
are typed ``int | float``: the API spec declares them as numbers.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "CapturedMessage",
    "ChatRequest",
    "ChatResponse",
    "CohereUsage",
    "ErrorBody",
    "StreamEvent",
]


class _ResponseFormat(msgspec.Struct):
    type: str | None = None


class ChatRequest(msgspec.Struct):
    model: str | None = None
    stream: bool | None = None
    messages: list[msgspec.Raw] = []
    max_tokens: int | None = None
    temperature: float | None = None
    p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop_sequences: list[str] | None = None
    tools: list[msgspec.Raw] | None = None
    tool_choice: str | None = None
    response_format: _ResponseFormat | None = None


class _ImageUrl(msgspec.Struct):
    url: str | None = None


class _Part(msgspec.Struct):
    """A content part of a request message (``text``, ``image_url``, ``document``, ``thinking``)."""

    type: str = ""
    text: str | None = None
    document: msgspec.Raw = msgspec.Raw()
    image_url: _ImageUrl | None = None


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    function: _Function | None = None


class CapturedMessage(msgspec.Struct):
    role: str = "user"
    content: str | list[_Part] | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None


class _Tokens(msgspec.Struct, gc=False):
    input_tokens: int | float | None = None
    output_tokens: int | float | None = None


class CohereUsage(msgspec.Struct):
    """``tokens`` are the model's raw counts (the record's); ``billed_units`` the cost basis."""

    tokens: _Tokens | None = None
    billed_units: _Tokens | None = None
    cached_tokens: int | float | None = None


class _Content(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    thinking: str | None = None


class _ResponseMessage(msgspec.Struct):
    content: list[_Content] = []
    tool_plan: str | None = None
    tool_calls: list[_ToolCall] = []


class ChatResponse(msgspec.Struct):
    id: str | None = None
    message: _ResponseMessage | None = None
    finish_reason: str | None = None
    usage: CohereUsage | None = None


class _StreamMessage(msgspec.Struct):
    """``delta.message`` of a stream event: one content part or tool call (a list in ``message-start``)."""

    content: _Content | list[_Content] | None = None
    tool_plan: str | None = None
    tool_calls: _ToolCall | list[_ToolCall] | None = None


class _StreamDelta(msgspec.Struct):
    message: _StreamMessage | None = None
    finish_reason: str | None = None
    usage: CohereUsage | None = None
    error: str | None = None


class StreamEvent(msgspec.Struct):
    type: str = ""
    id: str | None = None
    index: int = 0
    delta: _StreamDelta | None = None


class ErrorBody(msgspec.Struct):
    """Cohere error bodies carry a message (and a request id), no error type."""

    message: str | None = None
    id: str | None = None
