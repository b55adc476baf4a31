"""Cost-component series per record, and the SQLite page size of a new log database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware.exporters.logstore import SQLiteLogStore
from llm_obs_middleware.exporters.prometheus.exporter import PrometheusSink
from llm_obs_middleware.records.schema import Cost, LLMRecord, Usage

from .conftest import RecordFactory

MODEL = "gpt-4o-mini-2024-07-18"


def component(registry: CollectorRegistry, name: str, model: str = MODEL) -> float | None:
    return registry.get_sample_value(
        "llm_obs_cost_component_usd_total", {"provider": "openai", "model": model, "component": name}
    )


async def test_cost_components_add_up_per_series(record_factory: RecordFactory) -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    usage = Usage(input_tokens=10, output_tokens=2)
    priced = Cost(total_usd=0.375, input_usd=0.125, output_usd=0.25)
    await sink.export([record_factory(n=n, usage=usage, cost=priced) for n in range(3)])
    await sink.export([record_factory(n=3, usage=usage, cost=Cost(total_usd=0.5, cache_read_usd=0.5))])
    await sink.export([record_factory(n=4, usage=usage, cost=priced, response_model="other-model")])
    assert component(registry, "input") == pytest.approx(0.375)
    assert component(registry, "output") == pytest.approx(0.75)
    assert component(registry, "cache_read") == pytest.approx(0.5)
    # A zero component never creates a series, before or after the others were cached.
    assert component(registry, "cache_write") is None
    assert component(registry, "other") is None
    assert component(registry, "input", "other-model") == pytest.approx(0.125)
    assert component(registry, "cache_read", "other-model") is None


async def test_cost_components_of_models_past_the_cap_share_other(record_factory: RecordFactory) -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, max_models_per_provider=1)
    cost = Cost(total_usd=0.25, output_usd=0.25)
    await sink.export([record_factory(n=n, response_model=f"m{n}", cost=cost) for n in range(3)])
    assert component(registry, "output", "m0") == pytest.approx(0.25)
    assert component(registry, "output", "other") == pytest.approx(0.5)


def _page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_new_database_uses_8k_pages(tmp_path: Path, record_factory: RecordFactory) -> None:
    store = SQLiteLogStore(tmp_path / "new.db")
    store.write([record_factory(n=1)])
    store.close_sync()
    assert _page_size(tmp_path / "new.db") == 8192


def test_existing_database_keeps_its_page_size(tmp_path: Path, record_factory: RecordFactory) -> None:
    path = tmp_path / "old.db"
    first = SQLiteLogStore(path)
    first._connect()
    first.close_sync()
    conn = sqlite3.connect(path)  # an existing 4 KiB database, as earlier releases made
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("VACUUM")
    conn.close()
    assert _page_size(path) == 4096
    store = SQLiteLogStore(path)
    records = [record_factory(n=n, request_id=f"req-{n}") for n in range(50)]
    store.write(records)
    rows = store.query(limit=100)
    store.close_sync()
    assert _page_size(path) == 4096
    assert [msgspec.json.decode(row, type=LLMRecord) for row in rows] == records[::-1]
