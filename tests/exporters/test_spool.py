"""The disk spool: bounded, survives restarts and torn writes; the pipeline parks and replays through it."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from llm_obs_middleware import ExportPipeline
from llm_obs_middleware.config.settings import QueueConfig
from llm_obs_middleware.exporters.pipeline.spool import Spool

from .conftest import RecordFactory
from .test_pipeline import FlakySink, GatedSink, finished_exchange


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def ids(records: list[Any]) -> list[str]:
    return [record.request_id for record in records]


def test_append_peek_commit_and_restart(tmp_path: Path, record_factory: RecordFactory) -> None:
    spool = Spool(tmp_path / "spool", "otlp", max_bytes=10**6)
    assert spool.pending_bytes == 0 and spool.peek(10) == []
    assert spool.append([record_factory(n=n) for n in range(5)]) == 0
    first = spool.peek(2)
    assert ids(first) == ["req-0", "req-1"]
    assert first[0] == record_factory(n=0)  # the whole record comes back
    assert ids(spool.peek(2)) == ["req-0", "req-1"]  # not committed: the same batch again
    spool.commit()
    # Another process (a restart) continues after what was exported.
    again = Spool(tmp_path / "spool", "otlp", max_bytes=10**6)
    assert ids(again.peek(10)) == ["req-2", "req-3", "req-4"]
    again.append([record_factory(n=5)])
    assert ids(again.peek(10)) == ["req-2", "req-3", "req-4", "req-5"]
    again.commit()
    assert again.pending_bytes == 0
    assert listing(tmp_path / "spool") == []  # emptied once all exported


def test_bounded(tmp_path: Path, record_factory: RecordFactory) -> None:
    line = len(msgspec.json.encode(record_factory(n=1))) + 1
    spool = Spool(tmp_path, "log_store", max_bytes=3 * line)
    assert spool.append([record_factory(n=n) for n in range(1, 6)]) == 2  # two did not fit
    assert ids(spool.peek(10)) == ["req-1", "req-2", "req-3"]
    spool.commit()
    assert spool.append([record_factory(n=7)]) == 0  # exported bytes free room


def test_torn_and_unreadable_lines(tmp_path: Path, record_factory: RecordFactory) -> None:
    spool = Spool(tmp_path, "jsonl", max_bytes=10**6)
    spool.append([record_factory(n=1)])
    with open(spool.path, "ab") as file:
        file.write(b'{"not": "a record"}\n{"request_id": "torn')  # a bad line, then a crash mid-append
    again = Spool(tmp_path, "jsonl", max_bytes=10**6)
    again.append([record_factory(n=2)])
    assert ids(again.peek(10)) == ["req-1", "req-2"]


async def test_a_sink_down_for_long_spills_to_disk_and_gets_everything_once(tmp_path: Path) -> None:
    flaky = FlakySink(failures=8)
    pipeline = ExportPipeline(
        [flaky],
        queue=QueueConfig(
            max_records=10,  # far fewer than the records sent while the sink is down
            batch_size=5,
            retry_initial_backoff_s=0.02,
            retry_max_backoff_s=0.05,
            spool_dir=str(tmp_path / "spool"),
        ),
    )
    for n in range(60):
        pipeline.submit(finished_exchange(n))
        if n % 5 == 0:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(pipeline.flush(), 10)
    await pipeline.close()
    assert Counter(flaky.models) == Counter(f"m{n}" for n in range(60))  # all of them, each once
    assert pipeline.stats.spooled["flaky"] > 0
    assert pipeline.stats.sink_dropped == {"flaky": 0}
    assert listing(tmp_path / "spool") == []


async def test_records_left_at_shutdown_are_replayed_by_the_next_process(tmp_path: Path) -> None:
    queue = QueueConfig(shutdown_grace_s=0.1, retry_initial_backoff_s=0.02, spool_dir=str(tmp_path))
    down = FlakySink(failures=10**6, name="otlp")
    first = ExportPipeline([down], queue=queue)
    for n in range(7):
        first.submit(finished_exchange(n))
    await first.close()
    assert first.stats.spooled == {"otlp": 7} and first.stats.sink_dropped == {"otlp": 0}
    back = GatedSink("otlp", open_gate=True)
    second = ExportPipeline([back], queue=queue)
    await second.start()
    second.submit(finished_exchange(7))
    await asyncio.wait_for(second.flush(), 5)
    await second.close()
    assert sorted(back.models) == sorted(f"m{n}" for n in range(8))
    assert listing(tmp_path) == []


def test_config() -> None:
    with pytest.raises(ValueError, match="spool_max_bytes"):
        QueueConfig(spool_max_bytes=0)


def spooled_lines(folder: Path, name: str) -> int:
    path = folder / name
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_until(condition: Any, what: str) -> None:
    """Poll ``condition`` until it holds (the spool is written from worker threads); fail after 10 s."""
    try:
        async with asyncio.timeout(10):
            # Files written by worker threads: no event tells us, so poll (with a generous deadline).
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within 10 s: {what}") from None


async def test_records_for_a_failing_sink_are_on_disk_soon_not_when_the_queue_is_half_full(tmp_path: Path) -> None:
    """A sink backing off: what it holds is on disk within ``spool_after_s``, however few records that is
    (before: only once its queue held ``max_records / 2``, 5,000 by default, so ``kill -9`` lost them all)."""
    down = FlakySink(failures=10**6, name="otlp")
    queue = QueueConfig(spool_dir=str(tmp_path), spool_after_s=0.05, retry_initial_backoff_s=30, flush_interval_s=0)
    pipeline = ExportPipeline([down], queue=queue)
    try:
        for n in range(3):
            pipeline.submit(finished_exchange(n))
        await wait_until(lambda: spooled_lines(tmp_path, "otlp.jsonl") == 3, "the first records spooled")
        for n in range(3, 10):  # more while the sink backs off (30 s): spooled without waiting for it
            pipeline.submit(finished_exchange(n))
        await wait_until(lambda: spooled_lines(tmp_path, "otlp.jsonl") == 10, "the later records spooled")
    finally:
        await pipeline.close()
    assert pipeline.stats.spooled == {"otlp": 10}


async def test_a_batch_a_slow_sink_has_not_written_is_on_disk_and_survives_a_crash(tmp_path: Path) -> None:
    stuck = GatedSink("log_store")  # takes the batch and never finishes writing it
    queue = QueueConfig(spool_dir=str(tmp_path), spool_after_s=0.05, flush_interval_s=0)
    crashed = ExportPipeline([stuck], queue=queue)
    for n in range(4):
        crashed.submit(finished_exchange(n))
    await wait_until(lambda: spooled_lines(tmp_path, "log_store.held.jsonl") == 4, "the batch held on disk")
    # The process dies here (kill -9): nothing of `crashed` runs again. The next one exports the batch.
    back = GatedSink("log_store", open_gate=True)
    second = ExportPipeline([back], queue=queue)
    await second.start()
    await wait_until(lambda: len(back.records) == 4, "the held batch replayed")
    await second.close()
    assert sorted(back.models) == ["m0", "m1", "m2", "m3"]
    assert listing(tmp_path) == []  # replayed, then forgotten
    stuck.gate.set()  # let the abandoned pipeline's task end (the test's loop outlives it)
    await crashed.close()


async def test_a_batch_written_in_time_is_not_copied_to_disk(tmp_path: Path) -> None:
    sink = GatedSink("jsonl", open_gate=True)
    pipeline = ExportPipeline([sink], queue=QueueConfig(spool_dir=str(tmp_path), spool_after_s=60, flush_interval_s=0))
    for n in range(5):
        pipeline.submit(finished_exchange(n))
    await asyncio.wait_for(pipeline.flush(), 5)
    await pipeline.close()
    assert len(sink.records) == 5 and pipeline.stats.spooled == {"jsonl": 0}
    assert listing(tmp_path) == []
