"""A non-streamed answer reaches the client whole, its last bytes marked as the end."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from llm_obs_middleware.asgi.aliases import Message
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.providers.openai.adapter import OpenAIAdapter
from llm_obs_middleware.routing.relay import relay
from llm_obs_middleware.upstream.client import UpstreamResponse


def _upstream(chunks: list[bytes]) -> UpstreamResponse:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def close() -> None:
        return None

    length = str(sum(map(len, chunks))).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", length), (b"date", b"x")]
    return UpstreamResponse(200, headers, body(), close)


async def _relayed(chunks: list[bytes]) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    exchange = Exchange({"method": "POST", "path": "/v1/chat/completions"})
    await relay(
        exchange,
        _upstream(chunks),
        adapter=OpenAIAdapter(),
        provider="p",
        hide_usage=False,
        deadline=time.perf_counter() + 60,
        receive=receive,
        send=send,
    )
    return sent


@pytest.mark.parametrize(
    "chunks", [[b'{"id":"a"}'], [b'{"id"', b':"a"', b"}"], []], ids=["one read", "three reads", "empty body"]
)
async def test_body_messages_carry_every_byte_and_the_last_ends_the_response(chunks: list[bytes]) -> None:
    start, *bodies = await _relayed(chunks)
    assert start["type"] == "http.response.start"
    assert (b"content-length", str(sum(map(len, chunks))).encode()) in start["headers"]
    assert all(name != b"date" for name, _ in start["headers"])  # the ASGI server writes its own
    assert b"".join(message["body"] for message in bodies) == b"".join(chunks)
    assert [message["more_body"] for message in bodies] == [True] * (len(bodies) - 1) + [False]
    # No empty message to end it: an answer within the first MB (held until it ends, so a body cut short
    # can still be a 502) is one body message through every layer's send.
    assert len(bodies) == 1
