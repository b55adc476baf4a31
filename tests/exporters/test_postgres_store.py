"""PostgresLogStore specifics against a real server: schema, migrations, reconnects, the extra, the gateway."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.config.settings import LogStoreConfig
from llm_obs_middleware.errors import ConfigurationError, MissingDependencyError
from llm_obs_middleware.exporters.logstore import open_log_store
from llm_obs_middleware.exporters.logstore.postgres import SCHEMA_VERSION, VERSION_TABLE, PostgresLogStore, redact_url
from llm_obs_middleware.records.schema import LLMRecord, Usage
from llm_obs_middleware.testing import create_fake_provider

from ..conftest import config_dict
from .conftest import RecordFactory, require_psycopg

psycopg = require_psycopg()


def ids(rows: list[bytes]) -> list[str]:
    return [msgspec.json.decode(row, type=LLMRecord).request_id for row in rows]


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


async def test_schema_indexes_and_json_column(postgres_url: str, record_factory: RecordFactory) -> None:
    store = PostgresLogStore(postgres_url)
    record = record_factory(n=1, team="red", metadata={"x-tenant-id": "acme"}, usage=Usage(input_tokens=7))
    await store.export([record])
    await store.close()
    assert sql(postgres_url, f"SELECT version FROM {VERSION_TABLE}") == [(SCHEMA_VERSION,)]
    indexes = {row[0] for row in sql(postgres_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'llm_records'")}
    assert {
        "llm_records_time",
        "llm_records_model",
        "llm_records_provider",
        "llm_records_status",
        "llm_records_session",
        "llm_records_team",
    } <= indexes
    # The JSON column keeps msgspec's bytes exactly, and psql's JSON operators work on it.
    [(text, tenant, tokens, team)] = sql(
        postgres_url,
        "SELECT record::text, record->'metadata'->>'x-tenant-id', (record->'usage'->>'input_tokens')::int, team"
        " FROM llm_records",
    )
    assert text.encode() == msgspec.json.encode(record)
    assert (tenant, tokens, team) == ("acme", 7, "red")


async def test_instances_starting_together_migrate_once(postgres_url: str, record_factory: RecordFactory) -> None:
    stores = [PostgresLogStore(postgres_url) for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def start(store: PostgresLogStore) -> None:
        barrier.wait()
        try:
            store._connect()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sql(postgres_url, f"SELECT version FROM {VERSION_TABLE}") == [(SCHEMA_VERSION,)]
    for n, store in enumerate(stores):
        store.write([record_factory(n=n)])
    assert len(stores[0].query()) == len(stores)  # several instances share one log
    for store in stores:
        store.close_sync()


def test_newer_schema_is_refused(postgres_url: str) -> None:
    sql(postgres_url, f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
    sql(postgres_url, f"INSERT INTO {VERSION_TABLE} VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigurationError, match="newer than this release"):
        PostgresLogStore(postgres_url).query()


async def test_reconnects_after_the_server_drops_the_connection(
    postgres_url: str, record_factory: RecordFactory
) -> None:
    store = PostgresLogStore(postgres_url)
    await store.export([record_factory(n=1)])
    assert ids(store.query()) == ["req-1"]
    # What a server restart does to open connections.
    sql(
        postgres_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'llm-obs'"
        " AND pid <> pg_backend_pid()",
    )
    await store.export([record_factory(n=2)])  # noticed on use; written on a new connection
    assert ids(store.query()) == ["req-2", "req-1"]  # the reader reconnects too
    await store.close()


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an environment without the extra looks like
    with pytest.raises(MissingDependencyError, match=r"'postgres' extra.*llm-obs-middleware\[postgres\]"):
        open_log_store(LogStoreConfig(url="postgresql://postgres@127.0.0.1:5432/llm_obs"))


def test_url_handling() -> None:
    store = open_log_store(LogStoreConfig(url="postgres://u:hunter2@db.internal:5432/logs", retention_days=7))
    assert isinstance(store, PostgresLogStore)
    assert store.retention_days == 7
    assert "hunter2" not in repr(store)
    assert redact_url("postgresql://u:hunter2@h/db") == "postgresql://u:***@h/db"
    assert redact_url("postgresql://postgres@127.0.0.1:5432/llm_obs") == "postgresql://postgres@127.0.0.1:5432/llm_obs"
    with pytest.raises(ConfigurationError, match=r"exporters\.log_store\.url.*\*\*\*"):
        PostgresLogStore("postgresql://u:hunter2@h/db?no_such_option=1").query()


def test_unreachable_server_is_an_error_without_the_password() -> None:
    store = PostgresLogStore("postgresql://u:hunter2@127.0.0.1:1/db", connect_timeout=1)
    with pytest.raises(psycopg.OperationalError) as caught:
        store.query()
    assert "hunter2" not in str(caught.value)


async def test_gateway_logs_to_postgres(postgres_url: str, tmp_path: Path) -> None:
    data = config_dict()
    data["exporters"]["log_store"] = {"url": postgres_url, "retention_days": 30}
    fake = create_fake_provider()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        gateway = create_gateway(Config.from_dict(data), client=upstream)
        await gateway.startup()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
            for n in range(3):
                reply = await client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi {n}"}]},
                    headers={"x-session-id": "conv-1"},
                )
                assert reply.status_code == 200
            await gateway.pipeline.flush()
            logs = (await client.get("/logs")).json()["data"]
            session = (await client.get("/sessions/conv-1")).json()
            stats = (await client.get("/logs/stats", params={"group_by": "model"})).json()
        await gateway.shutdown()
    assert len(logs) == 3
    assert [r["request_id"] for r in session["data"]] == [r["request_id"] for r in reversed(logs)]
    assert stats["totals"]["requests"] == 3
    assert stats["totals"]["input_tokens"] == sum(r["usage"]["input_tokens"] for r in logs)
    assert [g["key"] for g in stats["groups"]] == ["gpt-4o-mini"]
