"""Routing that survives real failures: key pools, retries, Retry-After, fallbacks, cooldowns, the trail."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway

from ..conftest import drive

CHAT = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
OK_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


class Upstream:
    """A scripted upstream: per host and key, what to answer; every call is logged."""

    def __init__(self, handler: Callable[[str, str, int], httpx.Response | Exception]) -> None:
        self.handler = handler
        self.calls: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.calls.append((request.url.host, key))
        outcome = self.handler(request.url.host, key, len(self.calls))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def ok() -> httpx.Response:
    return httpx.Response(200, json=OK_BODY)


def error(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": f"status {status}", "type": "x", "code": str(status)}}, headers=headers
    )


def config(tmp_path: Path, **overrides: Any) -> Config:
    data: dict[str, Any] = {
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": "http://openai.test/v1",
                "api_keys": [{"key": "k-one", "name": "one"}, {"key": "k-two", "name": "two"}],
            },
            "azure": {"kind": "openai_compatible", "base_url": "http://azure.test/v1", "api_keys": ["k-azure"]},
            "backup": {"kind": "openai_compatible", "base_url": "http://backup.test/v1", "api_keys": ["k-backup"]},
        },
        "models": {
            "gpt-4o": {
                "deployments": [
                    {"provider": "openai", "model": "gpt-4o", "weight": 70},
                    {"provider": "azure", "model": "gpt-4o-prod", "weight": 30},
                ],
                "fallbacks": ["backup-model"],
            },
            "backup-model": {"provider": "backup"},
        },
        "routing": {"retries": 2, "backoff_base_s": 0.001, "backoff_cap_s": 0.002},
        "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
    }
    data.update(overrides)
    return Config.from_dict(data)


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    made: list[tuple[Gateway, httpx.AsyncClient]] = []

    async def factory(upstream: Upstream, seed: int = 1, spans: Any = None, **overrides: Any) -> Gateway:
        client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
        gateway = create_gateway(config(tmp_path, **overrides), client=client, span_exporter=spans)
        gateway.stack.router.rng.seed(seed)
        await gateway.startup()
        made.append((gateway, client))
        return gateway

    yield factory


async def finish(gateway: Gateway) -> list[dict[str, Any]]:
    await gateway.pipeline.flush()
    store = gateway.exporters.log_store
    assert store is not None
    rows = [json.loads(raw) for raw in store.query(limit=1000)]
    await gateway.shutdown()
    return rows[::-1]  # oldest first


def trail(record: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(a["key_id"], a.get("status") or a.get("error_type")) for a in record["attempts"]]


async def test_429_moves_to_another_key_which_then_cools_down(make_gateway: Callable[..., Any]) -> None:
    upstream = Upstream(lambda host, key, n: error(429, **{"retry-after": "30"}) if key == "k-one" else ok())
    gateway = await make_gateway(upstream, models={"gpt-4o": {"provider": "openai"}})
    results = [await drive(gateway, "/v1/chat/completions", CHAT) for _ in range(6)]
    records = await finish(gateway)
    assert [r.status for r in results] == [200] * 6
    assert upstream.calls.count(("openai.test", "k-one")) == 1, "a key cooling down is skipped"
    [retried] = [r for r in records if r["retries"]]
    assert trail(retried) == [("one", 429), ("two", 200)]


async def test_retry_after_is_honoured_when_every_key_is_cooling(make_gateway: Callable[..., Any]) -> None:
    upstream = Upstream(lambda host, key, n: error(429, **{"retry-after": "0.4"}) if n == 1 else ok())
    gateway = await make_gateway(
        upstream,
        providers={"openai": {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": ["k"]}},
        models={"gpt-4o": {"provider": "openai"}},
    )
    started = time.perf_counter()
    result = await drive(gateway, "/v1/chat/completions", CHAT)
    elapsed = time.perf_counter() - started
    [record] = await finish(gateway)
    assert result.status == 200
    assert elapsed >= 0.35, elapsed  # the retry waited for Retry-After (a wait never ends early)
    assert [a.get("status") for a in record["attempts"]] == [429, 200]


async def test_5xx_exhausts_retries_then_the_fallback_serves(make_gateway: Callable[..., Any]) -> None:
    upstream = Upstream(lambda host, key, n: ok() if host == "backup.test" else error(503))
    gateway = await make_gateway(upstream)
    result = await drive(gateway, "/v1/chat/completions", CHAT)
    [record] = await finish(gateway)
    assert result.status == 200
    statuses = [(a["deployment"], a.get("status"), a.get("fallback_index", 0)) for a in record["attempts"]]
    assert len(statuses) == 4 and all(s[1] == 503 and s[2] == 0 for s in statuses[:3])
    assert statuses[-1] == ("backup-model/backup/backup-model", 200, 1)
    assert (record["retries"], record["fallback_index"], record["route"]) == (3, 1, "backup")


async def test_401_cools_the_key_down_longer_and_it_is_tried_again(make_gateway: Callable[..., Any]) -> None:
    refusing = [True]
    upstream = Upstream(lambda host, key, n: error(401) if key == "k-one" and refusing[0] else ok())
    routing = {"retries": 2, "backoff_base_s": 0.001, "backoff_cap_s": 0.002, "cooldown_s": 0.01}
    gateway = await make_gateway(
        upstream, models={"gpt-4o": {"provider": "openai"}}, routing={**routing, "auth_cooldown_s": 0.2}
    )
    for _ in range(10):
        assert (await drive(gateway, "/v1/chat/completions", CHAT)).status == 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://g") as client:
        health = (await client.get("/health/deployments")).json()
    assert upstream.calls.count(("openai.test", "k-one")) == 1, "skipped while it cools down"
    [deployment] = health["deployments"]
    assert {k["key"]: k["state"] for k in deployment["keys"]} == {"one": "rejected", "two": "healthy"}
    refusing[0] = False  # the provider takes the key again (the refusal was one request's doing)
    deadline = time.monotonic() + 10
    while upstream.calls.count(("openai.test", "k-one")) < 2 and time.monotonic() < deadline:
        assert (await drive(gateway, "/v1/chat/completions", CHAT)).status == 200
        await asyncio.sleep(0.01)
    await finish(gateway)
    assert upstream.calls.count(("openai.test", "k-one")) >= 2, "once its cooldown is over the key serves again"


async def test_connect_refused_and_first_byte_timeout_fall_through(make_gateway: Callable[..., Any]) -> None:
    def handler(host: str, key: str, n: int) -> httpx.Response | Exception:
        if host == "openai.test":
            return httpx.ConnectError("connection refused")
        if host == "azure.test":
            return httpx.ReadTimeout("no first byte")
        return ok()

    gateway = await make_gateway(Upstream(handler))
    result = await drive(gateway, "/v1/chat/completions", CHAT)
    [record] = await finish(gateway)
    assert result.status == 200
    errors = {a.get("error_type") for a in record["attempts"][:-1]}
    assert errors == {"upstream_unreachable", "upstream_timeout"}
    assert record["attempts"][-1]["provider"] == "backup"


async def test_a_400_is_never_retried(make_gateway: Callable[..., Any]) -> None:
    upstream = Upstream(lambda host, key, n: error(400))
    gateway = await make_gateway(upstream)
    result = await drive(gateway, "/v1/chat/completions", CHAT)
    [record] = await finish(gateway)
    assert result.status == 400
    assert len(upstream.calls) == 1 and len(record["attempts"]) == 1
    assert record["outcome"] == "upstream_error"


async def test_when_everything_fails_the_client_gets_the_last_upstream_error(make_gateway: Callable[..., Any]) -> None:
    upstream = Upstream(lambda host, key, n: error(500 if host != "backup.test" else 529, **{"x-host": host}))
    gateway = await make_gateway(upstream)
    result = await drive(gateway, "/v1/chat/completions", CHAT)
    [record] = await finish(gateway)
    assert result.status == 529 and result.headers[b"x-host"] == b"backup.test"
    assert json.loads(result.body)["error"]["code"] == "529"
    assert len(record["attempts"]) == 6 and record["status"] == 529


async def test_when_nobody_answers_a_502_names_the_attempts(make_gateway: Callable[..., Any]) -> None:
    gateway = await make_gateway(Upstream(lambda host, key, n: httpx.ConnectError("refused")))
    result = await drive(gateway, "/v1/chat/completions", CHAT)
    [record] = await finish(gateway)
    assert result.status == 502
    message = json.loads(result.body)["error"]["message"]
    assert "gpt-4o/openai/gpt-4o (upstream_unreachable)" in message and "backup-model/backup" in message
    assert record["error_type"] == "upstream_unreachable" and len(record["attempts"]) == 6


async def test_weights_are_respected(make_gateway: Callable[..., Any]) -> None:
    upstream = Upstream(lambda host, key, n: ok())
    gateway = await make_gateway(upstream, seed=42)
    for _ in range(400):
        await drive(gateway, "/v1/chat/completions", CHAT)
    await finish(gateway)
    hosts = Counter(host for host, _ in upstream.calls)
    assert 0.62 <= hosts["openai.test"] / 400 <= 0.78, hosts


async def test_a_stream_is_not_retried_once_bytes_reached_the_client(make_gateway: Callable[..., Any]) -> None:
    class Dropping(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'data: {"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
            raise httpx.RemoteProtocolError("peer closed connection")

    def handler(host: str, key: str, n: int) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Dropping())

    upstream = Upstream(handler)
    gateway = await make_gateway(upstream)
    body = b'{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    result = await drive(gateway, "/v1/chat/completions", body)
    [record] = await finish(gateway)
    assert result.status == 200 and b'"upstream_disconnected"' in result.body
    assert len(upstream.calls) == 1
    assert (record["outcome"], record["error_type"], len(record["attempts"])) == (
        "upstream_error",
        "upstream_disconnected",
        1,
    )


async def test_request_overrides_only_when_allowed(make_gateway: Callable[..., Any]) -> None:
    upstream = Upstream(lambda host, key, n: error(503) if host != "backup.test" else ok())
    headers = [(b"x-llm-obs-provider", b"azure"), (b"x-llm-obs-no-fallbacks", b"1")]
    locked = await make_gateway(upstream)
    assert (await drive(locked, "/v1/chat/completions", CHAT, headers=headers)).status == 200  # ignored: fell back
    await finish(locked)
    upstream.calls.clear()
    open_gateway = await make_gateway(upstream, routing={"allow_request_overrides": True, "backoff_base_s": 0.001})
    result = await drive(open_gateway, "/v1/chat/completions", CHAT, headers=headers)
    await finish(open_gateway)
    assert result.status == 503
    assert {host for host, _ in upstream.calls} == {"azure.test"}


async def test_metrics_and_spans_show_the_routing(make_gateway: Callable[..., Any]) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    def handler(host: str, key: str, n: int) -> httpx.Response:
        if host == "backup.test":
            return ok()
        return error(429) if key == "k-one" else error(401) if key == "k-two" else error(503)

    spans = InMemorySpanExporter()
    gateway = await make_gateway(Upstream(handler), spans=spans)
    assert (await drive(gateway, "/v1/chat/completions", CHAT)).status == 200
    await gateway.pipeline.flush()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://g") as client:
        metrics = (await client.get("/metrics")).text
    [record] = await finish(gateway)
    assert 'llm_obs_fallbacks_total{model="gpt-4o",operation="chat",provider="openai"} 1.0' in metrics
    assert (
        f'llm_obs_retries_total{{model="gpt-4o",operation="chat",provider="openai"}} {record["retries"]}.0' in metrics
    )
    # Three attempts on gpt-4o reach each of its three keys (an untried key first), then the fallback.
    assert sorted(trail(record)) == [("azure#0", 503), ("backup#0", 200), ("one", 429), ("two", 401)]
    assert 'llm_obs_key_cooldowns_total{key="one",provider="openai"} 1.0' in metrics
    assert 'llm_obs_key_state{key="one",provider="openai",state="cooling_down"} 1.0' in metrics
    assert 'llm_obs_key_state{key="two",provider="openai",state="rejected"} 1.0' in metrics
    # Every openai key is cooling down: its deployment is reported unhealthy.
    assert 'llm_obs_deployment_healthy{deployment="gpt-4o/openai/gpt-4o",provider="openai"} 0.0' in metrics
    assert 'llm_obs_deployment_healthy{deployment="backup-model/backup/backup-model",provider="backup"} 1.0' in metrics
    [llm] = [span for span in spans.get_finished_spans() if span.kind == SpanKind.CLIENT]
    attempts = [span for span in spans.get_finished_spans() if span.kind == SpanKind.INTERNAL]
    assert len(attempts) == len(record["attempts"]) >= 2
    assert all(span.parent is not None and span.parent.span_id == llm.context.span_id for span in attempts)
    assert [span.attributes["llm_obs.attempt.index"] for span in attempts if span.attributes] == list(
        range(len(attempts))
    )


async def test_timeout_override_cuts_a_slow_upstream(tmp_path: Path) -> None:
    import asyncio

    never = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await never.wait()  # answers only if the timeout did not cut it (the test then hangs and fails)
        return ok()

    routing = {"allow_request_overrides": True, "retries": 0}
    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        gateway = create_gateway(
            config(tmp_path, routing=routing, models={"gpt-4o": {"provider": "openai"}}), client=client
        )
        await gateway.startup()
        request = drive(gateway, "/v1/chat/completions", CHAT, headers=[(b"x-llm-obs-timeout", b"0.2")])
        result = await asyncio.wait_for(request, 30)
        await gateway.shutdown()
    assert result.status == 504


async def test_when_everything_is_cooling_down_the_soonest_to_recover_is_probed(
    make_gateway: Callable[..., Any],
) -> None:
    upstream = Upstream(lambda host, key, n: ok())
    gateway = await make_gateway(upstream)
    now = time.monotonic()
    routes = gateway.stack.router.routes
    openai, azure = routes.aliases["gpt-4o"].deployments
    [backup] = routes.aliases["backup-model"].deployments
    for index, key in enumerate(openai.provider.pool.keys):
        openai.provider.pool.cool_down(key, now + 60 + index, retry_after=False)
    azure.cooldown_until = now + 40  # the deployment cools down, its key does not
    backup.cooldown_until = now + 5  # a fallback recovering sooner still does not serve the model first
    result = await drive(gateway, "/v1/chat/completions", CHAT)
    [record] = await finish(gateway)
    assert result.status == 200
    assert trail(record) == [("azure#0", 200)], "the model's own deployment that recovers soonest"
    assert azure.cooldown_until == 0.0, "the probe worked: the deployment is healthy again"
