"""msgspec view Structs of the Gemini (Generative Language API) wire format: only the fields we read.

Responses are proto3 JSON: lowerCamelCase names, zero values omitted (an absent count is 0).
Requests may use either spelling, as Google's parser accepts both (``generationConfig`` and
``generation_config``): the request Structs carry both and :func:`first` picks the one present.
https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

__all__ = [
    "BatchEmbedRequest",
    "Blob",
    "CapturedContent",
    "EmbedRequest",
    "EmbedResponse",
    "ErrorEnvelope",
    "GenerateRequest",
    "GenerateResponse",
    "GenerationConfig",
    "SafetyRating",
    "UsageMetadata",
    "first",
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


class _FunctionCall(msgspec.Struct):
    name: str | None = None
    args: msgspec.Raw = msgspec.Raw()
    id: str | None = None


class Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    function_call: _FunctionCall | None = None


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


class _Detail(msgspec.Struct):
    type: str | None = msgspec.field(default=None, name="@type")
    retryDelay: str | None = None


class Status(msgspec.Struct):
    """``google.rpc.Status``: the body of every Google API error (``code`` is the HTTP status)."""

    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: list[_Detail] = []


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


class ErrorEnvelope(msgspec.Struct):
    error: Status | None = None
