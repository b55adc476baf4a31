"""Ollama: the record and the client agree, for every ``done_reason`` and every error.

The same upstream answer goes through the native route (``/ollama/api/chat``: its record) and the
translated OpenAI route (its record, and what the OpenAI client receives), plain and streamed
(NDJSON). The record's finish reason is the one normalized value; the translated client's is
``openai_finish_reason`` of it. Errors keep their status and message; an in-band ``{"error": ...}``
line reaches the client as an error frame. https://github.com/ollama/ollama/blob/main/docs/api.md
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from _agree import Answer, Seen, assert_agree, assert_valid_retry_after, gateway, native, translated

NORMALIZED: dict[str | None, str] = {
    "stop": "stop",
    "length": "length",
    "load": "other",
    "unload": "other",
    None: "stop",  # a done line without done_reason (Ollama before 0.1.34)
    "a_value_added_later": "other",
}
REQUEST = {"model": "m-1", "messages": [{"role": "user", "content": "hi"}]}


def _lines(done_reason: str | None, call: bool) -> list[dict[str, Any]]:
    """Content lines, then the done line with the counts (and ``done_reason`` when given)."""
    last: dict[str, Any] = {"role": "assistant", "content": "lo"}
    if call:
        last = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"q": 1}}}]}
    done: dict[str, Any] = {"model": "m-1", "message": {"role": "assistant", "content": ""}, "done": True}
    done.update(prompt_eval_count=3, eval_count=2)
    if done_reason is not None:
        done["done_reason"] = done_reason
    return [
        {"model": "m-1", "message": {"role": "assistant", "content": "Hel"}, "done": False},
        {"model": "m-1", "message": last, "done": False},
        done,
    ]


def _answer(lines: list[dict[str, Any]], request: httpx.Request) -> Answer:
    """NDJSON unless the request says ``"stream": false``; then one reply (messages merged)."""
    if json.loads(request.content).get("stream") is not False:
        return Answer(200, b"".join(json.dumps(line).encode() + b"\n" for line in lines), "application/x-ndjson")
    merged = dict(lines[-1])
    calls = [call for line in lines for call in line.get("message", {}).get("tool_calls", ())]
    content = "".join(line.get("message", {}).get("content", "") for line in lines)
    merged["message"] = {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}
    return Answer(200, json.dumps(merged).encode())


async def _both(tmp_path: Path, lines: list[dict[str, Any]], stream: bool) -> tuple[Seen, Seen]:
    async with gateway(tmp_path, "ollama", lambda request: _answer(lines, request)) as app:
        seen_native = await native(app, "/ollama/api/chat", {**REQUEST, "stream": stream}, stream=stream)
        return seen_native, await translated(app, stream=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("done_reason", list(NORMALIZED), ids=[str(reason) for reason in NORMALIZED])
async def test_every_done_reason(tmp_path: Path, done_reason: str | None, stream: bool) -> None:
    seen_native, seen_translated = await _both(tmp_path, _lines(done_reason, call=False), stream)
    assert_agree(seen_native, seen_translated, NORMALIZED[done_reason])
    if stream:
        assert seen_translated.done and not seen_translated.error_frames


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(
    ("done_reason", "normalized"), [("stop", "tool_calls"), (None, "tool_calls"), ("length", "length")]
)
async def test_a_tool_call(tmp_path: Path, done_reason: str | None, normalized: str, stream: bool) -> None:
    seen_native, seen_translated = await _both(tmp_path, _lines(done_reason, call=True), stream)
    assert_agree(seen_native, seen_translated, normalized)


ERRORS = [
    (400, "invalid character 'x' looking for beginning of value", None),
    (404, 'model "m-1" not found, try pulling it first', None),
    (429, "too many requests", "3"),
    (500, "llama runner process has terminated: exit status 2", None),
    (503, "server busy, please try again.  maximum pending requests exceeded", "1"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(("code", "message", "retry_after"), ERRORS)
async def test_every_http_error(tmp_path: Path, code: int, message: str, retry_after: str | None, stream: bool) -> None:
    body = json.dumps({"error": message}).encode()
    headers = (("retry-after", retry_after),) if retry_after is not None else ()
    async with gateway(tmp_path, "ollama", lambda request: Answer(code, body, headers=headers)) as app:
        seen_native = await native(app, "/ollama/api/chat", {**REQUEST, "stream": stream}, stream=stream)
        seen_translated = await translated(app, stream=stream)
    assert seen_native.response.status_code == seen_translated.response.status_code == code
    assert seen_native.response.json() == {"error": message}  # the native client gets Ollama's own error
    for seen in (seen_native, seen_translated):
        assert (seen.record["finish_reason"], seen.record["outcome"]) == ("error", "upstream_error")
    assert seen_native.record["error_type"] == f"http_{code}"  # Ollama's errors have no type
    assert seen_translated.response.json()["error"]["message"] == message
    assert seen_translated.response.headers.get("retry-after") == retry_after
    if retry_after is not None:
        assert_valid_retry_after(seen_translated.response.headers["retry-after"])


async def test_the_translated_record_keeps_the_native_error_type(tmp_path: Path) -> None:
    body = json.dumps({"error": 'model "m-1" not found, try pulling it first'}).encode()
    async with gateway(tmp_path, "ollama", lambda request: Answer(404, body)) as app:
        seen_native = await native(app, "/ollama/api/chat", {**REQUEST, "stream": False}, stream=False)
        seen_translated = await translated(app, stream=False)
    assert seen_translated.record["error_type"] == seen_native.record["error_type"] == "http_404"


async def test_an_in_band_stream_error_reaches_the_client_as_an_error_frame(tmp_path: Path) -> None:
    message = "an error was encountered while running the model: unexpected EOF"
    lines: list[dict[str, Any]] = [_lines("stop", call=False)[0], {"error": message}]
    seen_native, seen_translated = await _both(tmp_path, lines, stream=True)
    for seen in (seen_native, seen_translated):
        assert seen.response.status_code == 200
        assert (seen.record["finish_reason"], seen.record["error_type"]) == ("error", "stream_error")
    assert seen_native.response.content.endswith(json.dumps({"error": message}).encode() + b"\n")
    [frame] = seen_translated.error_frames
    assert frame["message"] == message
    assert not seen_translated.done  # no [DONE] after an error: the client can tell
    assert seen_translated.finish_reasons == []
