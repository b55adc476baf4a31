"""msgspec view Structs of Cohere's v2 Chat API: only the fields the record needs.

https://docs.cohere.com/reference/chat and https://docs.cohere.com/reference/chat-stream. Token counts
are typed ``int | float``: the API spec declares them as numbers.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "EVENT_NAMES",
    "FINISH_REASONS",
    "CapturedMessage",
    "ChatRequest",
    "ChatResponse",
    "CitationEnd",
    "CitationStart",
    "CohereUsage",
    "ContentDelta",
    "ContentEnd",
    "ContentStart",
    "Debug",
    "EmbedRequest",
    "ErrorBody",
    "MessageEnd",
    "MessageStart",
    "StreamEvent",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolDefinition",
    "ToolPlanDelta",
    "failed",
    "finish_reason",
]

# Every documented ``finish_reason`` (https://docs.cohere.com/reference/chat) on the shared vocabulary:
# the record's ``finish_reason``, and through ``openai_finish_reason`` the translated client's.
FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "error",
    # "The generation was stopped because it exceeded the allowed time limit": Cohere's own time
    # limit, not the client's token budget. ``length`` would tell the client to raise max_tokens,
    # which does not help; the answer is a failed generation, as ERROR (retrying may succeed). The
    # record says ``error`` (not completed, error_type TIMEOUT); the translated client reads ``stop``
    # and, in a stream, gets OpenAI's error event.
    "TIMEOUT": "error",
    # v1 values (https://docs.cohere.com/v1/reference/chat), still read.
    "ERROR_TOXIC": "content_filter",
    "ERROR_LIMIT": "length",  # the context limit was hit before the answer was complete
    "USER_CANCEL": "other",
}


class _ResponseFormat(msgspec.Struct):
    type: str | None = None


class _ToolFunction(msgspec.Struct):
    name: str = "tool"
    parameters: dict[str, Any] | None = None


class ToolDefinition(msgspec.Struct):
    """An entry of a request's ``tools`` (the adapter only counts them; the fake provider reads them)."""

    type: str = "function"
    function: _ToolFunction | None = None


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


# --- stream events: one Struct per ``type`` (https://docs.cohere.com/reference/chat-stream) -----------


class _ContentMessage(msgspec.Struct):
    content: _Content | None = None


class _ContentDelta(msgspec.Struct):
    message: _ContentMessage | None = None


class _PlanMessage(msgspec.Struct):
    tool_plan: str | None = None


class _PlanDelta(msgspec.Struct):
    message: _PlanMessage | None = None


class _CallMessage(msgspec.Struct):
    tool_calls: _ToolCall | None = None


class _CallDelta(msgspec.Struct):
    message: _CallMessage | None = None


class _EndDelta(msgspec.Struct):
    finish_reason: str | None = None
    usage: CohereUsage | None = None
    error: str | None = None
    """The error text of a failed generation."""


class _Event(msgspec.Struct, tag_field="type"):
    pass


class MessageStart(_Event, tag="message-start"):
    id: str | None = None


class ContentStart(_Event, tag="content-start"):
    index: int = 0
    delta: _ContentDelta | None = None


class ContentDelta(_Event, tag="content-delta"):
    index: int = 0
    delta: _ContentDelta | None = None


class ContentEnd(_Event, tag="content-end"):
    index: int = 0


class ToolPlanDelta(_Event, tag="tool-plan-delta"):
    delta: _PlanDelta | None = None


class ToolCallStart(_Event, tag="tool-call-start"):
    index: int = 0
    delta: _CallDelta | None = None


class ToolCallDelta(_Event, tag="tool-call-delta"):
    index: int = 0
    delta: _CallDelta | None = None


class ToolCallEnd(_Event, tag="tool-call-end"):
    index: int = 0


class CitationStart(_Event, tag="citation-start"):
    pass


class CitationEnd(_Event, tag="citation-end"):
    pass


class MessageEnd(_Event, tag="message-end"):
    """The last event: the finish reason, the usage, and the error text of a failed generation."""

    delta: _EndDelta | None = None


class Debug(_Event, tag="debug"):
    pass


StreamEvent = (
    MessageStart
    | ContentStart
    | ContentDelta
    | ContentEnd
    | ToolPlanDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | CitationStart
    | CitationEnd
    | MessageEnd
    | Debug
)
"""The data of one stream event; an unknown ``type`` fails to decode (``msgspec.ValidationError``)."""
EVENT_NAMES = frozenset(str(member.__struct_config__.tag).encode() for member in StreamEvent.__args__)
"""The SSE event names (= ``type`` tags) of :data:`StreamEvent`."""


class ErrorBody(msgspec.Struct):
    """Cohere error bodies carry a message (and a request id), no error type."""

    message: str | None = None
    id: str | None = None


class EmbedRequest(msgspec.Struct):
    """A ``/v2/embed`` request (the adapter counts its inputs; the fake provider answers it)."""

    model: str | None = None
    texts: list[str] | None = None
    images: list[str] | None = None
    inputs: list[msgspec.Raw] | None = None
    input_type: str | None = None
    embedding_types: list[str] | None = None
    output_dimension: int | None = None


def finish_reason(raw: str | None, has_tool_calls: bool) -> str | None:
    """A ``finish_reason`` on the shared vocabulary (:data:`FINISH_REASONS`; one it does not know is ``other``)."""
    if raw is None:
        return None
    reason = FINISH_REASONS.get(raw, "other")
    return "tool_calls" if reason == "stop" and has_tool_calls else reason


def failed(raw: str | None, error: str | None) -> bool:
    """Whether the generation failed: an error text, or a finish reason that reads ``error``."""
    return error is not None or (raw is not None and FINISH_REASONS.get(raw) == "error")
