"""The fake provider's Ollama mode: the native ``/api/...`` endpoints, shaped like the real server.

``POST /api/chat`` and ``/api/generate`` answer one JSON object with ``"stream": false`` and NDJSON
(``application/x-ndjson``) otherwise: Ollama streams when ``stream`` is absent. The last line has
``"done": true``, ``done_reason`` and the counts (``prompt_eval_count`` from ``prompt_tokens``,
``eval_count`` from the completion tokens) with durations in nanoseconds. A chat offering tools gets
a ``tool_calls`` message (arguments as a JSON object); ``"think": true`` adds thinking text.
``POST /api/embed`` and the older ``/api/embeddings`` return vectors. No key is needed. The
``x-fake-*`` overrides apply (errors are ``{"error": "..."}``), plus ``x-fake-stream-error: N``: after
N content lines the stream ends with an in-band ``{"error": ...}`` line, as Ollama reports a model
failure once the status is sent.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from llm_obs_middleware.providers.ollama.wire import ErrorEnvelope
from llm_obs_middleware.testing import _payloads as p
from llm_obs_middleware.testing._requests import HTTPError, NativeCall, below_root, check_failure
from llm_obs_middleware.testing._responses import send_json, send_stream

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Send
    from llm_obs_middleware.testing._requests import Overrides
    from llm_obs_middleware.testing.fake_provider import FakeProvider

__all__ = ["handle"]

_ENDPOINTS = frozenset({"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"})
_JSON = (b"content-type", b"application/json; charset=utf-8")
_NDJSON = (b"content-type", b"application/x-ndjson")
_TEXT = (b"content-type", b"text/plain")
_THINKING = ("The user", " wants", " an answer.")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


async def handle(call: NativeCall, send: Send) -> bool:
    """Answer ``/api/...`` paths (404 for unknown ones, as Ollama does); ``False`` for the rest."""
    fake, scope, headers, body, overrides, _ = call
    path = below_root(scope)
    if not path.startswith("/api/"):
        return False
    try:
        if path not in _ENDPOINTS:
            await send_json(send, 404, b"404 page not found", _TEXT)
        elif scope["method"] != "POST":
            await send_json(send, 405, b"405 method not allowed", _TEXT)
        else:
            await _answer(fake, path, headers, body, overrides, send)
    except HTTPError as exc:
        await send_json(send, exc.status, _encode(ErrorEnvelope(error=str(exc))), _JSON)
    return True


async def _answer(
    fake: FakeProvider, path: str, headers: dict[str, str], body: bytes, o: Overrides, send: Send
) -> None:
    check_failure(o, None, "fake failure")
    try:
        request = _decode(body)
    except msgspec.DecodeError as exc:
        raise HTTPError(400, f"invalid character in request body: {exc}") from None
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "model is required")
    check_failure(None, model, "fake failure")
    config = fake.config
    if path == "/api/embed":
        inputs = request.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        vectors = [p.vector(config.embedding_dimensions) for _ in range(count)]
        payload = {"model": model, "embeddings": vectors, **_durations(), "prompt_eval_count": config.prompt_tokens}
        await send_json(send, 200, _encode(payload), _JSON)
        return
    if path == "/api/embeddings":
        await send_json(send, 200, _encode({"embedding": p.vector(config.embedding_dimensions)}), _JSON)
        return
    chat = path == "/api/chat"
    tool = _tool(request) if chat else None
    completion = o.chunks if config.completion_tokens is None else config.completion_tokens
    lines = _lines(model, chat, o.chunks, tool, bool(request.get("think")))
    final = {**_durations(), "prompt_eval_count": config.prompt_tokens, "eval_count": completion}
    final = {key: value for key, value in final.items() if value}  # Go's omitempty
    lines[-1].update(done=True, done_reason="stop", **final)
    if not chat:
        lines[-1]["context"] = [1, 2, 3]
    if request.get("stream") is False:
        await send_json(send, 200, _encode(_merge(lines, chat)), _JSON)
    else:
        stream_error = headers.get("x-fake-stream-error")
        await _stream(lines, o, None if stream_error is None else int(stream_error), send)


def _lines(model: str, chat: bool, count: int, tool: tuple[str, str] | None, think: bool) -> list[dict[str, Any]]:
    """The stream's lines (the last one, content-less, gets ``done`` and the counts)."""
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

    def line(content: str = "", **extra: Any) -> dict[str, Any]:
        if chat:
            return {
                "model": model,
                "created_at": created,
                "message": {"role": "assistant", "content": content, **extra},
            }
        return {"model": model, "created_at": created, "response": content, **extra}

    lines = [line(thinking=piece) for piece in _THINKING] if think else []
    if tool is None:
        lines.extend(line(piece) for piece in p.text_pieces(count))
    else:
        call = {"id": "call_fake0001", "function": {"index": 0, "name": tool[0], "arguments": _decode(tool[1])}}
        lines.append(line(tool_calls=[call]))
    lines.append(line())
    for item in lines:
        item["done"] = False
    return lines


def _merge(lines: list[dict[str, Any]], chat: bool) -> dict[str, Any]:
    merged = dict(lines[-1])
    if not chat:
        merged["response"] = "".join(item["response"] for item in lines)
        return merged
    message: dict[str, Any] = {"role": "assistant", "content": "".join(item["message"]["content"] for item in lines)}
    thinking = "".join(item["message"].get("thinking", "") for item in lines)
    if thinking:
        message["thinking"] = thinking
    calls = [call for item in lines for call in item["message"].get("tool_calls", ())]
    if calls:
        message["tool_calls"] = calls
    merged["message"] = message
    return merged


def _tool(request: dict[str, Any]) -> tuple[str, str] | None:
    for tool in request.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            return str(function.get("name", "tool")), p.fake_arguments(function.get("parameters"))
    return None


def _durations() -> dict[str, int]:
    return {"total_duration": 4_000_000, "load_duration": 1_000_000}


async def _stream(lines: list[dict[str, Any]], o: Overrides, error_after: int | None, send: Send) -> None:
    """NDJSON lines; with ``error_after``, the in-band error line Ollama sends for a failing model
    replaces the lines from there (a model failure once the status is sent)."""
    events = [_encode(item) + b"\n" for item in lines]
    if error_after is not None and error_after < len(events):
        error = ErrorEnvelope(error="an error was encountered while running the model: unexpected EOF")
        events[error_after:] = [_encode(error) + b"\n"]
    await send_stream(send, [_NDJSON], events, o, count=error_after, unit="lines")
