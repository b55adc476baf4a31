"""A failed answer is recorded the same on the native route and the translated OpenAI route.

The same upstream failure (an HTTP error, an in-band stream error, a stream the upstream drops) goes
through the provider's own API and through ``/v1/chat/completions``: the client of each gets its own
format, the records agree on the verdict (status, outcome, finish reason, error type, the provider's
extras such as its request id), because the translated route's record is read from the provider's own
bytes and headers, not from the OpenAI translation the client got.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from _agree import Reply, Upstream, routes

MODEL = "m-1"
HELLO = [{"role": "user", "content": "hi"}]
JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream"}
VERDICT = ("status", "outcome", "finish_reason", "finish_reasons", "error_type", "error_message", "extra", "usage")


def _native(kind: str, streamed: bool) -> tuple[str, dict[str, Any]]:
    """The provider's own path and request body for one chat turn."""
    if kind == "gemini":
        method = "streamGenerateContent?alt=sse" if streamed else "generateContent"
        return f"/gemini/v1beta/models/{MODEL}:{method}", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    path = {"anthropic": "/anthropic/v1/messages", "cohere": "/cohere/v2/chat", "ollama": "/ollama/api/chat"}[kind]
    body: dict[str, Any] = {"model": MODEL, "messages": HELLO, "stream": streamed}
    return path, {**body, "max_tokens": 64} if kind == "anthropic" else body


async def _both(
    tmp_path: Path, kind: str, streamed: bool, upstream: Upstream | None, cut: list[bytes] | None = None
) -> tuple[Reply, Reply]:
    async with asynccontextmanager(routes)(tmp_path, kind, MODEL) as gateway:
        gateway.upstream = upstream or gateway.upstream
        gateway.cut = cut
        native = await gateway.post(*_native(kind, streamed))
        translated = await gateway.post(
            "/v1/chat/completions", {"model": "chat", "messages": HELLO, "stream": streamed}
        )
    return native, translated


def _verdict(answer: Reply) -> dict[str, Any]:
    return {field: answer.record[field] for field in VERDICT}


def _sse(event: str | None, data: dict[str, Any]) -> bytes:
    return (f"event: {event}\n" if event else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"


# kind -> (status, the provider's error body, its headers, the record's error_type, the record's extras)
HTTP_ERRORS = {
    "anthropic": (
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        {"request-id": "req_42", "retry-after": "3"},
        "rate_limit_error",
        {"anthropic.request_id": "req_42"},
    ),
    "cohere": (400, {"id": "c0ffee", "message": "bad"}, {}, "http_400", {"cohere.request_id": "c0ffee"}),
    "gemini": (404, {"error": {"code": 404, "message": "no such model", "status": "NOT_FOUND"}}, {}, "NOT_FOUND", {}),
    "ollama": (404, {"error": 'model "m-1" not found, try pulling it first'}, {}, "http_404", {}),
}


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("kind", list(HTTP_ERRORS))
async def test_an_http_error_is_recorded_from_the_providers_own_answer(
    tmp_path: Path, kind: str, streamed: bool
) -> None:
    status, body, headers, error_type, extra = HTTP_ERRORS[kind]
    upstream = Upstream(status, json.dumps(body).encode(), {**JSON, **headers})
    native, translated = await _both(tmp_path, kind, streamed, upstream)
    assert native.status == translated.status == status
    assert json.loads(native.body) == body and "error" in json.loads(translated.body)  # each client its own format
    assert _verdict(translated) == _verdict(native)
    assert (native.record["outcome"], native.record["finish_reason"]) == ("upstream_error", "error")
    assert (native.record["error_type"], native.record["extra"]) == (error_type, extra)


ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [{"type": "text", "text": "Hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 2},
}


async def test_a_translated_answer_keeps_the_providers_request_id(tmp_path: Path) -> None:
    upstream = Upstream(200, json.dumps(ANTHROPIC_MESSAGE).encode(), {**JSON, "request-id": "req_7"})
    native, translated = await _both(tmp_path, "anthropic", False, upstream)
    assert native.status == translated.status == 200
    assert _verdict(translated) == _verdict(native)
    assert native.record["extra"] == {"anthropic.request_id": "req_7"}
    assert b"req_7" not in translated.body and "request-id" not in translated.headers  # only the record has it


# kind -> a stream the provider fails in-band after it started, and the record's error_type
IN_BAND = {
    "anthropic": (
        _sse(
            "message_start",
            {"type": "message_start", "message": {**ANTHROPIC_MESSAGE, "content": [], "stop_reason": None}},
        )
        + _sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        "overloaded_error",
    ),
    "gemini": (
        _sse(None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "He"}]}, "index": 0}]})
        + _sse(None, {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}),
        "INTERNAL",
    ),
}


@pytest.mark.parametrize("kind", list(IN_BAND))
async def test_an_in_band_stream_error_is_an_upstream_error_on_both_routes(tmp_path: Path, kind: str) -> None:
    body, error_type = IN_BAND[kind]
    native, translated = await _both(tmp_path, kind, True, Upstream(200, body, SSE))
    assert native.status == translated.status == 200  # the status had gone out: the error is in the stream
    assert _verdict(translated) == _verdict(native)
    assert (native.record["outcome"], native.record["finish_reason"]) == ("upstream_error", "error")
    assert native.record["error_type"] == error_type


# kind -> what the upstream sends before its connection drops
CUTS = {
    "anthropic": [IN_BAND["anthropic"][0].split(b"event: error")[0]],
    "cohere": [
        _sse("message-start", {"id": "c1", "type": "message-start", "delta": {"message": {"role": "assistant"}}})
    ],
    "gemini": [IN_BAND["gemini"][0].split(b'data: {"error"')[0]],
}


@pytest.mark.parametrize("kind", list(CUTS))
async def test_a_stream_the_upstream_drops_is_an_error_on_both_routes(tmp_path: Path, kind: str) -> None:
    native, translated = await _both(tmp_path, kind, True, None, cut=CUTS[kind])
    assert native.status == translated.status == 200
    for answer in (native, translated):
        assert (answer.record["outcome"], answer.record["error_type"]) == ("upstream_error", "upstream_disconnected")
        assert answer.record["finish_reason"] == "error"


@pytest.mark.parametrize("status", [400, 429, 529], ids=["relayed", "retryable", "overloaded"])
async def test_a_translated_error_names_the_parameters_it_dropped(tmp_path: Path, status: int) -> None:
    body = {"type": "error", "error": {"type": "some_error", "message": "no"}}
    async with asynccontextmanager(routes)(tmp_path, "anthropic", MODEL) as gateway:
        gateway.upstream = Upstream(status, json.dumps(body).encode(), JSON)
        answer = await gateway.post("/v1/chat/completions", {"model": "chat", "messages": HELLO, "seed": 7})
    assert answer.status == status and json.loads(answer.body)["error"]["message"] == "no"
    assert answer.headers["x-llm-obs-dropped-params"] == "seed"
    assert answer.headers["content-type"] == "application/json"
    assert answer.record["error_type"] == "some_error"
