"""msgspec view Structs of the Bedrock Runtime Converse / ConverseStream wire format (camelCase).

Only the fields the record needs; shapes from the botocore ``bedrock-runtime`` service model.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "CapturedImage",
    "CapturedMessage",
    "ConverseRequest",
    "ConverseResponse",
    "ErrorBody",
    "Metrics",
    "StreamEvent",
    "SystemBlock",
    "TokenUsage",
    "compact_json",
]


def compact_json(raw: msgspec.Raw) -> str:
    """A JSON document (tool input) as compact text; ``{}`` when absent."""
    return msgspec.json.format(bytes(raw), indent=-1).decode() if raw else "{}"


class _InferenceConfig(msgspec.Struct, rename="camel"):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None


class _ToolConfig(msgspec.Struct, rename="camel"):
    # Each entry is a union: toolSpec, systemTool or cachePoint (a cache marker, not a tool).
    tools: list[dict[str, msgspec.Raw]] = []
    tool_choice: dict[str, msgspec.Raw] | None = None


class PerformanceConfig(msgspec.Struct):
    latency: str | None = None


class ConverseRequest(msgspec.Struct, rename="camel"):
    """The request body; the model is in the URL (``/model/{modelId}/converse``)."""

    messages: list[msgspec.Raw] = []
    system: list[msgspec.Raw] | None = None
    inference_config: _InferenceConfig | None = None
    tool_config: _ToolConfig | None = None
    performance_config: PerformanceConfig | None = None


class SystemBlock(msgspec.Struct):
    text: str | None = None


class _CapturedToolUse(msgspec.Struct, rename="camel"):
    tool_use_id: str | None = None
    name: str = ""
    input: msgspec.Raw = msgspec.Raw(b"{}")


class _ResultContent(msgspec.Struct):
    text: str | None = None
    json: msgspec.Raw = msgspec.Raw()  # empty when absent (msgspec.Raw cannot be in a union)


class _CapturedToolResult(msgspec.Struct, rename="camel"):
    tool_use_id: str | None = None
    content: list[_ResultContent] = []


class _ImageSource(msgspec.Struct, rename="camel"):
    bytes: str | None = None
    """Base64 in the JSON wire format."""
    s3_location: _S3Location | None = None


class _S3Location(msgspec.Struct):
    uri: str | None = None


class CapturedImage(msgspec.Struct):
    """An ``image`` content block: ``format`` (``png``, ``jpeg``, ``gif``, ``webp``) and its source."""

    format: str | None = None
    source: _ImageSource | None = None


class _CapturedBlock(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: _CapturedToolUse | None = None
    tool_result: _CapturedToolResult | None = None
    image: CapturedImage | None = None


class CapturedMessage(msgspec.Struct):
    role: str = "user"
    content: list[_CapturedBlock] = []


class _CacheDetail(msgspec.Struct, rename="camel"):
    ttl: str | None = None
    input_tokens: int = 0


class TokenUsage(msgspec.Struct, rename="camel"):
    """``inputTokens`` excludes cache reads and writes; ``totalTokens`` includes them."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    cache_details: list[_CacheDetail] | None = None


class _ToolUse(msgspec.Struct, rename="camel"):
    tool_use_id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw()


class _ReasoningText(msgspec.Struct):
    text: str | None = None


class _ReasoningContent(msgspec.Struct, rename="camel"):
    reasoning_text: _ReasoningText | None = None


class _Block(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: _ToolUse | None = None
    reasoning_content: _ReasoningContent | None = None


class _Message(msgspec.Struct):
    content: list[_Block] = []


class _Output(msgspec.Struct):
    message: _Message | None = None


class Metrics(msgspec.Struct, rename="camel"):
    latency_ms: int | None = None


class ConverseResponse(msgspec.Struct, rename="camel"):
    output: _Output | None = None
    stop_reason: str | None = None
    usage: TokenUsage | None = None
    metrics: Metrics | None = None


class _ToolUseDelta(msgspec.Struct):
    input: str | None = None


class _ReasoningDelta(msgspec.Struct):
    text: str | None = None


class _Delta(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: _ToolUseDelta | None = None
    reasoning_content: _ReasoningDelta | None = None


class _Start(msgspec.Struct, rename="camel"):
    tool_use: _ToolUse | None = None


class StreamEvent(msgspec.Struct, rename="camel"):
    """The payload of any ConverseStream event (which one is said by the ``:event-type`` header)."""

    content_block_index: int = 0
    start: _Start | None = None
    delta: _Delta | None = None
    stop_reason: str | None = None
    usage: TokenUsage | None = None
    metrics: Metrics | None = None


class ErrorBody(msgspec.Struct):
    """An error body (``{"message": ...}``); the type is usually only in ``x-amzn-errortype``."""

    message: str | None = None
    Message: str | None = None
    type: str | None = msgspec.field(default=None, name="__type")
    code: str | None = None
