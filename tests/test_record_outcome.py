"""Which failure a record names when several happen to one exchange."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.records.build import build_record
from llm_obs_middleware.records.schema import NormalizedResponse

from .conftest import config_dict, drive


def _streamed_exchange(in_band_error: str | None, *, completed: bool = True) -> Exchange:
    exchange = Exchange({"method": "POST", "path": "/bedrock/model/m/converse-stream"})
    exchange.is_llm = True
    exchange.provider = exchange.provider_kind = "aws.bedrock"
    exchange.status = 200
    exchange.streamed = True
    exchange.response = NormalizedResponse(
        finish_reason="error" if in_band_error else "stop",
        error_type=in_band_error,
        error_message="Too many tokens" if in_band_error else None,
        completed=completed,
    )
    return exchange


def test_hang_up_after_an_in_band_error_records_the_providers_error() -> None:
    # botocore closes the connection as soon as it reads an exception event, which can reach the
    # gateway before the relay sees the end of the stream.
    exchange = _streamed_exchange("throttlingException")
    exchange.fail("client_disconnected", "client_disconnected")
    record = build_record(exchange, None, capture_content=True)
    assert (record.outcome, record.error_type, record.error_message) == (
        "upstream_error",
        "throttlingException",
        "Too many tokens",
    )
    # The provider's error text can quote the prompt: without content capture only its type is kept.
    assert build_record(exchange, None).error_message is None


def test_hang_up_mid_stream_is_a_client_disconnect() -> None:
    exchange = _streamed_exchange(None, completed=False)
    exchange.fail("client_disconnected", "client_disconnected")
    record = build_record(exchange, None)
    assert (record.outcome, record.error_type) == ("client_disconnected", "client_disconnected")


def test_a_gateway_diagnosis_wins_over_a_later_in_band_error() -> None:
    exchange = _streamed_exchange("throttlingException")
    exchange.fail("upstream_error", "upstream_timeout", "provider exceeded its total timeout")
    record = build_record(exchange, None)
    assert (record.outcome, record.error_type) == ("upstream_error", "upstream_timeout")


CHUNK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
)
LAST = (
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n'
    b"data: [DONE]\n\n"
)


async def test_hang_up_after_the_streams_own_end_is_a_completed_answer(tmp_path: Path) -> None:
    # The openai SDK stops reading at [DONE] and closes the connection, which can reach the gateway
    # before the upstream closes its side: the client got the whole answer.
    upstream_open = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield CHUNK
        yield LAST
        await upstream_open.wait()  # the upstream has not ended the HTTP body yet

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as upstream:
        gateway = create_gateway(Config.from_dict(config_dict(tmp_path=tmp_path)), client=upstream)
        await gateway.startup()
        try:
            request = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
            result = await drive(
                gateway,
                "/v1/chat/completions",
                request,
                disconnect=lambda sent: any(b"[DONE]" in chunk for _, chunk, _ in sent.bodies),
            )
            assert b"[DONE]" in result.body
            await gateway.pipeline.flush()
            store = gateway.exporters.log_store
            assert store is not None
            [record] = [json.loads(raw) for raw in store.query(limit=10)]
            assert (record["outcome"], record["error_type"]) == ("completed", None)
            assert record["usage"]["output_tokens"] == 1
        finally:
            upstream_open.set()
            await gateway.shutdown()
