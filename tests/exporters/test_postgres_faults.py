"""PostgreSQL faults against the real server (issue 13, #9 and #10).

A database dropped and created again (a restore, a failover) gets every later record; a table
locked by another connection makes ``/logs`` answer an error in bounded time while requests, the
other sinks and, once the lock is gone, the log store itself carry on with nothing lost; shutdown
(and SIGTERM to ``llm-obs serve``) does not wait for the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.exporters.logstore.api import log_routes
from llm_obs_middleware.exporters.logstore.postgres import PostgresLogStore
from llm_obs_middleware.testing import BackgroundServer, FakeProviderServer, create_fake_provider

from ..conftest import GatewayKit, config_dict
from .conftest import POSTGRES_ADMIN_URL, _server_missing, require_psycopg

psycopg = require_psycopg()

MakeKit = Callable[..., Awaitable[GatewayKit]]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
# Short retries and timeouts so faults show within seconds; the deadlines below are generous.
FAST_QUEUE = {"flush_interval_s": 0.02, "retry_initial_backoff_s": 0.05, "retry_max_backoff_s": 0.3}
DEADLINE_S = 30.0


class ThrowawayDatabase:
    """A database of its own (the tests drop it), dropped for good at the end."""

    def __init__(self) -> None:
        self.name = f"llm_obs_fault_{os.getpid()}_{secrets.token_hex(4)}"
        self.url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"

    def admin(self, *statements: str) -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            for statement in statements:
                conn.execute(statement)

    def execute(self, statement: str) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(statement)

    def drop_and_create(self) -> None:
        """What a restore or a failover to an empty server does: every connection cut, every table gone."""
        self.admin(f"DROP DATABASE {self.name} WITH (FORCE)", f"CREATE DATABASE {self.name}")


@pytest.fixture
def database() -> Iterator[ThrowawayDatabase]:
    db = ThrowawayDatabase()
    try:
        db.admin(f"CREATE DATABASE {db.name}")
    except psycopg.OperationalError as exc:
        _server_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}", str(exc).strip())
    try:
        yield db
    finally:
        db.admin(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")


async def chat(client: httpx.AsyncClient) -> str:
    reply = await client.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 200
    return reply.headers["x-request-id"]


@pytest.mark.parametrize("loss", ["database", "table"])
async def test_a_database_that_comes_back_empty_gets_every_later_record(
    make_kit: MakeKit, database: ThrowawayDatabase, loss: str
) -> None:
    kit = await make_kit(exporters={"log_store": {"url": database.url}}, queue=FAST_QUEUE)
    async with kit.client() as client:
        for _ in range(3):
            await chat(client)
        await kit.gateway.pipeline.flush()
        assert len((await client.get("/logs")).json()["data"]) == 3
        if loss == "database":
            await asyncio.to_thread(database.drop_and_create)
        else:
            await asyncio.to_thread(database.execute, "DROP TABLE llm_records")
        later = [await chat(client) for _ in range(20)]
        async with asyncio.timeout(DEADLINE_S):  # before the fix: never, every write failed until a restart
            await kit.gateway.pipeline.flush()
        logs = (await client.get("/logs", params={"limit": 100})).json()["data"]
    assert sorted(record["request_id"] for record in logs) == sorted(later)


def _lock_table(url: str) -> Any:
    """A second connection holding ``llm_records`` in ACCESS EXCLUSIVE mode until it is closed."""
    locker = psycopg.connect(url)
    locker.execute("LOCK TABLE llm_records IN ACCESS EXCLUSIVE MODE")
    return locker


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(DEADLINE_S):
        # Polls state in another thread's server, a file and a database: no event to wait on.
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_locked_table_stalls_neither_logs_nor_requests_nor_other_sinks(
    database: ThrowawayDatabase, tmp_path: Path
) -> None:
    jsonl = tmp_path / "records.jsonl"
    log_store = {"url": database.url, "timeout_s": 1, "read_pool_size": 2}
    with FakeProviderServer() as fake:
        exporters = {"log_store": log_store, "jsonl": {"path": str(jsonl)}}
        data = config_dict(fake.url, exporters=exporters, queue=FAST_QUEUE)
        gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
        with BackgroundServer(gateway) as server:
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=DEADLINE_S * 2) as client:

                async def stored() -> set[str]:
                    return {r["request_id"] for r in (await client.get("/logs", params={"limit": 1000})).json()["data"]}

                async def in_jsonl() -> set[str]:
                    lines = jsonl.read_bytes().splitlines() if jsonl.exists() else []
                    return {msgspec.json.decode(line)["request_id"] for line in lines}

                first = await chat(client)

                async def first_stored() -> bool:
                    return first in await stored()

                await _until(first_stored)  # the table exists and the store is idle
                locker = await asyncio.to_thread(_lock_table, database.url)
                try:
                    # More /logs calls than the default thread pool has threads: each gets a clear error.
                    async with asyncio.timeout(DEADLINE_S):
                        answers = await asyncio.gather(*(client.get("/logs") for _ in range(24)))
                    assert {answer.status_code for answer in answers} <= {503, 504}
                    assert {answer.json()["error"]["type"] for answer in answers} <= {
                        "log_store_timeout",
                        "log_store_unavailable",
                    }
                    # Requests go on, and so does the JSONL sink, while the log store cannot write.
                    during = set(await asyncio.gather(*(chat(client) for _ in range(10))))

                    async def all_in_jsonl() -> bool:
                        return during <= await in_jsonl()

                    await _until(all_in_jsonl)
                finally:
                    await asyncio.to_thread(locker.close)

                async def all_stored() -> bool:  # the lock is gone: the log store catches up, nothing lost
                    return {first, *during} <= await stored()

                await _until(all_stored)


async def test_shutdown_does_not_wait_for_a_locked_table(database: ThrowawayDatabase, tmp_path: Path) -> None:
    log_store = {"url": database.url, "timeout_s": 1}
    queue = {**FAST_QUEUE, "shutdown_grace_s": 0.5}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_fake_provider())) as upstream:
        data = config_dict(exporters={"log_store": log_store}, queue=queue)
        gateway = create_gateway(Config.from_dict(data), client=upstream, registry=CollectorRegistry())
        await gateway.startup()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
            await chat(client)
            await gateway.pipeline.flush()
            locker = await asyncio.to_thread(_lock_table, database.url)
            try:
                for _ in range(5):
                    await chat(client)  # these wait for the lock in the log store's writer
                async with asyncio.timeout(DEADLINE_S):  # before the fix: until the lock ended
                    await gateway.shutdown()
            finally:
                await asyncio.to_thread(locker.close)
    assert gateway.pipeline.stats.exported["log_store"] == 1  # the others were still waiting for the lock


def test_sigterm_ends_llm_obs_serve_while_the_table_is_locked(database: ThrowawayDatabase, tmp_path: Path) -> None:
    from ..test_processes import BIN, env, free_port, wait_healthy

    port, base = free_port(), ""
    with FakeProviderServer() as fake:
        config = tmp_path / "gateway.yaml"
        config.write_text(
            f"""
providers:
  openai: {{kind: openai, base_url: "{fake.url}", api_keys: ["${{TEST_UPSTREAM_KEY}}"]}}
models:
  gpt-4o-mini: {{provider: openai}}
exporters:
  log_store: {{url: "{database.url}", timeout_s: 1}}
queue: {{shutdown_grace_s: 1, flush_interval_s: 0.02}}
"""
        )
        command = [str(BIN / "llm-obs"), "serve", "--config", str(config), "--port", str(port), "--log-level", "error"]
        process = subprocess.Popen(command, env=env(), stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, process)
            first = httpx.post(base + "/v1/chat/completions", json=CHAT).headers["x-request-id"]
            deadline = time.monotonic() + DEADLINE_S
            while first not in httpx.get(base + "/logs").text:  # the table exists, the store is idle
                assert time.monotonic() < deadline
                time.sleep(0.05)
            locker = _lock_table(database.url)
            try:
                with ThreadPoolExecutor(16) as pool:
                    # /logs calls and records waiting on the lock when the process is told to stop.
                    reads = [pool.submit(httpx.get, base + "/logs", timeout=DEADLINE_S * 2) for _ in range(12)]
                    assert httpx.post(base + "/v1/chat/completions", json=CHAT).status_code == 200
                    process.send_signal(signal.SIGTERM)
                    # uvicorn re-raises the signal once shut down. Before the fix: no exit until the lock ended.
                    assert process.wait(timeout=DEADLINE_S) in (0, -signal.SIGTERM)
                    for read in reads:  # each answered an error, or was cut by the exit; none hung
                        with contextlib.suppress(httpx.TransportError):
                            assert read.result().status_code in (503, 504)
            finally:
                locker.close()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_logs_answers_a_json_error_when_the_database_cannot_be_reached() -> None:
    store = PostgresLogStore("postgresql://u:hunter2@127.0.0.1:1/db", connect_timeout=1, timeout_s=1)
    app = Starlette(routes=log_routes(store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://logs.test") as client:
        async with asyncio.timeout(DEADLINE_S):
            replies = [await client.get(path) for path in ("/logs", "/logs/stats", "/logs/x", "/sessions/s")]
    await store.close()
    for reply in replies:
        assert reply.status_code in (503, 504)
        assert reply.json()["error"]["type"] in ("log_store_unavailable", "log_store_timeout")
        assert "hunter2" not in reply.text
