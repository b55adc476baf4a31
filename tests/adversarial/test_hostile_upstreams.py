"""A provider that frames its stream any way HTTP allows: every byte reaches the client unchanged, in order,
and the record counts what the events said, whatever the split points, line endings and noise lines.

The upstream is a scripted ASGI app under uvicorn on loopback, in front of the real gateway on loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer

from ..conftest import config_dict

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
REQUEST = json.dumps(
    {
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": {"include_usage": True},  # asked by the client: the gateway hides nothing
        "messages": [{"role": "user", "content": "hi"}],
    }
).encode()


class ScriptedUpstream:
    """Answers every request with ``chunks`` as one streamed body, each chunk its own write."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class Stack:
    def __init__(self, upstream: ScriptedUpstream, url: str) -> None:
        self.upstream = upstream
        self.client = httpx.Client(base_url=url, timeout=30)

    def last_record(self, count: int) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            total = self.client.get("/logs/stats").json()["totals"]["requests"]
            if total >= count or time.monotonic() > deadline:
                assert total == count
                return self.client.get("/logs", params={"limit": 1}).json()["data"][0]  # type: ignore[no-any-return]
            time.sleep(0.02)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("framings")
    upstream = ScriptedUpstream()
    with BackgroundServer(upstream, lifespan="off") as provider:
        config = Config.from_dict(
            config_dict(base_url=provider.url + "/v1", tmp_path=tmp, queue={"flush_interval_s": 0})
        )
        with BackgroundServer(create_gateway(config)) as gateway:
            built = Stack(upstream, gateway.url)
            yield built
            built.client.close()


def chunk_event(text: str) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


USAGE = {
    "id": "c",
    "object": "chat.completion.chunk",
    "model": "gpt-4o-mini",
    "choices": [],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}
NOISE = st.sampled_from([b": keep-alive", b"event: message", b"id: 42", b"retry: 10", b":", b"data:"])


@st.composite
def framed_streams(draw: st.DrawFn) -> tuple[list[bytes], int]:
    """A chat stream of 1-5 content events, the usage event and [DONE], with random line endings, noise
    lines between events and random split points; also returns how many content events it has."""
    texts = draw(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5))
    end = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    events = [json.dumps(chunk_event(text)).encode() for text in texts] + [json.dumps(USAGE).encode(), b"[DONE]"]
    body = b""
    for data in events:
        for noise in draw(st.lists(NOISE, max_size=2)):
            if noise != b"data:":  # an empty data line would make an event of its own
                body += noise + end
        body += b"data: " + data + end + end
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=12)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    return [piece for piece in pieces if piece], len(texts)


@SETTINGS
@given(framed=framed_streams())
def test_any_framing_reaches_the_client_byte_for_byte_and_is_counted(
    stack: Stack, framed: tuple[list[bytes], int]
) -> None:
    chunks, _ = framed
    stack.upstream.chunks = chunks
    before = stack.client.get("/logs/stats").json()["totals"]["requests"]
    with stack.client.stream("POST", "/v1/chat/completions", content=REQUEST) as response:
        body = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert body == b"".join(chunks)
    record = stack.last_record(before + 1)
    assert (record["outcome"], record["status"]) == ("completed", 200), record
    assert (record["usage"]["input_tokens"], record["usage"]["output_tokens"]) == (7, 3)
