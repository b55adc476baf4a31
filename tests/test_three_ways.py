"""The three ways in (add_middleware, standalone gateway, Mount), in-process and over loopback uvicorn."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Mount
from starlette.testclient import TestClient

from llm_obs_middleware import Config, LLMObservability, create_gateway
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer

from .conftest import config_dict

FAKE = FakeProviderConfig(prompt_tokens=30, completion_tokens=4, chunks=4)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


@pytest.fixture(params=["in_process", "loopback"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def reach(app: Any, mode: str) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A base URL and an HTTP client reaching ``app`` in-process or through a real uvicorn server."""
    if mode == "in_process":
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            yield "http://testserver", client
    else:
        with BackgroundServer(app) as server:
            async with httpx.AsyncClient() as client:
                yield server.url, client


async def chat_both_ways(base_url: str, http: httpx.AsyncClient) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="client-key", http_client=http, max_retries=0)
    plain = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert plain.choices[0].message.content
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == plain.choices[0].message.content


def assert_two_records(records: list[dict[str, Any]]) -> None:
    assert sorted(r["streamed"] for r in records) == [False, True]
    for record in records:
        assert (record["status"], record["outcome"]) == (200, "completed")
        assert (record["usage"]["input_tokens"], record["usage"]["output_tokens"]) == (30, 4)


def user_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> PlainTextResponse:
        return PlainTextResponse("hi there", headers={"x-app": "1"}, status_code=203)

    @app.get("/numbers")
    async def numbers() -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"{i}\n".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    @app.post("/v1/chat/completions")
    async def own_llm_endpoint() -> dict[str, Any]:
        return {
            "id": "chatcmpl-own",
            "object": "chat.completion",
            "model": "house-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "mine"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    return app


async def test_add_middleware_routes_the_prefix(fake: FakeProviderServer, mode: str, tmp_path: Path) -> None:
    app = user_app()
    config = Config.from_dict(config_dict(fake.url, tmp_path, route_prefix="/llm"))
    app.add_middleware(LLMObservability, config=config)
    async with reach(app, mode) as (base_url, http):
        await chat_both_ways(base_url + "/llm/v1", http)
        hello = await http.get(base_url + "/hello")
        assert (hello.status_code, hello.text, hello.headers["x-app"]) == (203, "hi there", "1")
        assert "x-request-id" not in hello.headers, "non-LLM responses are not touched"
        assert (await http.get(base_url + "/numbers")).text == "0\n1\n2\n"
        missing = await http.post(base_url + "/llm/v2/whatever", json={})
        assert missing.status_code == 404 and "no LLM endpoint" in missing.json()["error"]["message"]
    if mode == "in_process":  # uvicorn ran lifespan and flushed; in-process we flush ourselves
        await _stack(app).aclose()
    assert_two_records(_sqlite_records(tmp_path))


async def test_app_own_openai_endpoint_is_observed_without_routing(fake: FakeProviderServer, tmp_path: Path) -> None:
    app = user_app()
    config = Config.from_dict(config_dict(fake.url, tmp_path, route_prefix="/llm"))
    app.add_middleware(LLMObservability, config=config)
    before = len(fake.app.requests)
    async with reach(app, "in_process") as (base_url, http):
        client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="k", http_client=http, max_retries=0)
        answer = await client.chat.completions.create(model="house-model", messages=[{"role": "user", "content": "q"}])
        assert answer.choices[0].message.content == "mine"
    await _stack(app).aclose()
    assert len(fake.app.requests) == before, "the app's own endpoint is not routed"
    [record] = _sqlite_records(tmp_path)
    assert (record["api"], record["response_model"], record["usage"]["input_tokens"]) == (
        "openai.chat_completions",
        "house-model",
        3,
    )
    assert record["route"] is None


def test_websocket_and_lifespan_pass_through(fake: FakeProviderServer, tmp_path: Path) -> None:
    started: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append("up")
        yield
        started.append("down")

    app = user_app()
    app.router.lifespan_context = lifespan
    app.add_middleware(LLMObservability, config=Config.from_dict(config_dict(fake.url, tmp_path, route_prefix="/llm")))
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_text("ping")
            assert ws.receive_text() == "ping"
        assert client.post("/llm/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []}).status_code == 200
    assert started == ["up", "down"]
    # Lifespan shutdown flushed the record without any explicit close.
    assert len(_sqlite_records(tmp_path)) == 1


async def test_standalone_gateway(fake: FakeProviderServer, mode: str, tmp_path: Path) -> None:
    gateway = create_gateway(Config.from_dict(config_dict(fake.url, tmp_path)))
    if mode == "in_process":
        await gateway.startup()
    async with reach(gateway, mode) as (base_url, http):
        await chat_both_ways(base_url + "/v1", http)
        assert (await http.get(base_url + "/healthz")).json()["status"] == "ok"
        if mode == "in_process":
            await gateway.pipeline.flush()
        else:
            await _wait_for_logs(http, base_url, 2)
        metrics = (await http.get(base_url + "/metrics")).text
        assert (
            'llm_obs_tokens_total{estimated="false",model="gpt-4o-mini",operation="chat",provider="openai",'
            'type="input"} 60.0' in metrics
        )
        assert_two_records((await http.get(base_url + "/logs")).json()["data"])
    if mode == "in_process":
        await gateway.shutdown()


async def test_mounted_under_a_sub_path(fake: FakeProviderServer, mode: str, tmp_path: Path) -> None:
    gateway = create_gateway(Config.from_dict(config_dict(fake.url, tmp_path)))
    app = Starlette(routes=[Mount("/ai", app=gateway)], lifespan=gateway.lifespan)
    if mode == "in_process":
        await gateway.startup()
    async with reach(app, mode) as (base_url, http):
        await chat_both_ways(base_url + "/ai/v1", http)
        await _wait_for_logs(http, base_url + "/ai", 2)
        assert "llm_obs_requests_total" in (await http.get(base_url + "/ai/metrics")).text
        records = (await http.get(base_url + "/ai/logs")).json()["data"]
        assert_two_records(records)
        assert {r["path"] for r in records} == {"/ai/v1/chat/completions"}
    if mode == "in_process":
        await gateway.shutdown()


def _stack(app: FastAPI) -> LLMObservability:
    """The LLMObservability instance Starlette built from add_middleware."""
    layer: Any = app.middleware_stack
    while not isinstance(layer, LLMObservability):
        layer = layer.app
    return layer


def _sqlite_records(tmp_path: Path) -> list[dict[str, Any]]:
    import sqlite3

    with sqlite3.connect(tmp_path / "log.db") as db:
        return [json.loads(row[0]) for row in db.execute("SELECT record FROM llm_records")]


async def _wait_for_logs(http: httpx.AsyncClient, base_url: str, count: int) -> None:
    import asyncio

    for _ in range(200):
        if len((await http.get(base_url + "/logs")).json()["data"]) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} records reached /logs")
