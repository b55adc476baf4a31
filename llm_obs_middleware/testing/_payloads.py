"""Wire payloads of the fake provider, built once as byte templates and filled in per request.

Each payload is encoded with placeholder values for the response id, the creation time and the
model; a request only substitutes them (three ``bytes.replace``), so serving a response costs no
JSON encoding. Shapes follow the OpenAI fixtures in ``shared/fixtures/providers`` (Chat
Completions, Responses, Embeddings) closely enough for the official SDK to parse them.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any, NamedTuple

import msgspec

__all__ = [
    "StreamTemplate",
    "Tokens",
    "chat_body",
    "chat_stream",
    "embeddings_body",
    "error_body",
    "fake_arguments",
    "model_body",
    "models_body",
    "render",
    "responses_body",
    "responses_stream",
    "split_text",
    "vector",
]

_ID = "__fake_id__"
_CREATED = "__fake_created__"
_MODEL = "__fake_model__"
_ID_B = _ID.encode()
_CREATED_B = b'"' + _CREATED.encode() + b'"'
_MODEL_B = b'"' + _MODEL.encode() + b'"'
_WORDS = ("Hello", " from", " the", " fake", " provider", ".")
_encode = msgspec.json.Encoder().encode


class Tokens(NamedTuple):
    """Usage numbers reported by every successful response."""

    prompt: int
    completion: int
    cached: int
    reasoning: int


class StreamTemplate(NamedTuple):
    """A stream as placeholder events: ``preamble`` goes out with the headers, ``deltas`` carry the
    tokens (the first after the TTFT delay, the others one chunk interval apart), ``trailer`` ends it."""

    events: tuple[bytes, ...]
    preamble: int
    deltas: int


def render(template: bytes, response_id: bytes, created: bytes, model_json: bytes) -> bytes:
    # The model goes last so a model name that happens to contain a placeholder stays verbatim.
    return template.replace(_CREATED_B, created).replace(_ID_B, response_id).replace(_MODEL_B, model_json)


def text_pieces(chunks: int) -> list[str]:
    return [_WORDS[i % len(_WORDS)] for i in range(chunks)]


def split_text(text: str, parts: int) -> list[str]:
    """``text`` in at most ``parts`` pieces of equal length (the last shorter): a stream's deltas."""
    parts = max(1, min(parts, len(text)))
    size = math.ceil(len(text) / parts)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def vector(size: int) -> list[float]:
    """A small embedding vector, the same for every input (Gemini's and Ollama's fakes)."""
    return [round(0.01 * (i + 1), 4) for i in range(size)]


def fake_arguments(parameters: dict[str, Any] | None) -> str:
    """JSON arguments that fit a tool's JSON schema well enough for a test (required fields filled)."""
    properties = (parameters or {}).get("properties") or {}
    if not isinstance(properties, dict):
        return "{}"
    names = (parameters or {}).get("required") or list(properties)
    values: dict[str, Any] = {}
    for name in names:
        spec = properties.get(name)
        spec = spec if isinstance(spec, dict) else {}
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            values[name] = spec["enum"][0]
            continue
        kind = spec.get("type")
        values[name] = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(
            kind if isinstance(kind, str) else "", "fake"
        )
    return _encode(values).decode()


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return _encode({"error": {"message": message, "type": type_, "param": param, "code": code}})


# --- Chat Completions -------------------------------------------------------------------------


def _chat_usage(tokens: Tokens) -> dict[str, Any]:
    return {
        "prompt_tokens": tokens.prompt,
        "completion_tokens": tokens.completion,
        "total_tokens": tokens.prompt + tokens.completion,
        "prompt_tokens_details": {"cached_tokens": tokens.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": tokens.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": f"call_{_ID}", "type": "function", "function": {"name": name, "arguments": arguments}}


def chat_body(tokens: Tokens, chunks: int, tool: tuple[str, str] | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text_pieces(chunks))}
    if tool is not None:
        message["content"] = None
        message["tool_calls"] = [_tool_call(*tool)]
    message.update(refusal=None, annotations=[])
    return _encode(
        {
            "id": f"chatcmpl-{_ID}",
            "object": "chat.completion",
            "created": _CREATED,
            "model": _MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "stop" if tool is None else "tool_calls",
                }
            ],
            "usage": _chat_usage(tokens),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
    )


def chat_stream(
    tokens: Tokens, chunks: int, include_usage: bool, tool: tuple[str, str] | None = None
) -> StreamTemplate:
    def event(choices: list[Any], usage: dict[str, Any] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": f"chatcmpl-{_ID}",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": _MODEL,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        # Like OpenAI: every chunk carries "usage": null when usage was asked for, none otherwise.
        if include_usage:
            chunk["usage"] = usage
        return b"data: " + _encode(chunk) + b"\n\n"

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[Any]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    if tool is None:
        preamble = [event(choice({"role": "assistant", "content": "", "refusal": None}))]
        deltas = [event(choice({"content": piece})) for piece in text_pieces(chunks)]
        finish = "stop"
    else:
        name, arguments = tool
        head = {"index": 0, "id": f"call_{_ID}", "type": "function", "function": {"name": name, "arguments": ""}}
        preamble = [event(choice({"role": "assistant", "content": None, "tool_calls": [head], "refusal": None}))]
        deltas = [
            event(choice({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            for piece in split_text(arguments, chunks)
        ]
        finish = "tool_calls"
    trailer = [event(choice({}, finish))]
    if include_usage:
        trailer.append(event([], _chat_usage(tokens)))
    trailer.append(b"data: [DONE]\n\n")
    return StreamTemplate((*preamble, *deltas, *trailer), len(preamble), len(deltas))


# --- Responses --------------------------------------------------------------------------------


def _responses_usage(tokens: Tokens) -> dict[str, Any]:
    return {
        "input_tokens": tokens.prompt,
        "input_tokens_details": {"cached_tokens": tokens.cached},
        "output_tokens": tokens.completion,
        "output_tokens_details": {"reasoning_tokens": tokens.reasoning},
        "total_tokens": tokens.prompt + tokens.completion,
    }


def _response(status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    completed = status == "completed"
    return {
        "id": f"resp_{_ID}",
        "object": "response",
        "created_at": _CREATED,
        "status": status,
        "background": False,
        "completed_at": _CREATED if completed else None,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": _MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(text: str, status: str = "completed") -> dict[str, Any]:
    content = [_output_text(text)] if status == "completed" else []
    return {"id": f"msg_{_ID}", "type": "message", "status": status, "content": content, "role": "assistant"}


def _function_item(name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": f"fc_{_ID}",
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": f"call_{_ID}",
        "name": name,
    }


def responses_body(tokens: Tokens, chunks: int, tool: tuple[str, str] | None = None) -> bytes:
    item = _message_item("".join(text_pieces(chunks))) if tool is None else _function_item(*tool)
    return _encode(_response("completed", [item], _responses_usage(tokens)))


def responses_stream(tokens: Tokens, chunks: int, tool: tuple[str, str] | None = None) -> StreamTemplate:
    events: list[bytes] = []

    def event(type_: str, **fields: Any) -> None:
        payload = {"type": type_, **fields, "sequence_number": len(events)}
        events.append(b"event: " + type_.encode() + b"\ndata: " + _encode(payload) + b"\n\n")

    event("response.created", response=_response("in_progress", [], None))
    event("response.in_progress", response=_response("in_progress", [], None))
    if tool is None:
        text = "".join(text_pieces(chunks))
        item, item_id = _message_item(text), f"msg_{_ID}"
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        event("response.output_item.added", output_index=0, item=_message_item("", "in_progress"))
        event("response.content_part.added", **where, part=_output_text(""))
        preamble = len(events)
        for piece in text_pieces(chunks):
            event("response.output_text.delta", **where, delta=piece, logprobs=[])
        deltas = len(events) - preamble
        event("response.output_text.done", **where, text=text, logprobs=[])
        event("response.content_part.done", **where, part=_output_text(text))
    else:
        name, arguments = tool
        item, item_id = _function_item(name, arguments), f"fc_{_ID}"
        event("response.output_item.added", output_index=0, item=_function_item(name, "", "in_progress"))
        preamble = len(events)
        for piece in split_text(arguments, chunks):
            event("response.function_call_arguments.delta", item_id=item_id, output_index=0, delta=piece)
        deltas = len(events) - preamble
        event("response.function_call_arguments.done", item_id=item_id, name=name, output_index=0, arguments=arguments)
    event("response.output_item.done", output_index=0, item=item)
    event("response.completed", response=_response("completed", [item], _responses_usage(tokens)))
    return StreamTemplate(tuple(events), preamble, deltas)


# --- Embeddings and models --------------------------------------------------------------------


def embeddings_body(tokens: Tokens, count: int, dimensions: int, base64_format: bool) -> bytes:
    data: list[dict[str, Any]] = []
    for index in range(count):
        # Deterministic and distinct per input, so tests can tell the vectors apart.
        vector = [round(math.sin(index * 7 + j + 1) / 2, 3) for j in range(dimensions)]
        embedding: list[float] | str = vector
        if base64_format:
            embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage = {"prompt_tokens": tokens.prompt, "total_tokens": tokens.prompt}
    return _encode({"object": "list", "data": data, "model": _MODEL, "usage": usage})


def model_body(model: str, created: int) -> bytes:
    return _encode({"id": model, "object": "model", "created": created, "owned_by": "fake-provider"})


def models_body(models: tuple[str, ...], created: int) -> bytes:
    data = [{"id": model, "object": "model", "created": created, "owned_by": "fake-provider"} for model in models]
    return _encode({"object": "list", "data": data})
