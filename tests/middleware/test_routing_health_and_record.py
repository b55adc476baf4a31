"""What the router tells: ``/health/deployments`` (cooldowns, dead keys, error rate, latency), the
record's route, rule, deployment and key id (never the key), and Anthropic's 529 being retried."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway

from ..conftest import drive

CHAT = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
SECRET_ONE, SECRET_TWO = "sk-live-SECRET-one", "sk-live-SECRET-two"
OK_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
Handler = Callable[[httpx.Request, int], Any]


def error(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": f"status {status}", "type": "x"}}, headers=headers)


def key_of(request: httpx.Request) -> str:
    return str(request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer "))


def base_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": "http://openai.test/v1",
                "api_keys": [{"key": SECRET_ONE, "name": "one"}, SECRET_TWO],
            }
        },
        "models": {"gpt-4o": {"provider": "openai"}},
        "routing": {"retries": 2, "backoff_base_s": 0.001, "backoff_cap_s": 0.002, "cooldown_s": 60},
        "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
    }
    data.update(overrides)
    return data


class Kit:
    def __init__(self, gateway: Gateway, spans: InMemorySpanExporter, calls: list[tuple[str, str]]) -> None:
        self.gateway = gateway
        self.spans = spans
        self.calls = calls

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.gateway), base_url="http://g") as client:
            return await client.get(path)

    async def records(self) -> list[dict[str, Any]]:
        await self.gateway.pipeline.flush()
        store = self.gateway.exporters.log_store
        assert store is not None
        return [json.loads(raw) for raw in store.query(limit=100)][::-1]  # oldest first


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[Gateway, httpx.AsyncClient]] = []

    async def factory(handler: Handler, **overrides: Any) -> Kit:
        calls: list[tuple[str, str]] = []

        async def upstream(request: httpx.Request) -> httpx.Response:
            calls.append((request.url.host, key_of(request)))
            outcome = handler(request, len(calls))
            if asyncio.iscoroutine(outcome):
                outcome = await outcome
            if isinstance(outcome, Exception):
                raise outcome
            assert isinstance(outcome, httpx.Response)
            return outcome

        client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
        spans = InMemorySpanExporter()
        gateway = create_gateway(
            Config.from_dict(base_config(tmp_path, **overrides)), client=client, span_exporter=spans
        )
        gateway.stack.router.rng.seed(3)
        await gateway.startup()
        made.append((gateway, client))
        return Kit(gateway, spans, calls)

    yield factory
    for gateway, client in made:
        await gateway.shutdown()
        await client.aclose()


def until(snapshot: dict[str, Any]) -> float:
    value = snapshot["cooling_down_until"]
    assert isinstance(value, str)
    return (datetime.fromisoformat(value) - datetime.now(UTC)).total_seconds()


async def test_a_429_without_retry_after_cools_the_key_for_the_configured_time(make: Callable[..., Any]) -> None:
    kit = await make(
        lambda request, n: error(429) if key_of(request) == SECRET_ONE else httpx.Response(200, json=OK_BODY)
    )
    results = [await drive(kit.gateway, "/v1/chat/completions", CHAT) for _ in range(8)]
    health = (await kit.get("/health/deployments")).json()
    assert [r.status for r in results] == [200] * 8
    assert kit.calls.count(("openai.test", SECRET_ONE)) == 1, "skipped while cooling down"
    [deployment] = health["deployments"]
    one, two = deployment["keys"]
    assert (one["key"], one["state"], one["cooldowns"]) == ("one", "cooling_down", 1)
    assert 55 < one["cooling_down_for_s"] <= 60, "routing.cooldown_s, as no Retry-After came"
    assert 55 < until(one) <= 61
    assert (two["key"], two["state"], two["cooling_down_until"]) == ("openai#1", "healthy", None)
    assert deployment["healthy"] is True


async def test_health_shows_error_rate_latency_and_a_cooling_deployment(make: Callable[..., Any]) -> None:
    async def handler(request: httpx.Request, n: int) -> httpx.Response:
        if n <= 1:
            await asyncio.sleep(0.05)
            return httpx.Response(200, json=OK_BODY)
        return error(503)

    kit = await make(handler, routing={"retries": 0, "cooldown_s": 60})
    assert (await drive(kit.gateway, "/v1/chat/completions", CHAT)).status == 200
    [before] = (await kit.get("/health/deployments")).json()["deployments"]
    statuses = [(await drive(kit.gateway, "/v1/chat/completions", CHAT)).status for _ in range(3)]
    [after] = (await kit.get("/health/deployments")).json()["deployments"]
    refused = await drive(kit.gateway, "/v1/chat/completions", CHAT)

    assert before["ewma_latency_s"] >= 0.05 and before["ewma_ttft_s"] is not None
    assert (before["healthy"], before["recent_error_rate"], before["recent_requests"]) == (True, 0.0, 1)
    assert statuses == [503] * 3
    # Three failures in a row: the deployment cools down for routing.cooldown_s.
    assert (after["healthy"], after["recent_error_rate"], after["recent_requests"]) == (False, 0.75, 4)
    assert 55 < after["cooling_down_for_s"] <= 60 and 55 < until(after) <= 61
    assert {key["state"] for key in after["keys"]} == {"healthy"}, "a 5xx is the deployment's, not the key's"
    # Nothing else can serve: the cooling deployment is probed and the client gets its real answer.
    assert refused.status == 503 and json.loads(refused.body)["error"]["message"] == "status 503"
    assert len(kit.calls) == 5


async def test_the_record_names_route_rule_deployment_and_key_never_the_secret(make: Callable[..., Any]) -> None:
    kit = await make(lambda request, n: error(429) if n == 1 else httpx.Response(200, json=OK_BODY))
    assert (await drive(kit.gateway, "/v1/chat/completions", CHAT)).status == 200
    [record] = await kit.records()
    metrics = (await kit.get("/metrics")).text
    health = (await kit.get("/health/deployments")).text
    assert (record["route"], record["rule"], record["retries"], record["fallback_index"]) == ("openai", "gpt-4o", 1, 0)
    first, served = record["attempts"]
    assert {first["key_id"], served["key_id"]} == {"one", "openai#1"}
    for attempt, status in ((first, 429), (served, 200)):
        assert attempt["deployment"] == "gpt-4o/openai/gpt-4o" and attempt["status"] == status
        assert attempt["latency_s"] >= 0
    assert first["error_type"] == "http_429" and "error_type" not in served
    assert (record["deployment"], record["key_id"]) == (served["deployment"], served["key_id"])
    spans = [json.dumps(dict(span.attributes or {})) for span in kit.spans.get_finished_spans()]
    for text in (json.dumps(record), metrics, health, *spans):
        assert SECRET_ONE not in text and SECRET_TWO not in text


async def test_anthropic_529_is_retried(make: Callable[..., Any]) -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "hello"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

    def handler(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(529, json=overloaded) if n == 1 else httpx.Response(200, json=message)

    provider = {"kind": "anthropic", "base_url": "http://anthropic.test", "api_keys": ["sk-ant-secret"]}
    kit = await make(handler, providers={"anthropic": provider}, models={})
    body = b'{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'
    result = await drive(kit.gateway, "/anthropic/v1/messages", body)
    [record] = await kit.records()
    assert result.status == 200 and json.loads(result.body)["content"][0]["text"] == "hello"
    assert kit.calls == [("anthropic.test", "sk-ant-secret")] * 2, "same deployment and key, tried again"
    assert [(a["status"], a.get("error_type")) for a in record["attempts"]] == [(529, "http_529"), (200, None)]
    assert record["retries"] == 1
