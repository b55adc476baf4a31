"""Where records are stored by default: nowhere for a middleware (it writes no file it was not told to),
``llm_obs.db`` in the working directory for the gateway (``create_gateway``, ``llm-obs serve``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from llm_obs_middleware import Config, LLMObservability, create_gateway
from llm_obs_middleware.exporters.logstore import SQLiteLogStore
from llm_obs_middleware.gateway import cli, server_timeouts
from llm_obs_middleware.testing import create_fake_provider

from .conftest import UPSTREAM_KEY

PROVIDERS: dict[str, Any] = {
    "providers": {"openai": {"kind": "openai", "base_url": "http://fake.test/v1", "api_keys": [UPSTREAM_KEY]}},
    "models": {"gpt-4o-mini": {"provider": "openai"}},
}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _exported(registry: CollectorRegistry, sink: str) -> float:
    value = registry.get_sample_value("llm_obs_export_records_total", {"result": "exported", "sink": sink})
    return 0.0 if value is None else value


async def test_a_middleware_with_the_default_config_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = CollectorRegistry()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_fake_provider())) as upstream:
        config = Config.from_dict({**PROVIDERS, "route_prefix": "/llm"})
        stack = LLMObservability(Starlette(), config=config, client=upstream, registry=registry)
        assert stack.exporters.log_store is None
        async with stack.lifespan():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack), base_url="http://app") as client:
                reply = await client.post("/llm/v1/chat/completions", json=CHAT)
        assert reply.status_code == 200
    assert _exported(registry, "prometheus") == 1  # the record was exported, to the sinks configured
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # noqa: ASYNC240 (the test is over)


async def test_a_middleware_stores_records_where_the_config_says(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    config = Config.from_dict(
        {**PROVIDERS, "route_prefix": "/llm", "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'mine.db'}"}}}
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_fake_provider())) as upstream:
        stack = LLMObservability(Starlette(), config=config, client=upstream, registry=registry)
        async with stack.lifespan():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack), base_url="http://app") as client:
                assert (await client.post("/llm/v1/chat/completions", json=CHAT)).status_code == 200
    with sqlite3.connect(tmp_path / "mine.db") as db:
        assert db.execute("SELECT count(*) FROM llm_records").fetchone() == (1,)


async def test_the_gateway_keeps_its_sqlite_file_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_fake_provider())) as upstream:
        gateway = create_gateway(Config.from_dict(PROVIDERS), client=upstream, registry=CollectorRegistry())
        await gateway.startup()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
                assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        finally:
            await gateway.shutdown()
    with sqlite3.connect(tmp_path / "llm_obs.db") as db:
        assert db.execute("SELECT count(*) FROM llm_records").fetchone() == (1,)


def test_llm_obs_serve_without_log_store_config_stores_in_llm_obs_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    served: list[Any] = []

    def serve(config: uvicorn.Config) -> int:
        served.append(config.app)
        return 0

    monkeypatch.setattr(server_timeouts, "serve_uvicorn", serve)
    monkeypatch.setattr("logging.config.dictConfig", lambda config: None)
    (tmp_path / "gateway.json").write_text(
        '{"providers": {"openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}}}', encoding="utf-8"
    )
    assert cli.main(["serve", "--config", "gateway.json"]) == 0
    store = served[0].exporters.log_store
    assert isinstance(store, SQLiteLogStore)
    assert Path(store.path).resolve() == (tmp_path / "llm_obs.db").resolve()
