"""SQLiteLogStore: writes, every filter, ordering, lookup, URLs and schema."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from llm_obs_middleware.config.settings import LogStoreConfig
from llm_obs_middleware.errors import ConfigurationError
from llm_obs_middleware.exporters.logstore import SQLiteLogStore, open_log_store
from llm_obs_middleware.exporters.logstore.sqlite import SCHEMA_VERSION, parse_status, parse_time, sqlite_path
from llm_obs_middleware.records.schema import Cost, LLMRecord, Usage

from .conftest import START_NS, RecordFactory


def ids(rows: list[bytes]) -> list[str]:
    return [msgspec.json.decode(row, type=LLMRecord).request_id for row in rows]


@pytest.fixture
def records(record_factory: RecordFactory) -> list[LLMRecord]:
    # Start times are START_NS + n seconds, so n orders them in time.
    return [
        record_factory(n=1, session_id="s1", usage=Usage(input_tokens=10, output_tokens=2), cost=Cost(total_usd=0.1)),
        record_factory(
            n=2, provider="anthropic", requested_model="claude", response_model="claude-3-5", session_id="s1"
        ),
        record_factory(n=3, status=503, outcome="upstream_error", error_type="http.503"),
        record_factory(n=4, status=429, response_model=None, requested_model="gpt-4o"),
        record_factory(n=5, status=0, outcome="client_disconnected", session_id="s2"),
    ]


@pytest.fixture
async def store(tmp_path: Path, records: list[LLMRecord]) -> AsyncIterator[SQLiteLogStore]:
    store = SQLiteLogStore(f"sqlite:///{tmp_path}/nested/dir/logs.db")
    await store.start()
    # Write in shuffled order: the query, not the insertion, decides the order.
    await store.export([records[2], records[0], records[4], records[1], records[3]])
    yield store
    await store.close()


async def test_newest_first_and_exact_json(store: SQLiteLogStore, records: list[LLMRecord]) -> None:
    rows = await store.aquery()
    assert ids(rows) == ["req-5", "req-4", "req-3", "req-2", "req-1"]
    assert rows[-1] == msgspec.json.encode(records[0])
    assert ids(store.query(limit=2)) == ["req-5", "req-4"]


async def test_filters(store: SQLiteLogStore) -> None:
    assert ids(store.query(model="gpt-4o-mini-2024-07-18")) == ["req-5", "req-3", "req-1"]
    assert ids(store.query(model="gpt-4o-mini")) == ["req-5", "req-3", "req-1"]  # the requested model matches too
    assert ids(store.query(model="gpt-4o")) == ["req-4"]
    assert ids(store.query(provider="anthropic")) == ["req-2"]
    assert ids(store.query(status=503)) == ["req-3"]
    assert ids(store.query(status="5xx")) == ["req-3"]
    assert ids(store.query(status="4XX")) == ["req-4"]
    assert ids(store.query(status="2xx")) == ["req-2", "req-1"]
    assert ids(store.query(status="0")) == ["req-5"]
    assert ids(store.query(session_id="s1")) == ["req-2", "req-1"]
    assert ids(store.query(session_id="s1", provider="openai")) == ["req-1"]


async def test_time_filters(store: SQLiteLogStore) -> None:
    base = START_NS / 1e9
    assert ids(store.query(since=base + 4)) == ["req-5", "req-4"]
    assert ids(store.query(until=base + 2)) == ["req-1"]  # until is exclusive
    assert ids(store.query(since=str(base + 2), until=base + 4)) == ["req-3", "req-2"]
    # 2023-11-14T22:13:20Z is START_NS; ISO strings with and without offsets.
    assert ids(store.query(since="2023-11-14T22:13:23Z")) == ["req-5", "req-4", "req-3"]
    assert ids(store.query(since="2023-11-14T23:13:23+01:00")) == ["req-5", "req-4", "req-3"]
    assert ids(store.query(until="2023-11-14 22:13:22")) == ["req-1"]  # naive means UTC


async def test_get(store: SQLiteLogStore, records: list[LLMRecord]) -> None:
    assert await store.aget("req-2") == msgspec.json.encode(records[1])
    assert store.get("missing") is None


async def test_invalid_filters_name_the_parameter(store: SQLiteLogStore) -> None:
    with pytest.raises(ValueError, match=r"^status:"):
        store.query(status="5x")
    with pytest.raises(ValueError, match=r"^since:"):
        store.query(since="yesterday")
    with pytest.raises(ValueError, match=r"^until:"):
        store.query(until=float("nan"))


async def test_a_misspelt_filter_is_refused_not_ignored(store: SQLiteLogStore) -> None:
    # An unknown filter would otherwise widen the query to every record.
    with pytest.raises(TypeError, match="modle"):
        store.query(modle="gpt-4o")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="modle"):
        await store.aquery(modle="gpt-4o")  # type: ignore[call-arg]


async def test_columns_schema_and_wal(store: SQLiteLogStore) -> None:
    await store.close()
    conn = sqlite3.connect(store.path)
    try:
        row = conn.execute(
            "SELECT provider, model, requested_model, status, outcome, session_id, trace_id, cost_usd,"
            " input_tokens, output_tokens, duration_s, start_unix_nano, typeof(record)"
            " FROM llm_records WHERE request_id = 'req-1'"
        ).fetchone()
        assert row == (
            "openai",
            "gpt-4o-mini-2024-07-18",
            "gpt-4o-mini",
            200,
            "completed",
            "s1",
            f"{1:032x}",
            0.1,
            10,
            2,
            0.5,
            START_NS + 1_000_000_000,
            "text",
        )
        # Stored as TEXT so the sqlite3 shell's JSON functions work on it.
        assert conn.execute(
            "SELECT json_extract(record, '$.usage.input_tokens') FROM llm_records WHERE request_id='req-1'"
        ).fetchone() == (10,)
        assert conn.execute("SELECT model FROM llm_records WHERE request_id = 'req-4'").fetchone() == ("gpt-4o",)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {
            "llm_records_time",
            "llm_records_model",
            "llm_records_provider",
            "llm_records_status",
            "llm_records_session",
        } <= indexes
    finally:
        conn.close()


async def test_reopen_keeps_records_and_schema(store: SQLiteLogStore, record_factory: RecordFactory) -> None:
    await store.close()
    again = SQLiteLogStore(store.path)
    await again.export([record_factory(n=9)])
    assert ids(again.query(limit=2)) == ["req-9", "req-5"]
    await again.close()


async def test_a_stored_request_id_is_never_overwritten(record_factory: RecordFactory) -> None:
    store = SQLiteLogStore("sqlite:///:memory:")
    await store.export([record_factory(n=1, status=500)])
    await store.export([record_factory(n=1, status=200)])
    assert ids(store.query()) == ["req-1"]
    assert ids(store.query(status=500)) == ["req-1"]
    await store.export([])
    await store.close()


def test_failed_batch_is_rolled_back(record_factory: RecordFactory) -> None:
    store = SQLiteLogStore(":memory:")
    store.write([record_factory(n=1)])
    bad = record_factory(n=2, provider=None)  # violates NOT NULL after the first row of the batch
    with pytest.raises(sqlite3.IntegrityError):
        store.write([record_factory(n=3), bad])
    assert ids(store.query()) == ["req-1"]
    store.close_sync()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:///data/logs.db", "data/logs.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("plain/file.db", "plain/file.db"),
        (Path("/p/x.db"), "/p/x.db"),
    ],
)
def test_sqlite_path(url: str | Path, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "postgresql://db/x"])
def test_sqlite_path_rejects(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"exporters\.log_store\.url"):
        sqlite_path(url)


def test_open_log_store(tmp_path: Path) -> None:
    store = open_log_store(LogStoreConfig(url=f"sqlite:///{tmp_path}/x.db"))
    assert isinstance(store, SQLiteLogStore)
    assert store.path == f"{tmp_path}/x.db"
    assert store.retention_days == 30  # the config's default
    assert open_log_store(LogStoreConfig(url="sqlite:///:memory:", retention_days=None)).retention_days is None
    with pytest.raises(ConfigurationError, match=r"exporters\.log_store\.url.*'mysql'"):
        open_log_store(LogStoreConfig(url="mysql://user@db/logs"))
    with pytest.raises(ConfigurationError, match=r"exporters\.log_store\.url"):
        open_log_store(LogStoreConfig(url="logs.db"))


def test_parsers() -> None:
    assert parse_status("5xx") == (500, 600)
    assert parse_status(404) == (404, 405)
    assert parse_time(1.5) == 1_500_000_000
    assert parse_time("1970-01-01T00:00:02Z") == 2_000_000_000
    for bad in ("0xx", "abc", 1000, -1):
        with pytest.raises(ValueError):
            parse_status(bad)
    for bad_time in ("nope", -1.0, float("inf"), 1e20):
        with pytest.raises(ValueError):
            parse_time(bad_time)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(ConfigurationError, match="newer than this release"):
        SQLiteLogStore(path).query()


def test_model_filter_merges_served_and_requested_models(record_factory: RecordFactory) -> None:
    store = SQLiteLogStore(":memory:")
    store.write(
        [
            record_factory(n=1, requested_model="alias", response_model="gpt-x"),
            record_factory(n=2, requested_model="gpt-x", response_model="gpt-x"),
            record_factory(n=3, requested_model="alias", response_model="other"),
            record_factory(n=4, requested_model="gpt-x", response_model="gpt-x-2025", status=500),
            record_factory(n=5, requested_model="alias", response_model="gpt-x"),
        ]
    )
    assert ids(store.query(model="gpt-x")) == ["req-5", "req-4", "req-2", "req-1"]
    assert ids(store.query(model="gpt-x", limit=2)) == ["req-5", "req-4"]
    assert ids(store.query(model="gpt-x", status="2xx", limit=2)) == ["req-5", "req-2"]
    assert ids(store.query(model="alias", since=(START_NS + 2_000_000_000) / 1e9)) == ["req-5", "req-3"]
    store.close_sync()


def test_version_1_database_is_migrated_and_backfilled(tmp_path: Path, record_factory: RecordFactory) -> None:
    from llm_obs_middleware.exporters.logstore.sqlite import _MIGRATIONS

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(_MIGRATIONS[0])
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    old = record_factory(n=1, team="red", error_type="rate_limited")
    conn.execute(
        "INSERT INTO llm_records (request_id, start_unix_nano, provider, status, outcome, trace_id, duration_s, record)"
        " VALUES ('req-1', ?, 'openai', 200, 'completed', 't', 0.5, ?)",
        (old.timing.start_unix_nano, msgspec.json.encode(old).decode()),
    )
    conn.commit()
    conn.close()
    store = SQLiteLogStore(path)
    assert ids(store.query(team="red")) == ["req-1"]  # the new column was filled from the stored JSON
    store.close_sync()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT team, error_type FROM llm_records").fetchall() == [("red", "rate_limited")]
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
