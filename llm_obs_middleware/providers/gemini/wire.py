"""msgspec view Structs of the Gemini (Generative Language API) wire format: only the fields we read.

Responses are proto3 JSON: lowerCamelCase names, zero values omitted (an absent count is 0).
Requests may use either spelling, as Google's parser accepts both (``generationConfig`` and
``generation_config``): the request Structs carry both and :func:`first` picks the one present.
https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

import math
from typing import TypeVar

import msgspec

__all__ = [
    "FINISH_REASONS",
    "RETRY_INFO",
    "BatchEmbedRequest",
    "BatchEmbedVectors",
    "Blob",
    "Candidate",
    "CapturedContent",
    "EmbedRequest",
    "EmbedResponse",
    "ErrorDetail",
    "ErrorEnvelope",
    "FunctionCall",
    "GenerateRequest",
    "GenerateResponse",
    "GenerationConfig",
    "Part",
    "SafetyRating",
    "Status",
    "UsageMetadata",
    "error_status",
    "finish_reason",
    "first",
    "retry_after",
    "retry_delay",
]

_T = TypeVar("_T")


def first(camel: _T | None, snake: _T | None) -> _T | None:
    """The value of whichever spelling of a field the client used."""
    return camel if camel is not None else snake


# --- requests -------------------------------------------------------------------------------------


class GenerationConfig(msgspec.Struct):
    temperature: float | None = None
    topP: float | None = None
    top_p: float | None = None
    maxOutputTokens: int | None = None
    max_output_tokens: int | None = None
    stopSequences: list[str] | None = None
    stop_sequences: list[str] | None = None
    candidateCount: int | None = None
    candidate_count: int | None = None
    seed: int | None = None
    presencePenalty: float | None = None
    presence_penalty: float | None = None
    frequencyPenalty: float | None = None
    frequency_penalty: float | None = None
    responseMimeType: str | None = None
    response_mime_type: str | None = None


class _FunctionCallingConfig(msgspec.Struct):
    mode: str | None = None


class _ToolConfig(msgspec.Struct):
    functionCallingConfig: _FunctionCallingConfig | None = None
    function_calling_config: _FunctionCallingConfig | None = None


class Tool(msgspec.Struct):
    functionDeclarations: list[msgspec.Raw] | None = None
    function_declarations: list[msgspec.Raw] | None = None


class GenerateRequest(msgspec.Struct):
    contents: list[msgspec.Raw] = []
    systemInstruction: msgspec.Raw = msgspec.Raw()
    system_instruction: msgspec.Raw = msgspec.Raw()
    generationConfig: GenerationConfig | None = None
    generation_config: GenerationConfig | None = None
    tools: list[Tool] | None = None
    toolConfig: _ToolConfig | None = None
    tool_config: _ToolConfig | None = None


class EmbedRequest(msgspec.Struct):
    model: str | None = None


class BatchEmbedRequest(msgspec.Struct):
    requests: list[EmbedRequest] = []


class _CapturedCall(msgspec.Struct):
    name: str | None = None
    args: msgspec.Raw = msgspec.Raw()
    id: str | None = None


class _CapturedResult(msgspec.Struct):
    name: str | None = None
    response: msgspec.Raw = msgspec.Raw()
    id: str | None = None


class Blob(msgspec.Struct):
    """``inlineData`` (base64 ``data``) or ``fileData`` (``fileUri``), either spelling."""

    mimeType: str | None = None
    mime_type: str | None = None
    data: str | None = None
    fileUri: str | None = None
    file_uri: str | None = None


class _CapturedPart(msgspec.Struct):
    text: str | None = None
    thought: bool | None = None
    inlineData: Blob | None = None
    inline_data: Blob | None = None
    fileData: Blob | None = None
    file_data: Blob | None = None
    functionCall: _CapturedCall | None = None
    function_call: _CapturedCall | None = None
    functionResponse: _CapturedResult | None = None
    function_response: _CapturedResult | None = None


class CapturedContent(msgspec.Struct):
    role: str | None = None
    parts: list[_CapturedPart] = []


# --- responses ------------------------------------------------------------------------------------


class FunctionCall(msgspec.Struct):
    name: str | None = None
    args: msgspec.Raw = msgspec.Raw()
    id: str | None = None


class Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    function_call: FunctionCall | None = None


class _Content(msgspec.Struct):
    parts: list[Part] = []


class SafetyRating(msgspec.Struct):
    category: str | None = None
    probability: str | None = None
    blocked: bool = False


class Candidate(msgspec.Struct, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    index: int = 0
    safety_ratings: list[SafetyRating] = []


class ModalityCount(msgspec.Struct, rename="camel"):
    modality: str | None = None
    token_count: int = 0


class UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    total_token_count: int | None = None
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0
    prompt_tokens_details: list[ModalityCount] = []
    candidates_tokens_details: list[ModalityCount] = []


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """One of ``google.rpc.Status.details``; only ``google.rpc.RetryInfo``'s ``retryDelay`` is read."""

    type: str | None = msgspec.field(default=None, name="@type")
    retryDelay: str | None = None


class Status(msgspec.Struct, omit_defaults=True):
    """``google.rpc.Status``: the body of every Google API error (``code`` is the HTTP status)."""

    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: list[ErrorDetail] = []


class GenerateResponse(msgspec.Struct, rename="camel"):
    """A ``GenerateContentResponse``, or one chunk of a stream (same shape, cumulative usage)."""

    candidates: list[Candidate] = []
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    prompt_feedback: _PromptFeedback | None = None
    error: Status | None = None


class _EmbedUsage(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    total_token_count: int | None = None


class EmbedResponse(msgspec.Struct, rename="camel"):
    """``embedContent`` / ``batchEmbedContents`` response: the vectors are not read, only usage (if any)."""

    usage_metadata: _EmbedUsage | None = None


class _ContentEmbedding(msgspec.Struct):
    values: list[float] = []


class BatchEmbedVectors(msgspec.Struct):
    """``batchEmbedContents``'s vectors (what the OpenAI translator returns; observers skip them)."""

    embeddings: list[_ContentEmbedding] = []


class ErrorEnvelope(msgspec.Struct, omit_defaults=True):
    error: Status | None = None


# --- vocabulary -----------------------------------------------------------------------------------

FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
"""Gemini's ``finishReason`` in our vocabulary: the one map the record and the translated answer use.

Every other value (``LANGUAGE``, ``OTHER``, ``IMAGE_OTHER``, ``NO_IMAGE``, ``MALFORMED_FUNCTION_CALL``,
``UNEXPECTED_TOOL_CALL``, ``TOO_MANY_TOOL_CALLS``, ``MISSING_THOUGHT_SIGNATURE``,
``FINISH_REASON_UNSPECIFIED``, and values added later) is ``other``.
https://ai.google.dev/api/generate-content#FinishReason"""


def finish_reason(raw: str | None, has_tool_calls: bool, *, blocked: bool = False) -> str | None:
    """A ``finishReason`` in our vocabulary; a blocked prompt (``promptFeedback.blockReason``, any
    value) is a content filter; ``None`` when there is none."""
    if raw is None:
        return None
    if blocked:
        return "content_filter"
    reason = FINISH_REASONS.get(raw, "other")
    return "tool_calls" if reason == "stop" and has_tool_calls else reason


RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_decode_error = msgspec.json.Decoder(ErrorEnvelope | list[ErrorEnvelope]).decode


def error_status(body: bytes) -> Status | None:
    """The ``google.rpc.Status`` of an error body (``{"error": ...}``, or ``[{"error": ...}]`` from a
    ``streamGenerateContent`` without ``alt=sse``), if any."""
    try:
        envelope = _decode_error(body)
    except msgspec.DecodeError:
        return None
    if isinstance(envelope, list):
        return envelope[0].error if envelope else None
    return envelope.error


def retry_delay(error: Status) -> float | None:
    """Seconds of the error's ``google.rpc.RetryInfo.retryDelay`` (a proto3 JSON ``Duration``:
    ``"37s"``, ``"1.5s"``), if it has a readable, finite, non-negative one. The only parser of it."""
    for detail in error.details:
        if detail.type == RETRY_INFO and detail.retryDelay and detail.retryDelay.endswith("s"):
            try:
                seconds = float(detail.retryDelay[:-1])
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def retry_after(error: Status | None) -> str | None:
    """The error's ``RetryInfo`` as a ``Retry-After`` value: delta-seconds, a non-negative integer
    rounded up (RFC 9110 section 10.2.3: ``"1.5s"`` is ``2``)."""
    seconds = retry_delay(error) if error is not None else None
    return None if seconds is None else str(math.ceil(seconds))
