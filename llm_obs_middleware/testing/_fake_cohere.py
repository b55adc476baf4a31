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

import asyncio
import base64
import math
import re
import struct
from typing import TYPE_CHECKING, Any

import msgspec

from llm_obs_middleware.providers.cohere.adapter import error_body
from llm_obs_middleware.providers.cohere.wire import ChatRequest, EmbedRequest, ToolDefinition
from llm_obs_middleware.testing._payloads import fake_arguments, text_pieces
from llm_obs_middleware.testing.fake_provider import FakeStreamAborted

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Scope, Send
    from llm_obs_middleware.testing._requests import Overrides
    from llm_obs_middleware.testing.fake_provider import FakeProvider

__all__ = ["handle"]

_CHAT = "/v2/chat"
_EMBED = "/v2/embed"
_FAIL_MODEL = re.compile(r"fail-(\d{3})")
_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_encode = msgspec.json.Encoder().encode


_decode_chat = msgspec.json.Decoder(ChatRequest).decode
_decode_embed = msgspec.json.Decoder(EmbedRequest).decode
_decode_tools = msgspec.json.Decoder(list[ToolDefinition]).decode


class _Error(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def handle(
    fake: FakeProvider,
    scope: Scope,
    headers: dict[str, str],
    body: bytes,
    overrides: Overrides,
    request_id: bytes,
    send: Send,
) -> bool:
    """Answer ``/v2/chat`` and ``/v2/embed``; ``False`` for every other path."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path != _CHAT and path != _EMBED:
        return False
    # Cohere ids are UUIDs: make one from the request counter.
    hexid = request_id.decode().rjust(32, "0")[-32:]
    rid = f"{hexid[:8]}-{hexid[8:12]}-{hexid[12:16]}-{hexid[16:20]}-{hexid[20:]}"
    try:
        await _answer(fake, scope["method"], headers, body, overrides, rid, send, embed=path == _EMBED)
    except _Error as exc:
        await _send_json(send, exc.status, error_body(str(exc), rid), rid)
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
        raise _Error(405, f"method {method} not allowed")
    if not headers.get("authorization", "").startswith("Bearer "):
        raise _Error(401, "no api key supplied")
    if o.status is not None and o.status >= 400:
        raise _Error(o.status, f"Fake failure requested by x-fake-status: {o.status}")
    try:
        request = _decode_embed(body) if embed else _decode_chat(body)
    except msgspec.DecodeError as exc:
        raise _Error(400, f"invalid request: {exc}") from None
    if not request.model:
        raise _Error(400, "invalid request: model must be specified")
    if (fail := _FAIL_MODEL.match(request.model)) is not None and 400 <= int(fail.group(1)) <= 599:
        raise _Error(int(fail.group(1)), f"Fake failure requested by model {request.model!r}")
    config = fake.config
    if isinstance(request, EmbedRequest):
        await _send_json(
            send, 200, _encode(_embeddings(request, rid, config.prompt_tokens, config.embedding_dimensions)), rid
        )
        return
    completion = o.chunks if config.completion_tokens is None else config.completion_tokens
    usage = {
        "billed_units": {"input_tokens": config.prompt_tokens - config.cached_tokens, "output_tokens": completion},
        "tokens": {"input_tokens": config.prompt_tokens, "output_tokens": completion},
        "cached_tokens": config.cached_tokens,
    }
    tool = _tool(request)
    if request.stream:
        await _stream(_events(rid, tool, usage, o.chunks), o, rid, send)
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
    await _send_json(send, 200, _encode({"id": rid, "message": message, "finish_reason": finish, "usage": usage}), rid)


def _embeddings(request: EmbedRequest, rid: str, prompt_tokens: int, default_dimensions: int) -> dict[str, Any]:
    if not request.texts:
        raise _Error(400, "invalid request: texts must be a non-empty list")
    if not request.input_type:
        raise _Error(400, "invalid request: input_type is required for embed models v3 and higher")
    types = request.embedding_types or ["float"]
    unknown = sorted(set(types) - {"float", "base64"})
    if unknown:
        raise _Error(400, f"invalid request: the fake does not make embedding types {unknown}")
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
    for tool in _decode_tools(b"[" + b",".join(bytes(tool) for tool in request.tools) + b"]"):
        if tool.type == "function" and tool.function is not None:
            return tool.function.name, fake_arguments(tool.function.parameters)
    return None


def _plan(name: str) -> str:
    return f"I will call {name}."


def _call_id(name: str, rid: str) -> str:
    return f"{name}_{rid[-12:]}"


def _event(data: dict[str, Any]) -> bytes:
    kind: str = data["type"]
    return b"event: " + kind.encode() + b"\ndata: " + _encode(data) + b"\n\n"


def _message(message: dict[str, Any]) -> dict[str, Any]:
    return {"message": message}


def _events(rid: str, tool: tuple[str, str] | None, usage: dict[str, Any], chunks: int) -> tuple[list[bytes], int, int]:
    """The stream's events, how many go out with the headers, and how many carry the timed tokens."""
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events = [_event({"id": rid, "type": "message-start", "delta": _message(start)})]
    if tool is None:
        content = {"type": "text", "text": ""}
        events.append(_event({"type": "content-start", "index": 0, "delta": _message({"content": content})}))
        tokens = [
            {"type": "content-delta", "index": 0, "delta": _message({"content": {"text": piece}})}
            for piece in text_pieces(chunks)
        ]
        tail = [{"type": "content-end", "index": 0}]
        finish = "COMPLETE"
    else:
        name, arguments = tool
        events.append(_event({"type": "tool-plan-delta", "delta": _message({"tool_plan": _plan(name)})}))
        head = {"id": _call_id(name, rid), "type": "function", "function": {"name": name, "arguments": ""}}
        events.append(_event({"type": "tool-call-start", "index": 0, "delta": _message({"tool_calls": head})}))
        size = math.ceil(len(arguments) / max(1, min(chunks, len(arguments))))
        tokens = [
            {
                "type": "tool-call-delta",
                "index": 0,
                "delta": _message({"tool_calls": {"function": {"arguments": part}}}),
            }
            for part in (arguments[i : i + size] for i in range(0, len(arguments), size))
        ]
        tail = [{"type": "tool-call-end", "index": 0}]
        finish = "TOOL_CALL"
    preamble = len(events)
    events.extend(_event(token) for token in tokens)
    events.extend(_event(event) for event in tail)
    events.append(_event({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}))
    events.append(b"data: [DONE]\n\n")
    return events, preamble, len(tokens)


async def _stream(stream: tuple[list[bytes], int, int], o: Overrides, rid: str, send: Send) -> None:
    """Send the events: the preamble with the headers, the TTFT delay before the first token, the
    chunk interval between tokens, and an aborted connection after ``drop_after`` events."""
    events, first, count = stream
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, (b"x-request-id", rid.encode())]})
    last = len(events) - 1
    for index, event in enumerate(events):
        if index == o.drop_after:
            raise FakeStreamAborted(f"x-fake-drop-after: stream cut after {index} events")
        delay = o.ttft_s if index == first else o.interval_s if first < index < first + count else 0.0
        if delay > 0:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": event, "more_body": index < last})


async def _send_json(send: Send, status: int, body: bytes, rid: str) -> None:
    headers = [_JSON, (b"content-length", b"%d" % len(body)), (b"x-request-id", rid.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
