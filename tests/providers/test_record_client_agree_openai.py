"""The record and the client agree on OpenAI's own finish values, plain and streamed.

OpenAI's format needs no translation: the client gets the upstream bytes unchanged (passthrough), and
the record keeps the raw value (``finish_reasons``) and its normalized one (``finish_reason``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway
from tests.conftest import drive
from tests.translation._golden import sse_events

KEY = "sk-upstream-agree-secret"
NORMALIZED = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
}
REQUEST = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()


def message(finish: str) -> dict[str, Any]:
    """The assistant message (or delta) that goes with a finish value."""
    if finish == "tool_calls":
        call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        return {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]}
    if finish == "function_call":
        return {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}}
    return {"role": "assistant", "content": "Hello" if finish != "content_filter" else ""}


def upstream_body(finish: str, stream: bool) -> bytes:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    head = {"id": "chatcmpl-1", "created": 1_760_000_000, "model": "gpt-4o-mini-2024-07-18"}
    if not stream:
        choice = {"index": 0, "message": message(finish), "logprobs": None, "finish_reason": finish}
        return json.dumps({**head, "object": "chat.completion", "choices": [choice], "usage": usage}).encode()
    chunks = [
        {"index": 0, "delta": message(finish), "logprobs": None, "finish_reason": None},
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish},
    ]
    events = [{**head, "object": "chat.completion.chunk", "choices": [chunk]} for chunk in chunks]
    events.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events) + b"data: [DONE]\n\n"


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Callable[[bytes, bool], Awaitable[Gateway]]]:
    made: list[Gateway] = []

    async def factory(answer: bytes, stream: bool) -> Gateway:
        content_type = "text/event-stream" if stream else "application/json"

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=answer, headers={"content-type": content_type})

        provider = {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": [KEY]}
        config = Config.from_dict(
            {"providers": {"openai": provider}, "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'l.db'}"}}}
        )
        gateway = create_gateway(config, client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        await gateway.startup()
        made.append(gateway)
        return gateway

    yield factory
    for gateway in made:
        await gateway.shutdown()


async def only_record(gateway: Gateway) -> dict[str, Any]:
    await gateway.pipeline.flush()
    store = gateway.exporters.log_store
    assert store is not None
    [raw] = store.query(limit=10)
    record: dict[str, Any] = json.loads(raw)
    return record


def client_finish(body: bytes, stream: bool) -> str:
    if not stream:
        return str(json.loads(body)["choices"][0]["finish_reason"])
    events, done = sse_events(body)
    assert done
    [finish] = [choice["finish_reason"] for event in events for choice in event["choices"] if choice["finish_reason"]]
    return str(finish)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("finish", sorted(NORMALIZED))
async def test_native_route_record_and_client_agree(
    make_gateway: Callable[[bytes, bool], Awaitable[Gateway]], finish: str, stream: bool
) -> None:
    answer = upstream_body(finish, stream)
    gateway = await make_gateway(answer, stream)
    result = await drive(gateway, "/openai/chat/completions", REQUEST, headers=[(b"content-type", b"application/json")])
    assert result.status == 200
    assert result.body == answer  # passthrough: the very bytes upstream sent
    record = await only_record(gateway)
    assert record["finish_reasons"] == [client_finish(result.body, stream)] == [finish]
    assert record["finish_reason"] == NORMALIZED[finish]
    assert record["status"] == 200 and record["outcome"] == "completed"
    assert (record["usage"]["input_tokens"], record["usage"]["output_tokens"]) == (5, 2)
