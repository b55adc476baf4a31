"""A stream the gateway has to cut (upstream drop) ends the way its provider reports failures, so the
provider's SDK raises (each adapter shapes its in-band error frame; the relay only places it).

NDJSON (Ollama) gets an ``{"error": ...}`` line, as Ollama itself sends, so its SDK raises it as a
``ResponseError`` (tested over real HTTP in test_ollama_sdk.py). A line cut short by the upstream is
ended first, so the error always stands on a line of its own; after a whole line no empty line is
added (the SDK would choke on it). An AWS event-stream (Bedrock) gets an exception message, but only
after a whole message: mid-message there is no place for one, and the stream just ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from _agree import CutStream

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.codecs.eventstream import EventStreamDecoder, FrameBoundary, encode_message
from llm_obs_middleware.gateway.standalone import Gateway

LINE = b'{"model":"qwen3","message":{"role":"assistant","content":"Hel"},"done":false}\n'


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Gateway] = []

    async def factory(parts: list[bytes], content_type: str = "application/x-ndjson") -> Gateway:
        def upstream(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers={"content-type": content_type}, stream=CutStream(parts))

        config = Config.from_dict(
            {
                "providers": {
                    "ollama": {"kind": "ollama", "base_url": "http://ollama.test"},
                    "anthropic": {"kind": "anthropic", "base_url": "http://anthropic.test", "api_keys": ["k"]},
                    "openai": {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": ["k"]},
                    "bedrock": {
                        "kind": "bedrock",
                        "base_url": "http://bedrock.test",
                        "aws_region": "us-east-1",
                        "aws_access_key_id": "AKIDTEST",
                        "aws_secret_access_key": "secret",
                    },
                },
                "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / f'log{len(made)}.db'}"}},
            }
        )
        gateway = create_gateway(config, client=httpx.AsyncClient(transport=httpx.MockTransport(upstream)))
        await gateway.startup()
        made.append(gateway)
        return gateway

    yield factory
    for gateway in made:
        await gateway.shutdown()


async def chat(gateway: Gateway) -> bytes:
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        response = await client.post("/ollama/api/chat", json=body)
    assert response.status_code == 200
    return response.content


async def record(gateway: Gateway) -> dict[str, Any]:
    await gateway.pipeline.flush()
    store = gateway.exporters.log_store
    assert store is not None
    [raw] = store.query(limit=10)
    return json.loads(raw)  # type: ignore[no-any-return]


async def test_cut_after_a_whole_line(make_gateway: Callable[..., Any]) -> None:
    gateway = await make_gateway([LINE])
    received = await chat(gateway)
    first, last = received.split(b"\n")[:-1]  # every line ends with \n: no empty line in between
    assert json.loads(first)["message"]["content"] == "Hel"
    error = json.loads(last)["error"]
    assert error == "provider 'ollama' closed the connection mid-response"
    found = await record(gateway)
    assert (found["outcome"], found["error_type"], found["error_message"]) == (
        "upstream_error",
        "upstream_disconnected",
        error,
    )


async def test_cut_mid_line_ends_the_line_first(make_gateway: Callable[..., Any]) -> None:
    gateway = await make_gateway([LINE, b'{"model":"qwen3","mess'])
    received = await chat(gateway)
    lines = received.split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    assert lines[1] == b'{"model":"qwen3","mess'  # what the upstream sent, unchanged
    assert set(json.loads(lines[2])) == {"error"}
    assert (await record(gateway))["error_type"] == "upstream_disconnected"


# --- AWS event-stream (Bedrock ConverseStream) ----------------------------------------------------

EVENT_STREAM = "application/vnd.amazon.eventstream"
DELTA = encode_message(
    {":message-type": "event", ":event-type": "contentBlockDelta", ":content-type": "application/json"},
    b'{"contentBlockIndex": 0, "delta": {"text": "Hel"}}',
)


async def converse_stream(gateway: Gateway) -> bytes:
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        response = await client.post("/bedrock/model/amazon.nova-lite-v1%3A0/converse-stream", json=body)
    assert response.status_code == 200
    return response.content


async def test_event_stream_cut_after_a_whole_message(make_gateway: Callable[..., Any]) -> None:
    gateway = await make_gateway([DELTA[:10], DELTA[10:], DELTA], EVENT_STREAM)
    received = await converse_stream(gateway)
    assert received.startswith(DELTA + DELTA)  # the upstream's bytes, unchanged
    decoder = EventStreamDecoder()
    *events, last = decoder.feed(received)
    decoder.close()
    assert decoder.error is None and len(events) == 2  # a well-formed stream to its end
    assert last.headers[":message-type"] == "exception"
    assert last.headers[":exception-type"] == "modelStreamErrorException"
    message = json.loads(last.payload)["message"]
    assert message == "provider 'bedrock' closed the connection mid-response"
    found = await record(gateway)
    assert (found["outcome"], found["error_type"], found["error_message"]) == (
        "upstream_error",
        "upstream_disconnected",
        message,
    )


async def test_event_stream_cut_mid_message_just_ends(make_gateway: Callable[..., Any]) -> None:
    gateway = await make_gateway([DELTA, DELTA[:20]], EVENT_STREAM)
    received = await converse_stream(gateway)
    assert received == DELTA + DELTA[:20]  # nothing could follow a partial message
    assert (await record(gateway))["error_type"] == "upstream_disconnected"


def test_frame_boundary_for_any_split() -> None:
    stream = DELTA + DELTA
    for cut in range(len(stream) + 1):
        for split in range(cut + 1):
            frames = FrameBoundary()
            frames.feed(stream[:split])
            frames.feed(stream[split:cut])
            assert frames.at_boundary == (cut in (0, len(DELTA), len(stream))), (cut, split)


def test_frame_boundary_gives_up_on_an_impossible_length() -> None:
    frames = FrameBoundary()
    frames.feed(b"\x00\x00\x00\x03" + DELTA)  # shorter than any message: the framing is lost
    assert frames.broken and not frames.at_boundary


# --- SSE: each provider's own error event, raised by its SDK -----------------------------------------

CLAUDE_EVENTS = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,'
    b'"usage":{"input_tokens":12,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)
CLAUDE_DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
)
SSE = "text/event-stream"
HI = [{"role": "user", "content": "hi"}]


def asgi_client(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway))


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([CLAUDE_EVENTS, CLAUDE_DELTA], id="after_a_whole_event"),
        pytest.param([CLAUDE_EVENTS, CLAUDE_DELTA[:40]], id="mid_line"),
        pytest.param([CLAUDE_EVENTS, CLAUDE_DELTA[:-1]], id="mid_event"),
    ],
)
async def test_anthropic_sdk_raises_on_a_cut_stream(make_gateway: Callable[..., Any], parts: list[bytes]) -> None:
    gateway = await make_gateway(parts, SSE)
    http_client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gateway))  # the SDK's own httpx
    client = anthropic.AsyncAnthropic(
        base_url="http://gw/anthropic", api_key="client", http_client=http_client, max_retries=0
    )
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError, match="closed the connection mid-response"):
        stream = await client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=HI, stream=True)
        async for event in stream:
            received.append(event.type)
    assert received[:2] == ["message_start", "content_block_start"]
    found = await record(gateway)
    assert (found["outcome"], found["error_type"]) == ("upstream_error", "upstream_disconnected")


OPENAI_CHUNK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}\n\n'
)


async def test_openai_error_event_is_unchanged_and_raised_by_the_sdk(make_gateway: Callable[..., Any]) -> None:
    gateway = await make_gateway([OPENAI_CHUNK], SSE)
    body = {"model": "gpt-4o", "messages": HI, "stream": True}
    async with asgi_client(gateway) as http:
        raw = (await http.post("http://gw/openai/v1/chat/completions", json=body)).content
    message = "provider 'openai' closed the connection mid-response"
    error = {"message": message, "type": "upstream_disconnected", "param": None, "code": "upstream_disconnected"}
    assert raw == OPENAI_CHUNK + b"data: " + json.dumps({"error": error}, separators=(",", ":")).encode() + b"\n\n"
    client = openai.AsyncOpenAI(base_url="http://gw/openai/v1", api_key="c", http_client=asgi_client(gateway))
    with pytest.raises(openai.APIError, match="closed the connection mid-response"):
        stream = await client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)  # type: ignore[arg-type]
        async for _ in stream:
            pass


async def test_a_translated_stream_cut_raises_in_the_openai_sdk(make_gateway: Callable[..., Any]) -> None:
    gateway = await make_gateway([CLAUDE_EVENTS, CLAUDE_DELTA], SSE)
    client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="c", http_client=asgi_client(gateway), max_retries=0)
    with pytest.raises(openai.APIError, match="closed the connection mid-response"):
        stream = await client.chat.completions.create(
            model="anthropic/claude-sonnet-4-6",
            messages=HI,  # type: ignore[arg-type]
            stream=True,
        )
        async for _ in stream:
            pass
