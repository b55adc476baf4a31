"""Record ids are ours; a client's ``x-request-id`` is kept beside them, searchable (issue 13, #7)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from llm_obs_middleware.exporters.logstore import SQLiteLogStore
from llm_obs_middleware.exporters.logstore.postgres import SCHEMA_VERSION, VERSION_TABLE, PostgresLogStore
from llm_obs_middleware.records.schema import LLMRecord

from ..conftest import GatewayKit
from .conftest import RecordFactory

MakeKit = Callable[..., Awaitable[GatewayKit]]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(params=["sqlite", "postgres"])
def log_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ids.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_a_client_request_id_never_replaces_another_clients_record(make_kit: MakeKit, log_store_url: str) -> None:
    kit = await make_kit(exporters={"log_store": {"url": log_store_url}})
    async with kit.client() as client:
        # Two tenants pick the same x-request-id (by accident or on purpose); a third client sends none.
        replies = [
            await client.post(
                "/v1/chat/completions",
                json=CHAT,
                headers={"x-request-id": "shared-id", "x-session-id": f"session-{tenant}"},
            )
            for tenant in ("a", "b")
        ]
        plain = await client.post("/v1/chat/completions", json=CHAT)
        assert [reply.status_code for reply in (*replies, plain)] == [200, 200, 200]
        await kit.gateway.pipeline.flush()
        logs = (await client.get("/logs")).json()["data"]
        found = (await client.get("/logs", params={"client_request_id": "shared-id"})).json()["data"]
        sessions = [(await client.get(f"/sessions/session-{tenant}")).status_code for tenant in ("a", "b")]
        by_id = [(await client.get(f"/logs/{record['request_id']}")).json() for record in logs]
    # Every request has its own record, under an id of ours; the client's id is kept beside it.
    assert len(logs) == 3
    assert len({record["request_id"] for record in logs}) == 3
    assert "shared-id" not in {record["request_id"] for record in logs}
    assert sorted(record["session_id"] for record in found) == ["session-a", "session-b"]
    assert {record["client_request_id"] for record in found} == {"shared-id"}
    assert sessions == [200, 200]
    assert by_id == logs
    # The client still gets back the id it sent; a client that sent none gets the record's id.
    assert [reply.headers["x-request-id"] for reply in replies] == ["shared-id", "shared-id"]
    [own] = [record for record in logs if record["client_request_id"] is None]
    assert plain.headers["x-request-id"] == own["request_id"]
    # Prometheus and /logs agree.
    labels = {"provider": "openai", "model": "gpt-4o-mini", "operation": "chat", "status_class": "2xx"}
    assert kit.metric("llm_obs_requests_total", **labels) == len(logs)


def test_a_version_2_sqlite_store_gains_the_client_id_column(tmp_path: Path, record_factory: RecordFactory) -> None:
    from llm_obs_middleware.exporters.logstore.sqlite import _MIGRATIONS

    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    for migration in _MIGRATIONS[:2]:
        conn.executescript(migration)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (2)")
    old = record_factory(n=1)
    columns = "request_id, start_unix_nano, provider, status, outcome, trace_id, duration_s, record"
    conn.execute(
        f"INSERT INTO llm_records ({columns}) VALUES ('req-1', ?, 'openai', 200, 'completed', 't', 0.5, ?)",
        (old.timing.start_unix_nano, msgspec.json.encode(old).decode()),
    )
    conn.commit()
    conn.close()
    store = SQLiteLogStore(path)
    store.write([record_factory(n=2, client_request_id="mine")])
    assert _ids(store.query()) == ["req-2", "req-1"]  # the old record is still there
    assert _ids(store.query(client_request_id="mine")) == ["req-2"]
    store.close_sync()


async def test_a_version_1_postgres_store_gains_the_client_id_column(
    postgres_url: str, record_factory: RecordFactory
) -> None:
    import psycopg

    from llm_obs_middleware.exporters.logstore.postgres import _MIGRATIONS

    old = record_factory(n=1)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in _MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute(f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
        conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (1)")
        conn.execute(
            "INSERT INTO llm_records (request_id, start_unix_nano, provider, status, outcome, trace_id, duration_s,"
            " record) VALUES ('req-1', %s, 'openai', 200, 'completed', 't', 0.5, %s)",
            (old.timing.start_unix_nano, msgspec.json.encode(old).decode()),
        )
    store = PostgresLogStore(postgres_url)
    await store.export([record_factory(n=2, client_request_id="mine")])
    assert _ids(await store.aquery()) == ["req-2", "req-1"]
    assert _ids(await store.aquery(client_request_id="mine")) == ["req-2"]
    await store.close()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall() == [(SCHEMA_VERSION,)]


def _ids(rows: list[Any]) -> list[str]:
    return [msgspec.json.decode(row, type=LLMRecord).request_id for row in rows]
