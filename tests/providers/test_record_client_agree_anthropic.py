"""Anthropic: the record and the translated OpenAI client say the same about every way an answer ends.

Each case drives one upstream answer through the native route (``/anthropic/v1/messages``) and the
translated one (``/v1/chat/completions``), plain and streamed: the record's ``finish_reason`` is the
same on both, the client's is ``openai_finish_reason`` of it, errors keep the provider's type, a
``Retry-After`` the gateway sends is delta-seconds, and a stream error reaches the client as an error
frame (Anthropic's ``event: error`` natively, OpenAI's error event translated).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _agree import DELTA_SECONDS, Reply, Routes, Upstream, routes
from _openai_cases import read_bytes

from llm_obs_middleware.providers.anthropic.wire import STOP_REASONS
from llm_obs_middleware.providers.translate_base import openai_finish_reason

MODEL = "claude-sonnet-4-5"
NATIVE = "/anthropic/v1/messages"
TRANSLATED = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]
SSE = {"content-type": "text/event-stream"}
JSON = {"content-type": "application/json"}

# Every documented stop_reason -> (the record's finish_reason, the translated client's finish_reason).
FINISHES = {
    "end_turn": ("stop", "stop"),
    "stop_sequence": ("stop", "stop"),
    "max_tokens": ("length", "length"),
    "model_context_window_exceeded": ("length", "length"),
    "tool_use": ("tool_calls", "tool_calls"),
    "refusal": ("content_filter", "content_filter"),
    "pause_turn": ("other", "stop"),  # incomplete turn, no OpenAI equivalent
    "brand_new_reason": ("other", "stop"),  # one the gateway does not know yet
}
# Documented HTTP errors (https://docs.claude.com/en/api/errors): status -> error.type.
ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
# The provider's Retry-After -> what the translated client gets (None: no header).
RETRY_AFTER = {"14": "14", "1.5": "2", "Wed, 21 Oct 2015 07:28:00 GMT": "0", "-3": None, "soon": None, "": None}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Routes]:
    async for made in routes(tmp_path, "anthropic", MODEL):
        yield made


def _usage() -> dict[str, int]:
    return {"input_tokens": 10, "cache_read_input_tokens": 2, "output_tokens": 3}


def _block(stop: str) -> dict[str, Any]:
    if stop == "tool_use":
        return {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    return {"type": "text", "text": "Hi there"}


def _message(stop: str | None, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(),
    }


def _event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def _stream(stop: str) -> bytes:
    block = _block(stop)
    if block["type"] == "tool_use":
        start, delta = {**block, "input": {}}, {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'}
    else:
        start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": "Hi there"}
    events = [
        {"type": "message_start", "message": _message(None, [])},
        {"type": "content_block_start", "index": 0, "content_block": start},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": delta},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    return b"".join(_event(event) for event in events)


async def _both(gateway: Routes, streamed: bool) -> tuple[Reply, Reply]:
    native = await gateway.post(NATIVE, {"model": MODEL, "max_tokens": 64, "messages": HELLO, "stream": streamed})
    translated = await gateway.post(TRANSLATED, {"model": "chat", "messages": HELLO, "stream": streamed})
    return native, translated


def test_every_documented_stop_reason_is_covered() -> None:
    assert set(STOP_REASONS) == set(FINISHES) - {"brand_new_reason"}


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("stop", list(FINISHES))
async def test_finish_reason(gateway: Routes, stop: str, streamed: bool) -> None:
    body = _stream(stop) if streamed else json.dumps(_message(stop, [_block(stop)])).encode()
    gateway.upstream = Upstream(200, body, SSE if streamed else JSON)
    native, translated = await _both(gateway, streamed)
    record, client = FINISHES[stop]
    for answer in (native, translated):
        assert answer.status == 200
        assert (answer.record["finish_reason"], answer.record["finish_reasons"]) == (record, [stop])
        assert (answer.record["outcome"], answer.record["error_type"]) == ("completed", None)
    assert native.body == body  # the native client gets the provider's own bytes
    assert translated.client_finish(streamed) == client == openai_finish_reason(translated.record["finish_reason"])
    if streamed:
        assert translated.body.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("status", list(ERRORS))
async def test_http_error(gateway: Routes, status: int, streamed: bool) -> None:
    kind = ERRORS[status]
    body = {"type": "error", "error": {"type": kind, "message": f"{kind} happened"}, "request_id": "req_1"}
    gateway.upstream = Upstream(status, json.dumps(body).encode(), JSON)
    native, translated = await _both(gateway, streamed)
    for answer in (native, translated):
        assert answer.status == status
        assert (answer.record["finish_reason"], answer.record["error_type"]) == ("error", kind)
        assert answer.record["outcome"] == "upstream_error"
    assert json.loads(native.body) == body
    error = json.loads(translated.body)["error"]
    assert (error["message"], error["code"]) == (f"{kind} happened", kind)


@pytest.mark.parametrize(("given", "sent"), list(RETRY_AFTER.items()))
async def test_retry_after_reaches_the_translated_client_as_delta_seconds(
    gateway: Routes, given: str, sent: str | None
) -> None:
    envelope = json.loads(read_bytes("anthropic_messages", "error_429.json"))
    headers = {**envelope["headers"], "retry-after": given}
    gateway.upstream = Upstream(429, json.dumps(envelope["body"]).encode(), headers)
    translated = await gateway.post(TRANSLATED, {"model": "chat", "messages": HELLO})
    assert translated.status == 429
    assert translated.headers.get("retry-after") == sent
    assert sent is None or DELTA_SECONDS.fullmatch(sent)


async def test_in_band_stream_error(gateway: Routes) -> None:
    body = read_bytes("anthropic_messages", "variants/stream_error.txt")
    gateway.upstream = Upstream(200, body, SSE)
    native, translated = await _both(gateway, streamed=True)
    for answer in (native, translated):
        assert (answer.record["finish_reason"], answer.record["error_type"]) == ("error", "overloaded_error")
    assert native.body == body
    errors = [data["error"] for data in translated.sse_data() if "error" in data]
    assert [(e["message"], e["type"], e["code"]) for e in errors] == [
        ("Overloaded", "overloaded_error", "overloaded_error")
    ]
    assert b"[DONE]" not in translated.body and translated.client_finish(True) is None


CUT = _stream("end_turn").split(b"event: content_block_stop")[0]  # the upstream drops mid-answer


async def test_stream_the_gateway_cuts_ends_with_an_error_frame(gateway: Routes) -> None:
    gateway.cut = [CUT]
    native, translated = await _both(gateway, streamed=True)
    for answer in (native, translated):
        assert (answer.record["outcome"], answer.record["error_type"]) == ("upstream_error", "upstream_disconnected")
    frame = native.body.split(b"\n\n")[-2]
    assert frame.startswith(b"event: error\ndata: ")
    assert json.loads(frame.split(b"data: ", 1)[1])["error"]["type"] == "api_error"
    errors = [data["error"] for data in translated.sse_data() if "error" in data]
    assert len(errors) == 1 and b"[DONE]" not in translated.body and translated.client_finish(True) is None


async def test_stream_the_gateway_cuts_is_an_error_on_both_routes(gateway: Routes) -> None:
    gateway.cut = [CUT]
    native, translated = await _both(gateway, streamed=True)
    assert native.record["finish_reason"] == translated.record["finish_reason"] == "error"
