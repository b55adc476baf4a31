"""What SQLite and PostgreSQL log stores both do, run against each: a real file and a real server."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from llm_obs_middleware.errors import PermanentExportError
from llm_obs_middleware.exporters.logstore import SQLiteLogStore, SQLLogStore
from llm_obs_middleware.records.schema import Cost, LLMRecord, Usage

from .conftest import START_NS, RecordFactory

BASE = START_NS / 1e9


def ids(rows: list[bytes]) -> list[str]:
    return [msgspec.json.decode(row, type=LLMRecord).request_id for row in rows]


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLLogStore]:
    store: SQLLogStore
    if request.param == "sqlite":
        store = SQLiteLogStore(tmp_path / "logs.db")
    else:
        from llm_obs_middleware.exporters.logstore.postgres import PostgresLogStore

        store = PostgresLogStore(request.getfixturevalue("postgres_url"))
    await store.start()
    yield store
    await store.close()


@pytest.fixture
def records(record_factory: RecordFactory) -> list[LLMRecord]:
    # Start times are START_NS + n seconds, so n orders them in time.
    return [
        record_factory(
            n=1, session_id="s1", team="red", usage=Usage(input_tokens=10, output_tokens=2), cost=Cost(total_usd=0.1)
        ),
        record_factory(
            n=2, provider="anthropic", requested_model="claude", response_model="claude-3-5", session_id="s1"
        ),
        record_factory(n=3, status=503, outcome="upstream_error", error_type="http.503", team="blue"),
        record_factory(n=4, status=429, response_model=None, requested_model="gpt-4o", team="red"),
        record_factory(n=5, status=0, outcome="client_disconnected", session_id="s2"),
    ]


@pytest.fixture
async def store(empty_store: SQLLogStore, records: list[LLMRecord]) -> SQLLogStore:
    # Written in shuffled order and two batches: the query, not the insertion, decides the order.
    await empty_store.export([records[2], records[0], records[4]])
    await empty_store.export([records[1], records[3]])
    return empty_store


async def test_newest_first_and_exact_json(store: SQLLogStore, records: list[LLMRecord]) -> None:
    rows = await store.aquery()
    assert ids(rows) == ["req-5", "req-4", "req-3", "req-2", "req-1"]
    assert rows[-1] == msgspec.json.encode(records[0])  # byte for byte what msgspec wrote
    assert ids(await store.aquery(limit=2)) == ["req-5", "req-4"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"model": "gpt-4o-mini-2024-07-18"}, ["req-5", "req-3", "req-1"]),
        ({"model": "gpt-4o-mini"}, ["req-5", "req-3", "req-1"]),  # the requested model matches too
        ({"model": "gpt-4o"}, ["req-4"]),
        ({"model": "gpt-4o-mini", "limit": 2}, ["req-5", "req-3"]),
        ({"model": "gpt-4o-mini", "status": "2xx"}, ["req-1"]),
        ({"provider": "anthropic"}, ["req-2"]),
        ({"status": 503}, ["req-3"]),
        ({"status": "5xx"}, ["req-3"]),
        ({"status": "4XX"}, ["req-4"]),
        ({"status": "2xx"}, ["req-2", "req-1"]),
        ({"status": "0"}, ["req-5"]),
        ({"session_id": "s1"}, ["req-2", "req-1"]),
        ({"session_id": "s1", "provider": "openai"}, ["req-1"]),
        ({"team": "red"}, ["req-4", "req-1"]),
        ({"since": BASE + 4}, ["req-5", "req-4"]),
        ({"until": BASE + 2}, ["req-1"]),  # until is exclusive
        ({"since": str(BASE + 2), "until": BASE + 4}, ["req-3", "req-2"]),
        ({"since": "2023-11-14T23:13:23+01:00"}, ["req-5", "req-4", "req-3"]),
        ({"until": "2023-11-14 22:13:22"}, ["req-1"]),  # naive means UTC
        ({"provider": "nobody"}, []),
    ],
)
async def test_filters(store: SQLLogStore, filters: dict[str, Any], expected: list[str]) -> None:
    assert ids(await store.aquery(**filters)) == expected


async def test_get_and_missing(store: SQLLogStore, records: list[LLMRecord]) -> None:
    assert await store.aget("req-2") == msgspec.json.encode(records[1])
    assert await store.aget("missing") is None


async def test_session_oldest_first(store: SQLLogStore, record_factory: RecordFactory) -> None:
    await store.export([record_factory(n=0, session_id="s1"), record_factory(n=9, session_id="s1")])
    assert ids(await store.asession("s1")) == ["req-0", "req-1", "req-2", "req-9"]
    assert ids(await store.asession("s1", limit=2)) == ["req-0", "req-1"]
    assert await store.asession("nope") == []


async def test_invalid_filters_name_the_parameter(store: SQLLogStore) -> None:
    for kwargs, name in (
        ({"status": "5x"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"until": math.nan}, "until"),
    ):
        with pytest.raises(ValueError, match=rf"^{name}:"):
            await store.aquery(**kwargs)


async def test_a_stored_request_id_is_never_overwritten(
    empty_store: SQLLogStore, record_factory: RecordFactory
) -> None:
    await empty_store.export([record_factory(n=1, status=500)])
    await empty_store.export([record_factory(n=1, status=200)])  # the same id again (a retried batch, say)
    assert ids(await empty_store.aquery()) == ["req-1"]
    assert ids(await empty_store.aquery(status=500)) == ["req-1"]  # the first write stands


async def test_a_failed_batch_is_rolled_back(empty_store: SQLLogStore, record_factory: RecordFactory) -> None:
    await empty_store.export([record_factory(n=1)])
    bad = record_factory(n=2, provider=None)  # violates NOT NULL after the first row of the batch
    with pytest.raises(PermanentExportError) as refused:  # the same rows would fail again: not retried
        await empty_store.export([record_factory(n=3), bad])
    assert "null" in str(refused.value.__cause__).lower()
    assert ids(await empty_store.aquery()) == ["req-1"]
    await empty_store.export([record_factory(n=4)])  # the store still works after the failure
    assert ids(await empty_store.aquery()) == ["req-4", "req-1"]


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(len(ordered) * percent / 100) - 1]


async def test_stats_totals_groups_and_percentiles(empty_store: SQLLogStore, record_factory: RecordFactory) -> None:
    # 40 records over 4 models and 2 teams, with varied durations, errors, tokens and unknown costs.
    records = []
    for n in range(40):
        model = f"model-{n % 4}"
        records.append(
            record_factory(
                n=n,
                requested_model=model,
                response_model=model,
                provider="anthropic" if n % 4 == 3 else "openai",
                team="red" if n % 2 else None,
                duration_s=0.01 * ((n * 7) % 40 + 1),
                status=500 if n % 10 == 0 else 200,
                outcome="upstream_error" if n % 10 == 0 else "completed",
                usage=Usage(input_tokens=n, output_tokens=2 * n),
                cost=Cost(total_usd=n / 1000) if n % 5 else None,
            )
        )
    await empty_store.export(records)
    stats = await empty_store.astats(since=BASE, until=BASE + 100, group_by="model")
    assert stats["since"] == "2023-11-14T22:13:20Z" and stats["group_by"] == "model"

    def expected(subset: list[LLMRecord], key: str | None) -> dict[str, Any]:
        durations = [r.timing.duration_s for r in subset]
        errors = sum(r.status >= 400 for r in subset)
        tokens_in = sum(r.usage.input_tokens or 0 for r in subset if r.usage)
        tokens_out = sum(r.usage.output_tokens or 0 for r in subset if r.usage)
        return {
            "key": key,
            "requests": len(subset),
            "errors": errors,
            "error_rate": errors / len(subset),
            "latency_p50_s": nearest_rank(durations, 50),
            "latency_p99_s": nearest_rank(durations, 99),
            "latency_mean_s": pytest.approx(sum(durations) / len(durations)),
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "cost_usd": pytest.approx(sum(r.cost.total_usd for r in subset if r.cost)),
            "unpriced_requests": sum(r.cost is None for r in subset),
        }

    def plain(row: Any) -> dict[str, Any]:
        return msgspec.to_builtins(row)  # type: ignore[no-any-return]

    assert plain(stats["totals"]) == expected(records, None)
    groups = [plain(g) for g in stats["groups"]]
    assert [g["key"] for g in groups] == ["model-0", "model-1", "model-2", "model-3"]  # ties ordered by key
    for group in groups:
        assert group == expected([r for r in records if r.requested_model == group["key"]], group["key"])
    by_team = await empty_store.astats(since=BASE, until=BASE + 100, group_by="team")
    assert [(plain(g)["key"], plain(g)["requests"]) for g in by_team["groups"]] == [("red", 20), (None, 20)]
    by_provider = await empty_store.astats(since=BASE, until=BASE + 100, group_by="provider", team="red")
    assert {plain(g)["key"]: plain(g)["requests"] for g in by_provider["groups"]} == {"openai": 10, "anthropic": 10}
    # The window bounds apply: [BASE + 10, BASE + 20) holds records 10..19.
    window = await empty_store.astats(since=BASE + 10, until=BASE + 20)
    assert plain(window["totals"]) == expected(records[10:20], None)
    assert window["groups"] == []


async def test_stats_of_an_empty_window(store: SQLLogStore) -> None:
    stats = await store.astats(group_by="provider")  # default window: the last 24 hours, none of our records
    totals = msgspec.to_builtins(stats["totals"])
    assert totals["requests"] == 0 and totals["latency_p50_s"] is None and totals["error_rate"] == 0.0
    assert stats["groups"] == []
    with pytest.raises(ValueError, match=r"^group_by:"):
        await store.astats(group_by="user")


async def test_retention_prunes_old_records(empty_store: SQLLogStore, record_factory: RecordFactory) -> None:
    await empty_store.export([record_factory(n=n) for n in range(1, 6)])
    empty_store.retention_days = 1.0
    now = START_NS + 86_400 * 1_000_000_000 + 3 * 1_000_000_000  # one day after record 3 started
    assert empty_store.prune(now_unix_nano=now) == 2
    assert ids(await empty_store.aquery()) == ["req-5", "req-4", "req-3"]
    empty_store.retention_days = None
    assert empty_store.prune(now_unix_nano=now * 2) == 0  # no retention: keep everything


async def test_retention_runs_at_start_and_after_writes(
    empty_store: SQLLogStore, record_factory: RecordFactory
) -> None:
    recent = time.time_ns() - 86_400 * 1_000_000_000  # a day old: kept by a 30-day retention
    empty_store.write([record_factory(n=1), record_factory(n=2, start_unix_nano=recent)])  # no pruning on write()
    empty_store.retention_days = 30
    await empty_store.close()
    await empty_store.start()  # 2023 is far older than 30 days
    assert ids(await empty_store.aquery()) == ["req-2"]
    empty_store.write([record_factory(n=3)])
    await empty_store.export([record_factory(n=4)])  # within the prune interval: no prune yet
    assert ids(await empty_store.aquery()) == ["req-2", "req-4", "req-3"]
    empty_store.prune_interval_s = 0.0
    empty_store._next_prune = 0.0
    await empty_store.export([record_factory(n=5, start_unix_nano=recent + 1)])
    assert ids(await empty_store.aquery()) == ["req-5", "req-2"]
