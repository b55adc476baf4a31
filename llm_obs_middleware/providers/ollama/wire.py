"""msgspec view Structs of Ollama's native API (``/api/chat``, ``/api/generate``, ``/api/embed``).

https://github.com/ollama/ollama/blob/main/docs/api.md. Tool call arguments are JSON objects (not
strings as in OpenAI's API); durations are nanoseconds; there is no response id.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "CapturedMessage",
    "ChatRequest",
    "EmbedRequest",
    "EmbedResponse",
    "ErrorEnvelope",
    "GenerateRequest",
    "Options",
    "Reply",
]


class Options(msgspec.Struct):
    """The model ``options`` a request may set (``num_predict`` is the max tokens)."""

    temperature: float | None = None
    top_p: float | None = None
    num_predict: int | None = None
    stop: list[str] | str | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


class ChatRequest(msgspec.Struct):
    model: str | None = None
    messages: list[msgspec.Raw] = []
    tools: list[msgspec.Raw] | None = None
    stream: bool | None = None
    format: msgspec.Raw = msgspec.Raw()
    options: Options | None = None


class GenerateRequest(msgspec.Struct):
    model: str | None = None
    prompt: str | None = None
    system: str | None = None
    stream: bool | None = None
    format: msgspec.Raw = msgspec.Raw()
    options: Options | None = None
    images: list[str] | None = None


class EmbedRequest(msgspec.Struct):
    """``/api/embed`` (``input``: a string or a list) and the older ``/api/embeddings`` (``prompt``)."""

    model: str | None = None
    input: str | list[msgspec.Raw] | None = None
    options: Options | None = None


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: msgspec.Raw = msgspec.Raw()


class ToolCall(msgspec.Struct):
    id: str | None = None
    function: _Function | None = None


class CapturedMessage(msgspec.Struct):
    role: str = "user"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    images: list[str] | None = None
    """Base64-encoded images (of a user message)."""


class _Message(msgspec.Struct):
    content: str | None = None
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None


class Reply(msgspec.Struct):
    """A chat or generate response, or one NDJSON line of their streams (or an in-band error line)."""

    model: str | None = None
    message: _Message | None = None
    response: str | None = None
    thinking: str | None = None
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    error: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_duration: int | None = None
    eval_duration: int | None = None


class EmbedResponse(msgspec.Struct):
    model: str | None = None
    prompt_eval_count: int | None = None


class _ErrorObject(msgspec.Struct):
    message: str | None = None
    type: str | None = None


class ErrorEnvelope(msgspec.Struct):
    """Ollama answers ``{"error": "text"}``; OpenAI-style ``{"error": {...}}`` bodies are read too."""

    error: str | _ErrorObject | None = None
