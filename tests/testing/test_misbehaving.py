"""The misbehaving upstream does what its docstring says, seen by a plain HTTP client."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import httpx
import pytest

from llm_obs_middleware.testing import MisbehavingServer, Misbehaviour

CHAT: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
STREAM: dict[str, object] = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as server:
        yield server


def post(upstream: MisbehavingServer, mode: str, body: Mapping[str, object], timeout: float = 30) -> httpx.Response:
    headers = {"x-misbehave": mode, "accept-encoding": "identity"}
    return httpx.post(upstream.url + "/chat/completions", json=body, headers=headers, timeout=timeout)


def test_normal_answers_and_streams_with_usage(upstream: MisbehavingServer) -> None:
    answer = post(upstream, "normal", CHAT).json()
    assert answer["usage"]["prompt_tokens"] == MisbehavingServer.PROMPT_TOKENS
    events = [line[6:] for line in post(upstream, "normal", STREAM).text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] == MisbehavingServer.COMPLETION_TOKENS
    assert upstream.requests[-1].headers["x-misbehave"] == "normal"


def test_bad_status_short_body_gzip_and_huge(upstream: MisbehavingServer) -> None:
    assert post(upstream, "bad-status", CHAT).status_code == upstream.bad_status
    with pytest.raises(httpx.RemoteProtocolError):
        post(upstream, "short-body", CHAT)
    gzipped = post(upstream, "gzip", CHAT)
    assert gzipped.headers["content-encoding"] == "gzip"  # despite accept-encoding: identity
    assert gzipped.json()["usage"]["total_tokens"] > 0
    huge = post(upstream, "huge", CHAT)
    assert len(huge.content) > upstream.huge_bytes
    assert huge.json()["usage"]["prompt_tokens"] == MisbehavingServer.PROMPT_TOKENS


def test_hang_trickle_and_reset(upstream: MisbehavingServer) -> None:
    with pytest.raises(httpx.ReadTimeout):
        post(upstream, "hang", CHAT, timeout=0.2)
    closed = upstream.closed_connections
    with httpx.stream("POST", upstream.url + "/chat/completions", json=STREAM, headers={"x-misbehave": "trickle"}) as r:
        received = b""
        for chunk in r.iter_raw():
            received += chunk
            if len(received) > 200:
                break
    assert b"\n\n" not in received  # no event ever ends
    assert upstream.wait_closed(closed + 1)  # the server noticed the client leave
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):  # the RST, or the body cut short
        post(upstream, "reset", STREAM)


def test_the_mode_can_be_set_on_the_object() -> None:
    with MisbehavingServer(Misbehaviour.BAD_STATUS) as server:
        assert httpx.post(server.url + "/chat/completions", json=CHAT).status_code == 999
        server.mode = Misbehaviour.NORMAL
        assert httpx.post(server.url + "/chat/completions", json=CHAT).status_code == 200
