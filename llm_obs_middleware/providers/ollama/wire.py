"""msgspec view Structs of Ollama's native API (``/api/chat``, ``/api/generate``, ``/api/embed``).

https://github.com/ollama/ollama/blob/main/docs/api.md. Tool call arguments are JSON objects (not
strings as in OpenAI's API); durations are nanoseconds; there is no response id.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "FINISH_REASONS",
    "CapturedMessage",
    "ChatRequest",
    "EmbedRequest",
    "EmbedResponse",
    "EmbedVectors",
    "ErrorEnvelope",
    "GenerateRequest",
    "Options",
    "Reply",
    "ReplyMessage",
    "ToolCall",
    "error_message",
    "finish_reason",
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


class ReplyMessage(msgspec.Struct):
    content: str | None = None
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None


class Reply(msgspec.Struct):
    """A chat or generate response, or one NDJSON line of their streams (or an in-band error line)."""

    model: str | None = None
    message: ReplyMessage | None = None
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


class EmbedVectors(msgspec.Struct):
    """``/api/embed`` with its vectors (what the OpenAI translator returns; observers skip them)."""

    model: str | None = None
    embeddings: list[list[float]] = []
    prompt_eval_count: int | None = None


class ErrorObject(msgspec.Struct):
    message: str | None = None
    type: str | None = None


class ErrorEnvelope(msgspec.Struct):
    """Ollama answers ``{"error": "text"}``; OpenAI-style ``{"error": {...}}`` bodies are read too."""

    error: str | ErrorObject | None = None


_decode_error = msgspec.json.Decoder(ErrorEnvelope).decode


def error_message(body: bytes) -> ErrorObject | None:
    """The error of an error body (``{"error": "text"}`` has a message and no type), if it has one."""
    try:
        error = _decode_error(body).error
    except msgspec.DecodeError:
        return None
    return ErrorObject(message=error) if isinstance(error, str) else error


FINISH_REASONS: dict[str, str] = {"stop": "stop", "length": "length", "load": "other", "unload": "other"}
"""A done reply's ``done_reason`` in our vocabulary: the one map the record and the translated answer
use. ``load`` / ``unload`` answer a request that only (un)loaded the model: nothing was generated.
Any other value is ``other``. https://github.com/ollama/ollama/blob/main/docs/api.md"""


def finish_reason(raw: str | None, has_tool_calls: bool) -> str:
    """The ``done_reason`` of a done reply in our vocabulary (absent, as before Ollama 0.1.34: ``stop``)."""
    reason = FINISH_REASONS.get(raw or "stop", "other")
    return "tool_calls" if reason == "stop" and has_tool_calls else reason
