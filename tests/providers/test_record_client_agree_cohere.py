"""Cohere: the record and the translated OpenAI client say the same about every way an answer ends.

Each case drives one upstream answer through the native route (``/cohere/v2/chat``) and the translated
one (``/v1/chat/completions``), plain and streamed: the record's ``finish_reason`` is the same on both,
the client's is ``openai_finish_reason`` of it, a failed generation (``ERROR``, ``TIMEOUT``) reaches a
streaming client as an error frame (Cohere's ``message-end`` natively, OpenAI's error event
translated), and a ``Retry-After`` the gateway sends is delta-seconds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _agree import DELTA_SECONDS, Reply, Routes, Upstream, routes
from _openai_cases import read_bytes

from llm_obs_middleware.providers.cohere.wire import FINISH_REASONS
from llm_obs_middleware.providers.translate_base import openai_finish_reason

MODEL = "command-a-03-2025"
NATIVE = "/cohere/v2/chat"
TRANSLATED = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]
SSE = {"content-type": "text/event-stream"}
JSON = {"content-type": "application/json"}

# Every documented finish_reason (v2, then v1's) -> (the record's, the translated client's).
FINISHES = {
    "COMPLETE": ("stop", "stop"),
    "STOP_SEQUENCE": ("stop", "stop"),
    "MAX_TOKENS": ("length", "length"),
    "TOOL_CALL": ("tool_calls", "tool_calls"),
    "ERROR": ("error", "stop"),
    "TIMEOUT": ("error", "stop"),  # Cohere's time limit cut a failed generation short: not a token limit
    "ERROR_TOXIC": ("content_filter", "content_filter"),
    "ERROR_LIMIT": ("length", "length"),
    "USER_CANCEL": ("other", "stop"),
    "BRAND_NEW_REASON": ("other", "stop"),  # one the gateway does not know yet
}
FAILED = {"ERROR", "TIMEOUT"}
# Documented HTTP errors (https://docs.cohere.com/reference/errors); bodies carry a message, no type.
STATUSES = [400, 401, 402, 404, 422, 429, 498, 499, 500, 501, 503, 504]
RETRY_AFTER = {"7": "7", "0.2": "1", "Wed, 21 Oct 2015 07:28:00 GMT": "0", "-1": None, "later": None}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Routes]:
    async for made in routes(tmp_path, "cohere", MODEL):
        yield made


USAGE = {"billed_units": {"input_tokens": 8, "output_tokens": 3}, "tokens": {"input_tokens": 10, "output_tokens": 3}}
CALL = {"id": "get_weather_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


def _plain(reason: str) -> bytes:
    if reason == "TOOL_CALL":
        message: dict[str, Any] = {"role": "assistant", "tool_plan": "I will call get_weather.", "tool_calls": [CALL]}
    else:
        message = {"role": "assistant", "content": [{"type": "text", "text": "Hi there"}]}
    return json.dumps({"id": "c1", "message": message, "finish_reason": reason, "usage": USAGE}).encode()


def _event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def _stream(reason: str, error: str | None = None) -> bytes:
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events: list[dict[str, Any]] = [{"id": "c1", "type": "message-start", "delta": {"message": start}}]
    if reason == "TOOL_CALL":
        head = {**CALL, "function": {"name": "get_weather", "arguments": ""}}
        events += [
            {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will call get_weather."}}},
            {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": head}}},
            {
                "type": "tool-call-delta",
                "index": 0,
                "delta": {"message": {"tool_calls": {"function": CALL["function"]}}},
            },
            {"type": "tool-call-end", "index": 0},
        ]
    else:
        events += [
            {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hi there"}}}},
            {"type": "content-end", "index": 0},
        ]
    end: dict[str, Any] = {"finish_reason": reason, "usage": USAGE}
    if error is not None:
        end["error"] = error
    events.append({"type": "message-end", "delta": end})
    return b"".join(_event(event) for event in events) + b"data: [DONE]\n\n"


async def _both(gateway: Routes, streamed: bool) -> tuple[Reply, Reply]:
    native = await gateway.post(NATIVE, {"model": MODEL, "messages": HELLO, "stream": streamed})
    translated = await gateway.post(TRANSLATED, {"model": "chat", "messages": HELLO, "stream": streamed})
    return native, translated


def test_every_documented_finish_reason_is_covered() -> None:
    assert set(FINISH_REASONS) == set(FINISHES) - {"BRAND_NEW_REASON"}


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("reason", list(FINISHES))
async def test_finish_reason(gateway: Routes, reason: str, streamed: bool) -> None:
    body = _stream(reason) if streamed else _plain(reason)
    gateway.upstream = Upstream(200, body, SSE if streamed else JSON)
    native, translated = await _both(gateway, streamed)
    record, client = FINISHES[reason]
    for answer in (native, translated):
        assert answer.status == 200
        assert (answer.record["finish_reason"], answer.record["finish_reasons"]) == (record, [reason])
        assert answer.record["error_type"] == (reason if reason in FAILED else None)
    assert native.body == body  # the native client gets the provider's own bytes
    assert client == openai_finish_reason(translated.record["finish_reason"])
    if not streamed:
        assert translated.client_finish(False) == client
    elif reason in FAILED:  # the client is told in-band instead, and the stream does not end as a success
        errors = [data["error"] for data in translated.sse_data() if "error" in data]
        assert [(e["type"], e["code"]) for e in errors] == [("server_error", reason)]
        assert translated.client_finish(True) is None and b"[DONE]" not in translated.body
    else:
        assert translated.client_finish(True) == client and translated.body.endswith(b"data: [DONE]\n\n")


async def test_in_band_error_text_reaches_the_client(gateway: Routes) -> None:
    body = _stream("ERROR", "internal failure")
    gateway.upstream = Upstream(200, body, SSE)
    native, translated = await _both(gateway, streamed=True)
    for answer in (native, translated):
        assert (answer.record["finish_reason"], answer.record["error_type"]) == ("error", "ERROR")
    assert native.body == body
    errors = [data["error"] for data in translated.sse_data() if "error" in data]
    assert [e["message"] for e in errors] == ["internal failure"]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("status", STATUSES)
async def test_http_error(gateway: Routes, status: int, streamed: bool) -> None:
    body = {"id": "0c6e8a2f-4b1d-4c7e-9a3f-5d7b9e1c3a50", "message": f"status {status} happened"}
    gateway.upstream = Upstream(status, json.dumps(body).encode(), JSON)
    native, translated = await _both(gateway, streamed)
    for answer in (native, translated):
        assert answer.status == status
        assert (answer.record["finish_reason"], answer.record["outcome"]) == ("error", "upstream_error")
    assert native.record["error_type"] == f"http_{status}"
    assert json.loads(native.body) == body
    assert json.loads(translated.body)["error"]["message"] == f"status {status} happened"


async def test_http_error_type_is_the_same_on_both_routes(gateway: Routes) -> None:
    gateway.upstream = Upstream(400, b'{"id": "x", "message": "bad"}', JSON)
    native, translated = await _both(gateway, streamed=False)
    assert native.record["error_type"] == translated.record["error_type"] == "http_400"


@pytest.mark.parametrize(("given", "sent"), list(RETRY_AFTER.items()))
async def test_retry_after_reaches_the_translated_client_as_delta_seconds(
    gateway: Routes, given: str, sent: str | None
) -> None:
    envelope = json.loads(read_bytes("cohere_v2", "error_429.json"))
    gateway.upstream = Upstream(
        429, json.dumps(envelope["body"]).encode(), {**envelope["headers"], "retry-after": given}
    )
    translated = await gateway.post(TRANSLATED, {"model": "chat", "messages": HELLO})
    assert translated.status == 429
    assert translated.headers.get("retry-after") == sent
    assert sent is None or DELTA_SECONDS.fullmatch(sent)


async def test_stream_the_gateway_cuts_ends_with_an_error_frame(gateway: Routes) -> None:
    gateway.cut = [_stream("COMPLETE").split(b"event: content-end")[0]]  # the upstream drops mid-answer
    native, translated = await _both(gateway, streamed=True)
    for answer in (native, translated):
        assert (answer.record["outcome"], answer.record["error_type"]) == ("upstream_error", "upstream_disconnected")
    frame = native.body.split(b"\n\n")[-2]
    assert frame.startswith(b"event: message-end\ndata: ")
    assert json.loads(frame.split(b"data: ", 1)[1])["delta"]["finish_reason"] == "ERROR"
    errors = [data["error"] for data in translated.sse_data() if "error" in data]
    assert len(errors) == 1 and b"[DONE]" not in translated.body
