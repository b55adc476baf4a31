"""The fake provider's Cohere mode: v2 chat and embed, shaped like the real API (and its fixtures).

``POST /v2/embed`` answers one vector per text (``output_dimension`` long, else
``embedding_dimensions``) under each requested ``embedding_types`` (``float``, ``base64``: little-endian
float32), with ``meta.billed_units.input_tokens`` = ``prompt_tokens``; ``input_type`` is required,
as for the real v3+ models.

``POST /v2/chat`` answers a chat response (text, or a tool plan plus a tool call when the request
offers tools and ``tool_choice`` is not ``NONE``), or with ``"stream": true`` the named-event SSE
stream (``message-start``, ``content-*`` or ``tool-plan-delta``/``tool-call-*``, ``message-end`` with
the finish reason and usage, then ``data: [DONE]``). A bearer key is required (401 otherwise).

Usage follows :class:`FakeProviderConfig`: ``usage.tokens`` holds ``prompt_tokens`` and the
completion tokens, ``cached_tokens`` the cached ones; ``usage.billed_units`` bills the input minus
the cached tokens (an invented rule, so tests can tell raw and billed counts apart). Responses name
no model, as the real API. The ``x-fake-*`` overrides apply; errors are ``{"id", "message"}`` bodies.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import TYPE_CHECKING, Any

import msgspec

from llm_obs_middleware.providers.cohere.adapter import error_body
from llm_obs_middleware.providers.cohere.wire import ChatRequest, EmbedRequest, ToolDefinition
from llm_obs_middleware.testing._payloads import fake_arguments, split_text, text_pieces
from llm_obs_middleware.testing._requests import HTTPError, NativeCall, below_root, check_failure
from llm_obs_middleware.testing._responses import decode_raw_list, named_event, send_json, send_stream, uuid_id

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Send
    from llm_obs_middleware.testing._requests import Overrides
    from llm_obs_middleware.testing.fake_provider import FakeProvider

__all__ = ["handle"]

_CHAT = "/v2/chat"
_EMBED = "/v2/embed"
_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_encode = msgspec.json.Encoder().encode


_decode_chat = msgspec.json.Decoder(ChatRequest).decode
_decode_embed = msgspec.json.Decoder(EmbedRequest).decode
_decode_tools = msgspec.json.Decoder(list[ToolDefinition]).decode


async def handle(call: NativeCall, send: Send) -> bool:
    """Answer ``/v2/chat`` and ``/v2/embed``; ``False`` for every other path."""
    fake, scope, headers, body, overrides, request_id = call
    path = below_root(scope)
    if path != _CHAT and path != _EMBED:
        return False
    rid = uuid_id(request_id)  # Cohere ids are UUIDs
    try:
        await _answer(fake, scope["method"], headers, body, overrides, rid, send, embed=path == _EMBED)
    except HTTPError as exc:
        await send_json(send, exc.status, error_body(str(exc), rid), _JSON, _request_id(rid))
    return True


async def _answer(
    fake: FakeProvider,
    method: str,
    headers: dict[str, str],
    body: bytes,
    o: Overrides,
    rid: str,
    send: Send,
    *,
    embed: bool,
) -> None:
    if method != "POST":
        raise HTTPError(405, f"method {method} not allowed")
    if not headers.get("authorization", "").startswith("Bearer "):
        raise HTTPError(401, "no api key supplied")
    check_failure(o, None)
    try:
        request = _decode_embed(body) if embed else _decode_chat(body)
    except msgspec.DecodeError as exc:
        raise HTTPError(400, f"invalid request: {exc}") from None
    if not request.model:
        raise HTTPError(400, "invalid request: model must be specified")
    check_failure(None, request.model)
    config = fake.config
    if isinstance(request, EmbedRequest):
        embeddings = _embeddings(request, rid, config.prompt_tokens, config.embedding_dimensions)
        await send_json(send, 200, _encode(embeddings), _JSON, _request_id(rid))
        return
    completion = o.chunks if config.completion_tokens is None else config.completion_tokens
    usage = {
        "billed_units": {"input_tokens": config.prompt_tokens - config.cached_tokens, "output_tokens": completion},
        "tokens": {"input_tokens": config.prompt_tokens, "output_tokens": completion},
        "cached_tokens": config.cached_tokens,
    }
    tool = _tool(request)
    if request.stream:
        events, first, count = _events(rid, tool, usage, o.chunks)
        await send_stream(send, [*_SSE, _request_id(rid)], events, o, first=first, count=count)
        return
    if tool is None:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": [{"type": "text", "text": "".join(text_pieces(o.chunks))}],
        }
    else:
        name, arguments = tool
        call = {"id": _call_id(name, rid), "type": "function", "function": {"name": name, "arguments": arguments}}
        message = {"role": "assistant", "tool_plan": _plan(name), "tool_calls": [call]}
    finish = "COMPLETE" if tool is None else "TOOL_CALL"
    answer = {"id": rid, "message": message, "finish_reason": finish, "usage": usage}
    await send_json(send, 200, _encode(answer), _JSON, _request_id(rid))


def _embeddings(request: EmbedRequest, rid: str, prompt_tokens: int, default_dimensions: int) -> dict[str, Any]:
    if not request.texts:
        raise HTTPError(400, "invalid request: texts must be a non-empty list")
    if not request.input_type:
        raise HTTPError(400, "invalid request: input_type is required for embed models v3 and higher")
    types = request.embedding_types or ["float"]
    unknown = sorted(set(types) - {"float", "base64"})
    if unknown:
        raise HTTPError(400, f"invalid request: the fake does not make embedding types {unknown}")
    size = request.output_dimension or default_dimensions
    # Deterministic and distinct per text, so tests can tell the vectors apart.
    vectors = [[round(math.cos(index * 5 + j + 1) / 2, 3) for j in range(size)] for index in range(len(request.texts))]
    embeddings: dict[str, Any] = {}
    if "float" in types:
        embeddings["float"] = vectors
    if "base64" in types:
        embeddings["base64"] = [base64.b64encode(struct.pack(f"<{size}f", *vector)).decode() for vector in vectors]
    return {
        "id": rid,
        "embeddings": embeddings,
        "texts": request.texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": prompt_tokens}},
        "response_type": "embeddings_by_type",
    }


def _tool(request: ChatRequest) -> tuple[str, str] | None:
    if not request.tools or (request.tool_choice or "").upper() == "NONE":
        return None
    tools: list[ToolDefinition] = decode_raw_list(_decode_tools, request.tools)
    for tool in tools:
        if tool.type == "function" and tool.function is not None:
            return tool.function.name, fake_arguments(tool.function.parameters)
    return None


def _plan(name: str) -> str:
    return f"I will call {name}."


def _call_id(name: str, rid: str) -> str:
    return f"{name}_{rid[-12:]}"


def _message(message: dict[str, Any]) -> dict[str, Any]:
    return {"message": message}


def _events(rid: str, tool: tuple[str, str] | None, usage: dict[str, Any], chunks: int) -> tuple[list[bytes], int, int]:
    """The stream's events, how many go out with the headers, and how many carry the timed tokens."""
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events = [named_event({"id": rid, "type": "message-start", "delta": _message(start)})]
    if tool is None:
        content = {"type": "text", "text": ""}
        events.append(named_event({"type": "content-start", "index": 0, "delta": _message({"content": content})}))
        tokens = [
            {"type": "content-delta", "index": 0, "delta": _message({"content": {"text": piece}})}
            for piece in text_pieces(chunks)
        ]
        tail = [{"type": "content-end", "index": 0}]
        finish = "COMPLETE"
    else:
        name, arguments = tool
        events.append(named_event({"type": "tool-plan-delta", "delta": _message({"tool_plan": _plan(name)})}))
        head = {"id": _call_id(name, rid), "type": "function", "function": {"name": name, "arguments": ""}}
        events.append(named_event({"type": "tool-call-start", "index": 0, "delta": _message({"tool_calls": head})}))
        tokens = [
            {
                "type": "tool-call-delta",
                "index": 0,
                "delta": _message({"tool_calls": {"function": {"arguments": part}}}),
            }
            for part in split_text(arguments, chunks)
        ]
        tail = [{"type": "tool-call-end", "index": 0}]
        finish = "TOOL_CALL"
    preamble = len(events)
    events.extend(named_event(token) for token in tokens)
    events.extend(named_event(event) for event in tail)
    events.append(named_event({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}))
    events.append(b"data: [DONE]\n\n")
    return events, preamble, len(tokens)


def _request_id(rid: str) -> tuple[bytes, bytes]:
    return (b"x-request-id", rid.encode())
