"""Gemini: the record and the client agree, for every ``finishReason``, blocked prompts and every error.

The same upstream answer goes through the native route (``/gemini/v1beta/models/...``: its record)
and the translated OpenAI route (its record, and what the OpenAI client receives), plain and streamed.
The record's finish reason is the one normalized value; the translated client's is
``openai_finish_reason`` of it. Errors keep their status; a ``RetryInfo`` reaches the client as a
``Retry-After`` in delta-seconds; an in-band stream error reaches it as an error frame.
https://ai.google.dev/api/generate-content#FinishReason
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from _agree import Answer, Seen, assert_agree, assert_valid_retry_after, gateway, native, translated

NORMALIZED = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "other",
    "OTHER": "other",
    "IMAGE_OTHER": "other",
    "NO_IMAGE": "other",
    "MALFORMED_FUNCTION_CALL": "other",
    "UNEXPECTED_TOOL_CALL": "other",
    "TOO_MANY_TOOL_CALLS": "other",
    "MISSING_THOUGHT_SIGNATURE": "other",
    "FINISH_REASON_UNSPECIFIED": "other",
    "A_VALUE_ADDED_LATER": "other",
}
USAGE = {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}


def _chunks(finish: str, call: bool) -> list[dict[str, Any]]:
    """Two chunks: text, then the rest (a function call, or text) with the finish reason and usage."""
    last: dict[str, Any] = {"functionCall": {"name": "lookup", "args": {"q": "x"}}} if call else {"text": "lo"}
    return [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}], "responseId": "r1"},
        {
            "candidates": [{"content": {"role": "model", "parts": [last]}, "finishReason": finish, "index": 0}],
            "usageMetadata": USAGE,
            "modelVersion": "m-1",
            "responseId": "r1",
        },
    ]


def _answer(chunks: list[dict[str, Any]], request: httpx.Request) -> Answer:
    """SSE for ``alt=sse``; else one response (the chunks' parts merged, the last chunk's fields)."""
    if request.url.params.get("alt") == "sse":
        return Answer(
            200, b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks), "text/event-stream"
        )
    merged = dict(chunks[-1])
    if merged.get("candidates"):
        parts = [part for chunk in chunks for part in chunk["candidates"][0]["content"]["parts"]]
        merged["candidates"] = [dict(merged["candidates"][0], content={"role": "model", "parts": parts})]
    return Answer(200, json.dumps(merged).encode())


def _native_path(stream: bool) -> str:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/gemini/v1beta/models/m-1:{method}"


REQUEST = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


async def _both(tmp_path: Path, chunks: list[dict[str, Any]], stream: bool) -> tuple[Seen, Seen]:
    async with gateway(tmp_path, "gemini", lambda request: _answer(chunks, request)) as app:
        return await native(app, _native_path(stream), REQUEST, stream=stream), await translated(app, stream=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("finish", sorted(NORMALIZED))
async def test_every_finish_reason(tmp_path: Path, finish: str, stream: bool) -> None:
    seen_native, seen_translated = await _both(tmp_path, _chunks(finish, call=False), stream)
    assert_agree(seen_native, seen_translated, NORMALIZED[finish])
    if stream:
        assert seen_translated.done and not seen_translated.error_frames


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(("finish", "normalized"), [("STOP", "tool_calls"), ("MAX_TOKENS", "length")])
async def test_a_function_call(tmp_path: Path, finish: str, normalized: str, stream: bool) -> None:
    seen_native, seen_translated = await _both(tmp_path, _chunks(finish, call=True), stream)
    assert_agree(seen_native, seen_translated, normalized)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("block", ["SAFETY", "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT", "IMAGE_SAFETY"])
async def test_a_blocked_prompt_is_a_content_filter(tmp_path: Path, block: str, stream: bool) -> None:
    chunks = [
        {"promptFeedback": {"blockReason": block}, "usageMetadata": {"promptTokenCount": 3}, "modelVersion": "m-1"}
    ]
    seen_native, seen_translated = await _both(tmp_path, chunks, stream)
    assert_agree(seen_native, seen_translated, "content_filter")


def _status(code: int, status: str, delay: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": f"upstream says {status}", "status": status}
    if delay is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED"},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
        ]
    return {"error": error}


ERRORS = [
    (400, "INVALID_ARGUMENT", None, None),
    (403, "PERMISSION_DENIED", None, None),
    (404, "NOT_FOUND", None, None),
    (429, "RESOURCE_EXHAUSTED", "1.5s", "2"),
    (429, "RESOURCE_EXHAUSTED", "37s", "37"),
    (429, "RESOURCE_EXHAUSTED", "0.000001s", "1"),
    (429, "RESOURCE_EXHAUSTED", None, None),
    (500, "INTERNAL", None, None),
    (503, "UNAVAILABLE", "0s", "0"),
    (504, "DEADLINE_EXCEEDED", None, None),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(("code", "status", "delay", "retry_after"), ERRORS)
async def test_every_http_error(
    tmp_path: Path, code: int, status: str, delay: str | None, retry_after: str | None, stream: bool
) -> None:
    body = json.dumps(_status(code, status, delay)).encode()
    async with gateway(tmp_path, "gemini", lambda request: Answer(code, body)) as app:
        seen_native = await native(app, _native_path(stream), REQUEST, stream=stream)
        seen_translated = await translated(app, stream=stream)
    assert seen_native.response.status_code == seen_translated.response.status_code == code
    assert seen_native.response.json() == json.loads(body)  # the native client gets Google's own error
    for seen in (seen_native, seen_translated):
        assert (seen.record["finish_reason"], seen.record["error_type"]) == ("error", status)
        assert seen.record["outcome"] == "upstream_error"
    error = seen_translated.response.json()["error"]
    assert (error["code"], error["message"]) == (status, f"upstream says {status}")
    assert seen_translated.response.headers.get("retry-after") == retry_after
    if retry_after is not None:
        assert_valid_retry_after(seen_translated.response.headers["retry-after"])


async def test_an_in_band_stream_error_reaches_the_client_as_an_error_frame(tmp_path: Path) -> None:
    chunks: list[dict[str, Any]] = [_chunks("STOP", call=False)[0], _status(500, "INTERNAL")]
    seen_native, seen_translated = await _both(tmp_path, chunks, stream=True)
    for seen in (seen_native, seen_translated):
        assert seen.response.status_code == 200
        assert (seen.record["finish_reason"], seen.record["error_type"]) == ("error", "INTERNAL")
    assert b'"status": "INTERNAL"' in seen_native.response.content  # passed through as Google sent it
    [frame] = seen_translated.error_frames
    assert (frame["code"], frame["message"]) == ("INTERNAL", "upstream says INTERNAL")
    assert not seen_translated.done  # no [DONE] after an error: the client can tell
    assert seen_translated.finish_reasons == []
