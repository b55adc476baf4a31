"""More concurrent streams than upstream connections (issue 13, finding 4).

Waiting for a free pool connection used to count as a connect timeout of the provider: the
deployment cooled down and unrelated requests got 503. Now the requests over capacity are shed
with a 503 naming the cause and ``Retry-After``; no deployment or key is blamed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.asgi.aliases import Message, Receive, Scope, Send
from llm_obs_middleware.testing import BackgroundServer

POOL = 4
STREAMS = 12
STREAM = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def chunk(content: str) -> bytes:
    event = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o"}
    event["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}]  # type: ignore[assignment]
    return b"data: " + json.dumps(event).encode() + b"\n\n"


class HeldStreams:
    """An upstream whose streams send one chunk, then hold until :attr:`release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.started += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": chunk("a"), "more_body": True})
        await asyncio.to_thread(self.release.wait)  # set by the test, on another thread
        await send({"type": "http.response.body", "body": chunk("b") + b"data: [DONE]\n\n"})


class ClosingClient:
    """Closes the upstream client we gave the gateway (which it does not own) on its own loop at shutdown."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def closing_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.client.aclose()
            await send(message)

        await self.app(scope, receive, closing_send if scope["type"] == "lifespan" else send)


@pytest.fixture
def upstream() -> Iterator[tuple[HeldStreams, str]]:
    held = HeldStreams()
    with BackgroundServer(held) as server:
        yield held, server.url + "/v1"
    held.release.set()


@pytest.mark.parametrize("pool", ["configured", "own_client"])
async def test_streams_over_the_pool_size_are_shed_and_no_deployment_is_blamed(
    upstream: tuple[HeldStreams, str], tmp_path: Path, pool: str
) -> None:
    held, base_url = upstream
    routing: dict[str, Any] = {"retries": 2, "backoff_base_s": 0.001, "backoff_cap_s": 0.002}
    client = None
    if pool == "configured":
        routing.update(max_connections=POOL, pool_wait_s=0.05)
    else:  # a client of the caller's own with a small pool: its wait for a connection is the gateway's capacity
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=POOL))
    config = Config.from_dict(
        {
            "providers": {
                "openai": {"kind": "openai", "base_url": base_url, "api_keys": ["sk-0"], "timeout": {"connect": 0.3}}
            },
            "models": {"gpt-4o": {"provider": "openai"}},
            "routing": routing,
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    gateway = create_gateway(config, client=client)
    with BackgroundServer(gateway if client is None else ClosingClient(gateway, client)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:

            async def stream() -> tuple[int, dict[str, str], bytes]:
                async with http.stream("POST", "/v1/chat/completions", json=STREAM) as response:
                    return response.status_code, dict(response.headers), await response.aread()

            tasks = [asyncio.create_task(stream()) for _ in range(STREAMS)]
            deadline = time.monotonic() + 20
            while sum(task.done() for task in tasks) < STREAMS - POOL:
                assert time.monotonic() < deadline, "the requests over capacity were not answered"
                await asyncio.sleep(0.01)
            shed = [task.result() for task in tasks if task.done()]
            started = held.started
            health = (await http.get("/health/deployments")).json()
            held.release.set()
            results = await asyncio.gather(*tasks)
            later = await http.post("/v1/chat/completions", json=STREAM)
            deadline = time.monotonic() + 20
            while len(records := (await http.get("/logs", params={"limit": 100})).json()["data"]) < STREAMS + 1:
                assert time.monotonic() < deadline, records
                await asyncio.sleep(0.02)

    assert started == POOL
    assert len(shed) == STREAMS - POOL
    for status, headers, body in shed:
        assert status == 503 and headers["retry-after"] == "1"
        error = json.loads(body)["error"]
        size = POOL if pool == "configured" else 4096  # httpx keeps a client's pool size private
        assert error["code"] == "gateway_overloaded" and f"all {size} upstream connections" in error["message"]
    served = [result for result in results if result[0] == 200]
    assert len(served) == POOL and all(body.endswith(b"data: [DONE]\n\n") for _, _, body in served)
    [deployment] = health["deployments"]
    assert deployment["healthy"] is True and deployment["recent_error_rate"] == 0.0
    assert [key["state"] for key in deployment["keys"]] == ["healthy"]
    assert later.status_code == 200, later.text
    outcomes = sorted((record["outcome"], record["error_type"]) for record in records)
    assert outcomes == [("completed", None)] * (POOL + 1) + [("rejected", "gateway_overloaded")] * (STREAMS - POOL)
