"""Strategies chosen in config (deployments: latency, least_busy; keys: round_robin, least_busy) and
per-request headers (force a provider, no fallbacks, a timeout), honoured only when config allows."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
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
Handler = Callable[[httpx.Request], Any]


def ok() -> httpx.Response:
    return httpx.Response(200, json=OK_BODY)


def config(tmp_path: Path, strategy: str = "weighted", **overrides: Any) -> Config:
    data: dict[str, Any] = {
        "providers": {
            "openai": {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": ["k-o1", "k-o2", "k-o3"]},
            "azure": {"kind": "openai_compatible", "base_url": "http://azure.test/v1", "api_keys": ["k-azure"]},
            "backup": {"kind": "openai_compatible", "base_url": "http://backup.test/v1", "api_keys": ["k-backup"]},
        },
        "models": {
            "gpt-4o": {
                "deployments": [
                    {"provider": "openai", "model": "gpt-4o", "weight": 70},
                    {"provider": "azure", "model": "gpt-4o", "weight": 30},
                ],
                "strategy": strategy,
                "fallbacks": ["backup-model"],
            },
            "backup-model": {"provider": "backup"},
        },
        "routing": {"retries": 2, "backoff_base_s": 0.001, "backoff_cap_s": 0.002},
        "exporters": {"log_store": {"enabled": False}},
    }
    data.update(overrides)
    return Config.from_dict(data)


class Kit:
    def __init__(self, gateway: Gateway, calls: list[tuple[str, str]]) -> None:
        self.gateway = gateway
        self.calls = calls

    async def chat(self, headers: list[tuple[bytes, bytes]] | None = None) -> int:
        return (await drive(self.gateway, "/v1/chat/completions", CHAT, headers=headers)).status

    def hosts(self) -> Counter[str]:
        return Counter(host for host, _ in self.calls)


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[Gateway, httpx.AsyncClient]] = []

    async def factory(handler: Handler, strategy: str = "weighted", **overrides: Any) -> Kit:
        calls: list[tuple[str, str]] = []

        async def upstream(request: httpx.Request) -> httpx.Response:
            calls.append((request.url.host, request.headers["authorization"].removeprefix("Bearer ")))
            outcome = handler(request)
            response = await outcome if asyncio.iscoroutine(outcome) else outcome
            assert isinstance(response, httpx.Response)
            return response

        client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
        gateway = create_gateway(config(tmp_path, strategy, **overrides), client=client)
        gateway.stack.router.rng.seed(5)
        await gateway.startup()
        made.append((gateway, client))
        return Kit(gateway, calls)

    yield factory
    for gateway, client in made:
        await gateway.shutdown()
        await client.aclose()


async def test_latency_strategy_learns_the_faster_deployment(make: Callable[..., Any]) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "openai.test":
            await asyncio.sleep(0.05)
        return ok()

    kit = await make(handler, strategy="latency")
    assert [await kit.chat() for _ in range(12)] == [200] * 12
    # Each deployment is tried once to learn its latency; then the fast one takes everything,
    # although the slow one has the larger weight.
    assert kit.hosts() == {"openai.test": 1, "azure.test": 11}


async def test_least_busy_strategy_spreads_concurrent_requests(make: Callable[..., Any]) -> None:
    arrived = asyncio.Event()
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if len(seen) == 6:
            arrived.set()
        await asyncio.wait_for(arrived.wait(), 5)
        return ok()

    kit = await make(handler, strategy="least_busy")
    assert await asyncio.gather(*(kit.chat() for _ in range(6))) == [200] * 6
    # Weights 70/30 play no part: each new request goes where fewer are in flight.
    assert seen == ["openai.test", "azure.test"] * 3


async def test_round_robin_keys_take_turns(make: Callable[..., Any]) -> None:
    openai = {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": ["k-o1", "k-o2", "k-o3"]}
    kit = await make(
        lambda request: ok(),
        providers={"openai": {**openai, "key_strategy": "round_robin"}},
        models={"gpt-4o": {"provider": "openai"}},
    )
    for _ in range(9):
        await kit.chat()
    keys = [key for _, key in kit.calls]
    assert Counter(keys) == {"k-o1": 3, "k-o2": 3, "k-o3": 3}
    assert all(keys[i] != keys[i + 1] for i in range(8)) and keys[:3] == keys[3:6] == keys[6:]


async def test_least_busy_keys_spread_concurrent_requests(make: Callable[..., Any]) -> None:
    arrived = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if len(kit.calls) == 3:
            arrived.set()
        await asyncio.wait_for(arrived.wait(), 5)
        return ok()

    openai = {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": ["k-o1", "k-o2", "k-o3"]}
    kit = await make(
        handler,
        providers={"openai": {**openai, "key_strategy": "least_busy"}},
        models={"gpt-4o": {"provider": "openai"}},
    )
    assert await asyncio.gather(*(kit.chat() for _ in range(3))) == [200] * 3
    assert sorted(key for _, key in kit.calls) == ["k-o1", "k-o2", "k-o3"]


NO_FALLBACKS = [(b"x-llm-obs-no-fallbacks", b"1")]
FORCE_AZURE = [(b"x-llm-obs-provider", b"azure")]


def down_but_backup(request: httpx.Request) -> httpx.Response:
    if request.url.host == "backup.test":
        return ok()
    return httpx.Response(503, json={"error": {"message": "down", "type": "server_error"}})


async def test_no_fallbacks_header_when_allowed(make: Callable[..., Any]) -> None:
    kit = await make(down_but_backup, routing={"allow_request_overrides": True, "backoff_base_s": 0.001})
    assert await kit.chat(NO_FALLBACKS) == 503
    assert "backup.test" not in kit.hosts() and kit.hosts().total() == 3
    assert await kit.chat() == 200, "without the header the fallback serves"
    assert kit.hosts()["backup.test"] == 1


async def test_force_provider_header_when_allowed(make: Callable[..., Any]) -> None:
    kit = await make(lambda request: ok(), routing={"allow_request_overrides": True})
    assert [await kit.chat(FORCE_AZURE) for _ in range(20)] == [200] * 20
    assert kit.hosts() == {"azure.test": 20}
    status = await kit.chat([(b"x-llm-obs-provider", b"nowhere")])
    assert status == 400, "a provider that does not serve the model is the client's mistake"


async def test_override_headers_are_ignored_unless_allowed(make: Callable[..., Any]) -> None:
    async def slowish(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return down_but_backup(request)

    kit = await make(slowish)
    started = time.perf_counter()
    headers = [*NO_FALLBACKS, *FORCE_AZURE, (b"x-llm-obs-timeout", b"0.05")]
    assert await kit.chat(headers) == 200, "the fallback served: no-fallbacks and the timeout were ignored"
    assert time.perf_counter() - started >= 0.3
    assert kit.hosts()["backup.test"] == 1 and kit.hosts()["openai.test"] >= 1, "the provider was not forced"


async def test_timeout_header_when_allowed_cuts_every_attempt(make: Callable[..., Any]) -> None:
    never = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await never.wait()  # every attempt hangs until its deadline cuts it
        return ok()

    kit = await make(slow, routing={"allow_request_overrides": True, "backoff_base_s": 0.001})
    result = await asyncio.wait_for(
        drive(kit.gateway, "/v1/chat/completions", CHAT, headers=[(b"x-llm-obs-timeout", b"0.2")]), 30
    )
    assert result.status == 504
    assert json.loads(result.body)["error"]["code"] == "upstream_timeout"
