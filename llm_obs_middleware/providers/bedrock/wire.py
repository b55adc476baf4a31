"""The Bedrock Runtime wire format, once: msgspec Structs of the Converse / ConverseStream / InvokeModel
(embeddings) JSON objects (camelCase), and the ``stopReason`` vocabulary.

Shapes from the botocore ``bedrock-runtime`` service model. The observers, the OpenAI translator and
the fake Bedrock server (which encodes its answers with them) all use these; decoding reads only the
fields named here. Every Struct omits its defaults when encoded, so an encoded answer carries only
what was set.
"""

from __future__ import annotations

from typing import Any

import msgspec

from llm_obs_middleware.providers.base import normalize_finish_reason

__all__ = [
    "STOP_REASONS",
    "CacheDetail",
    "CapturedImage",
    "CohereVectors",
    "ContentBlock",
    "ContentBlockDelta",
    "ContentBlockStart",
    "ConverseRequest",
    "ConverseResponse",
    "ErrorBody",
    "InferenceConfig",
    "InvokeEmbedRequest",
    "InvokeEmbedResponse",
    "Message",
    "Metrics",
    "Output",
    "PerformanceConfig",
    "ReasoningContent",
    "ReasoningDelta",
    "ReasoningText",
    "StreamEvent",
    "SystemBlock",
    "TokenUsage",
    "ToolConfig",
    "ToolEntry",
    "ToolResult",
    "ToolSpec",
    "ToolUse",
    "ToolUseDelta",
    "finish_reason",
]

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    # The model's output could not be parsed (as text, or as the tool call it meant): the answer is
    # complete but none of the above; the raw value stays in the record's finish_reasons.
    "malformed_model_output": "other",
    "malformed_tool_use": "other",
}
"""Converse ``stopReason`` (botocore's ``StopReason`` enum) -> the record's normalized finish reason.
The OpenAI translator derives its ``finish_reason`` from the normalized one
(``providers.translate_base.openai_finish_reason``), so the record and the client agree."""


def finish_reason(raw: str | None, has_tool_calls: bool) -> str | None:
    """A Converse ``stopReason`` in the shared vocabulary (``None`` when absent, ``other`` when unknown)."""
    if raw is None:
        return None
    reason = STOP_REASONS.get(raw)
    if reason is None:
        return normalize_finish_reason(raw, has_tool_calls)
    return "tool_calls" if reason == "stop" and has_tool_calls else reason


class _Wire(msgspec.Struct, rename="camel", omit_defaults=True):
    """Base: camelCase names, defaults left out when encoded."""


# Request (the model is in the URL: /model/{modelId}/converse).


class InferenceConfig(_Wire):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] | None = None


class ToolSpec(_Wire):
    name: str = ""
    description: str | None = None
    input_schema: dict[str, msgspec.Raw] | None = None
    """``{"json": <JSON schema>}``."""


class ToolEntry(_Wire):
    """One ``tools`` entry: a union of ``toolSpec``, ``systemTool`` and ``cachePoint`` (a cache marker, not a tool)."""

    tool_spec: ToolSpec | None = None
    cache_point: dict[str, Any] | None = None


class ToolConfig(_Wire):
    tools: list[ToolEntry] = []
    tool_choice: dict[str, msgspec.Raw] | None = None
    """``{"auto": {}}``, ``{"any": {}}`` or ``{"tool": {"name": ...}}``."""


class PerformanceConfig(_Wire):
    latency: str | None = None


class ConverseRequest(_Wire):
    """The Converse / ConverseStream request body; messages stay raw until content capture needs them."""

    messages: list[msgspec.Raw] = []
    system: list[msgspec.Raw] | None = None
    inference_config: InferenceConfig | None = None
    tool_config: ToolConfig | None = None
    performance_config: PerformanceConfig | None = None


class SystemBlock(_Wire):
    text: str | None = None


# Content blocks: one union for request and response messages.


class ToolUse(_Wire):
    tool_use_id: str | None = None
    name: str = ""
    input: msgspec.Raw = msgspec.Raw()
    """The JSON object the model produced (empty when absent, e.g. in a ``contentBlockStart``)."""


class _ResultContent(_Wire):
    text: str | None = None
    json: msgspec.Raw = msgspec.Raw()  # empty when absent (msgspec.Raw cannot be in a union)


class ToolResult(_Wire):
    tool_use_id: str | None = None
    content: list[_ResultContent] = []


class _S3Location(_Wire):
    uri: str | None = None


class _ImageSource(_Wire):
    bytes: str | None = None
    """Base64 in the JSON wire format."""
    s3_location: _S3Location | None = None


class CapturedImage(_Wire):
    """An ``image`` content block: ``format`` (``png``, ``jpeg``, ``gif``, ``webp``) and its source."""

    format: str | None = None
    source: _ImageSource | None = None


class ReasoningText(_Wire):
    text: str | None = None
    signature: str | None = None


class ReasoningContent(_Wire):
    reasoning_text: ReasoningText | None = None


class ContentBlock(_Wire):
    text: str | None = None
    tool_use: ToolUse | None = None
    tool_result: ToolResult | None = None
    image: CapturedImage | None = None
    reasoning_content: ReasoningContent | None = None


class Message(_Wire):
    role: str = "user"
    content: list[ContentBlock] = []


# Response.


class CacheDetail(_Wire):
    ttl: str | None = None
    input_tokens: int = 0


class TokenUsage(_Wire):
    """``inputTokens`` excludes cache reads and writes; ``totalTokens`` includes them."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    cache_details: list[CacheDetail] | None = None


class Metrics(_Wire):
    latency_ms: int | None = None


class Output(_Wire):
    message: Message | None = None


class ConverseResponse(_Wire):
    output: Output | None = None
    stop_reason: str | None = None
    usage: TokenUsage | None = None
    metrics: Metrics | None = None


# ConverseStream: each event's payload (which event it is, is said by the ``:event-type`` header).


class ToolUseDelta(_Wire):
    input: str | None = None


class ReasoningDelta(_Wire):
    text: str | None = None
    signature: str | None = None


class ContentBlockDelta(_Wire):
    text: str | None = None
    tool_use: ToolUseDelta | None = None
    reasoning_content: ReasoningDelta | None = None


class ContentBlockStart(_Wire):
    tool_use: ToolUse | None = None


class StreamEvent(_Wire):
    """The payload of any ConverseStream event: ``messageStart`` (role), ``contentBlockStart``,
    ``contentBlockDelta``, ``contentBlockStop``, ``messageStop`` (stopReason), ``metadata`` (usage)."""

    role: str | None = None
    content_block_index: int | None = None
    start: ContentBlockStart | None = None
    delta: ContentBlockDelta | None = None
    stop_reason: str | None = None
    usage: TokenUsage | None = None
    metrics: Metrics | None = None


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """An error body or in-band exception payload (``{"message": ...}``); the type is usually only in the
    ``x-amzn-errortype`` header (or the frame's ``:exception-type``)."""

    message: str | None = None
    Message: str | None = None
    type: str | None = msgspec.field(default=None, name="__type")
    code: str | None = None


# InvokeModel of an embedding model (the body is the model family's own).


class InvokeEmbedRequest(_Wire):
    """Titan: ``inputText`` (+ ``dimensions``); Cohere: ``texts`` and ``input_type`` (snake_case)."""

    input_text: str | None = None
    dimensions: int | None = None
    texts: list[str] | None = None
    input_type: str | None = msgspec.field(default=None, name="input_type")
    output_dimension: int | None = msgspec.field(default=None, name="output_dimension")


class CohereVectors(_Wire):
    floats: list[list[float]] = msgspec.field(default_factory=list, name="float")


class InvokeEmbedResponse(_Wire):
    """Titan: ``embedding`` and ``inputTextTokenCount``; Cohere: ``embeddings`` (a list of vectors, or by
    type when the request named ``embedding_types``)."""

    embedding: list[float] | None = None
    input_text_token_count: int | None = None
    embeddings: list[list[float]] | CohereVectors | None = None
