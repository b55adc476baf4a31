"""Gemini's 429s say when to retry in the body (``google.rpc.RetryInfo``), not in a ``Retry-After`` header.

The router must honour that delay as it honours the header: with one key, a retryable 429 whose body
says ``retryDelay: "0.05s"`` is waited out and retried, where a 429 saying nothing puts the key in
the (long) default cooldown and the client gets the 429.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway

PATH = "/gemini/v1beta/models/gemini-2.5-flash:generateContent"
REQUEST = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
OK = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "hello"}]}, "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1, "totalTokenCount": 3},
    "modelVersion": "gemini-2.5-flash",
}


def exhausted(delay: str | None) -> httpx.Response:
    error: dict[str, Any] = {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}
    if delay is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
    return httpx.Response(429, json={"error": error})


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Gateway] = []

    async def factory(answers: list[httpx.Response]) -> tuple[Gateway, list[httpx.Request]]:
        calls: list[httpx.Request] = []

        def upstream(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            return answers[min(len(calls), len(answers)) - 1]

        config = Config.from_dict(
            {
                "providers": {"gemini": {"kind": "gemini", "base_url": "http://gemini.test", "api_keys": ["only-key"]}},
                # A long default cooldown and a short wait limit: only the body's delay can make a retry happen.
                "routing": {"retries": 1, "cooldown_s": 60, "max_retry_after_s": 5, "backoff_base_s": 0.001},
                "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / f'log{len(made)}.db'}"}},
            }
        )
        client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
        gateway = create_gateway(config, client=client)
        await gateway.startup()
        made.append(gateway)
        return gateway, calls

    yield factory
    for gateway in made:
        await gateway.shutdown()


async def call(gateway: Gateway) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        return await client.post(PATH, json=REQUEST)


async def records(gateway: Gateway) -> list[dict[str, Any]]:
    await gateway.pipeline.flush()
    store = gateway.exporters.log_store
    assert store is not None
    return [json.loads(raw) for raw in store.query(limit=10)]


async def test_retry_delay_in_the_body_is_honoured(make_gateway: Callable[..., Any]) -> None:
    gateway, calls = await make_gateway([exhausted("0.05s"), httpx.Response(200, json=OK)])
    response = await call(gateway)
    assert response.status_code == 200
    assert response.json()["candidates"][0]["content"]["parts"][0]["text"] == "hello"
    assert len(calls) == 2
    [record] = await records(gateway)
    assert [a.get("status") for a in record["attempts"]] == [429, 200]
    assert (record["status"], record["outcome"]) == (200, "completed")


async def test_without_retry_info_the_key_cools_down_and_the_client_gets_the_429(
    make_gateway: Callable[..., Any],
) -> None:
    gateway, calls = await make_gateway([exhausted(None), httpx.Response(200, json=OK)])
    response = await call(gateway)
    assert response.status_code == 429
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert len(calls) == 1
    [record] = await records(gateway)
    assert record["error_type"] == "RESOURCE_EXHAUSTED"


async def test_a_delay_longer_than_the_limit_is_not_waited_for(make_gateway: Callable[..., Any]) -> None:
    gateway, calls = await make_gateway([exhausted("37s"), httpx.Response(200, json=OK)])
    response = await call(gateway)
    assert response.status_code == 429
    assert len(calls) == 1
