"""The export pipeline: never blocks the caller, bounded queues with a drop policy, per-sink retries, flush, grace."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import msgspec
import pytest

from llm_obs_middleware import ExportPipeline, LLMRecord
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.config.settings import QueueConfig

# Unit tests of the pipeline mechanics hand records over at once (no batching linger) and retry fast.
FAST: dict[str, Any] = {"retry_initial_backoff_s": 0.01, "retry_max_backoff_s": 0.05, "flush_interval_s": 0.0}


def finished_exchange(n: int) -> Exchange:
    exchange = Exchange({"method": "POST", "path": "/v1/chat/completions"})
    exchange.is_llm = True
    exchange.operation = "chat"
    exchange.provider = "openai"
    exchange.requested_model = f"m{n}"
    exchange.status = 200
    exchange.end_ns = exchange.start_ns + 1_000_000
    return exchange


class GatedSink:
    """Exports only while its gate is open; records every batch it was given."""

    def __init__(self, name: str = "gated", *, open_gate: bool = False) -> None:
        self.name = name
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()
        self.records: list[LLMRecord] = []
        self.batches: list[int] = []
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def export(self, records: Any) -> None:
        await self.gate.wait()
        self.batches.append(len(records))
        self.records.extend(records)

    async def close(self) -> None:
        self.closed = True

    @property
    def models(self) -> list[str | None]:
        return [r.requested_model for r in self.records]


class FlakySink(GatedSink):
    """Fails its first ``failures`` export calls (a collector that is down), then works."""

    def __init__(self, failures: int, name: str = "flaky") -> None:
        super().__init__(name, open_gate=True)
        self.failures = failures
        self.calls: list[float] = []

    async def export(self, records: Any) -> None:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise ConnectionError("collector down")
        await super().export(records)


def pipeline_with(*sinks: Any, **queue: Any) -> ExportPipeline:
    return ExportPipeline(list(sinks), queue=QueueConfig(**{**FAST, **queue}))


@pytest.mark.parametrize(
    ("on_full", "kept"), [("drop_newest", ["m0", "m1", "m2"]), ("drop_oldest", ["m7", "m8", "m9"])]
)
async def test_full_queue_drops_by_policy_and_counts_without_blocking(on_full: str, kept: list[str]) -> None:
    sink = GatedSink(open_gate=True)
    pipeline = pipeline_with(sink, max_records=3, batch_size=1, on_full=on_full)
    for n in range(10):
        pipeline.submit(finished_exchange(n))  # synchronous: never awaits a sink
    assert pipeline.stats.submitted == 10
    assert pipeline.stats.dropped == 7
    assert pipeline.depth == 3
    await pipeline.close()
    assert sink.models == kept
    assert pipeline.stats.exported == {"gated": 3}


async def test_a_sink_queue_full_drops_for_that_sink_only() -> None:
    slow, fast = GatedSink("slow"), GatedSink("fast", open_gate=True)
    pipeline = pipeline_with(slow, fast, max_records=4, batch_size=2, on_full="drop_oldest")
    for n in range(10):
        pipeline.submit(finished_exchange(n))
        await asyncio.sleep(0.001)  # let the dispatcher hand each record over
    await asyncio.wait_for(_until(lambda: len(fast.records) == 10), 5)
    # The slow sink holds m0 in flight (taken as soon as it came) and its queue of 4: the newest records.
    assert pipeline.snapshot().sink_depth == {"slow": 5, "fast": 0}
    assert pipeline.stats.sink_dropped == {"slow": 5, "fast": 0}
    slow.gate.set()
    await pipeline.close()
    assert slow.models == ["m0", "m6", "m7", "m8", "m9"]
    assert fast.models == [f"m{n}" for n in range(10)]
    assert pipeline.stats.dropped == 0


async def test_a_sink_that_is_down_is_retried_with_backoff_and_gets_everything_once() -> None:
    flaky, good = FlakySink(failures=4), GatedSink("good", open_gate=True)
    pipeline = pipeline_with(flaky, good, batch_size=100, retry_initial_backoff_s=0.02, retry_max_backoff_s=0.08)
    for n in range(5):
        pipeline.submit(finished_exchange(n))
    await asyncio.wait_for(_until(lambda: len(good.records) == 5), 5)  # the good sink is not held back
    await asyncio.wait_for(pipeline.flush(), 5)
    assert Counter(flaky.models) == Counter(f"m{n}" for n in range(5))  # each record exactly once
    assert len(flaky.calls) == 5
    gaps = [b - a for a, b in zip(flaky.calls, flaky.calls[1:], strict=False)]
    # Doubling from 0.02 s (jitter +-20%), capped at 0.08 s.
    assert gaps[0] >= 0.015 and gaps[1] >= 0.03 and gaps[2] >= 0.06 and gaps[3] >= 0.06
    assert max(gaps) < 0.5
    assert pipeline.stats.failed == {"flaky": 20, "good": 0}
    assert pipeline.stats.exported == {"flaky": 5, "good": 5}
    await pipeline.close()


async def test_a_sink_still_down_at_shutdown_loses_only_its_copy_counted(caplog: pytest.LogCaptureFixture) -> None:
    down, good = FlakySink(failures=10**6, name="down"), GatedSink("good", open_gate=True)
    pipeline = pipeline_with(down, good, shutdown_grace_s=0.2)
    for n in range(7):
        pipeline.submit(finished_exchange(n))
    with caplog.at_level(logging.WARNING, "llm_obs_middleware.export"):
        # The sink never recovers: close() returns only because the grace period bounds it.
        await asyncio.wait_for(pipeline.close(), 30)
    assert len(good.records) == 7
    assert pipeline.stats.sink_dropped == {"down": 7, "good": 0}
    assert pipeline.stats.exported == {"down": 0, "good": 7}
    assert down.closed and good.closed
    warnings = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(warnings) == 1  # one warning per outage, not one per attempt


async def test_a_sink_stuck_in_an_export_is_cancelled_at_the_end_of_the_grace() -> None:
    stuck = GatedSink("stuck")  # its gate never opens
    pipeline = pipeline_with(stuck, shutdown_grace_s=0.1, batch_size=2)
    for n in range(5):
        pipeline.submit(finished_exchange(n))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(pipeline.close(), 3)
    assert pipeline.stats.sink_dropped == {"stuck": 5}
    assert stuck.closed


async def test_close_exports_everything_queued_and_is_idempotent() -> None:
    sink = GatedSink(open_gate=True)
    pipeline = pipeline_with(sink, batch_size=4)
    for n in range(9):
        pipeline.submit(finished_exchange(n))
    await pipeline.close()
    await pipeline.close()
    assert len(sink.records) == 9
    assert sink.started and sink.closed
    pipeline.submit(finished_exchange(99))  # after close: dropped and counted, never queued
    assert pipeline.stats.dropped == 1 and pipeline.depth == 0


async def test_flush_interval_batches_writes_and_flush_cuts_it_short() -> None:
    sink = GatedSink(open_gate=True)
    pipeline = pipeline_with(sink, batch_size=5, flush_interval_s=30)
    await pipeline.start()
    for n in range(7):
        pipeline.submit(finished_exchange(n))
    await asyncio.wait_for(_until(lambda: len(sink.records) == 5), 5)  # a full batch goes at once
    assert sink.batches == [5]  # two records wait for their batch to fill
    assert pipeline.depth == 2
    await asyncio.wait_for(pipeline.flush(), 5)
    assert sink.batches == [5, 2]
    pipeline.submit(finished_exchange(8))
    await asyncio.wait_for(pipeline.close(), 5)  # close does not wait out the interval either
    assert sink.batches == [5, 2, 1]


async def test_a_sink_whose_start_fails_still_gets_records(caplog: pytest.LogCaptureFixture) -> None:
    class BadStart(GatedSink):
        async def start(self) -> None:
            raise OSError("disk not mounted yet")

    sink = BadStart(open_gate=True)
    pipeline = pipeline_with(sink)
    pipeline.submit(finished_exchange(1))
    await asyncio.wait_for(pipeline.flush(), 5)
    assert sink.models == ["m1"]
    assert "starting sink gated failed" in caplog.text
    await pipeline.close()


async def test_transform_and_unbuildable_records() -> None:
    sink = GatedSink(open_gate=True)

    def rename(record: LLMRecord) -> LLMRecord:
        if record.requested_model == "m2":
            raise ValueError("cannot transform")
        return msgspec.structs.replace(record, requested_model=f"{record.requested_model}!")

    pipeline = ExportPipeline([sink], queue=QueueConfig(**FAST), transform=rename)
    for n in range(4):
        pipeline.submit(finished_exchange(n))
    await pipeline.close()
    assert sink.models == ["m0!", "m1!", "m3!"]
    assert pipeline.stats.dropped == 1


async def _until(predicate: Any) -> None:
    while not predicate():  # noqa: ASYNC110  # polls what a test sink recorded; the sinks have no hook for it
        await asyncio.sleep(0.002)


async def test_no_sinks_means_no_record_is_built() -> None:
    built: list[LLMRecord] = []

    def transform(record: LLMRecord) -> LLMRecord:
        built.append(record)
        return record

    for sinks in ([], [GatedSink(open_gate=True)]):
        built.clear()
        pipeline = ExportPipeline(sinks, transform=transform, queue=QueueConfig(**FAST))
        await pipeline.start()
        for n in range(5):
            pipeline.submit(finished_exchange(n))
        await pipeline.flush()
        await pipeline.close()
        assert (pipeline.stats.submitted, pipeline.stats.dropped, pipeline.depth) == (5, 0, 0)
        assert len(built) == (5 if sinks else 0)


async def test_a_big_batch_is_built_in_slices_so_requests_run_in_between() -> None:
    """Building a batch of records must not hold the event loop for the whole batch: a request
    waiting on the loop gets turns while the worker builds."""
    turns = 0
    seen: list[int] = []

    def note_turn(record: LLMRecord) -> LLMRecord:
        seen.append(turns)
        return record

    sink = GatedSink(open_gate=True)
    pipeline = ExportPipeline([sink], queue=QueueConfig(**{**FAST, "batch_size": 256}), transform=note_turn)
    for n in range(256):
        pipeline.submit(finished_exchange(n))
    stop = asyncio.Event()

    async def other_requests() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.get_running_loop().create_task(other_requests())
    await pipeline.start()
    await pipeline.flush()
    stop.set()
    await ticker
    await pipeline.close()
    assert len(sink.records) == 256
    assert len(set(seen)) >= 256 // 32, f"the loop got {len(set(seen))} turns while 256 records were built"


async def test_a_sink_that_hangs_closing_does_not_hold_the_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    class HangsClosing(GatedSink):
        async def close(self) -> None:
            await asyncio.Event().wait()  # a database that never answers

    hangs, other = HangsClosing("hangs", open_gate=True), GatedSink("other", open_gate=True)
    pipeline = pipeline_with(hangs, other, shutdown_grace_s=0.1)
    pipeline.submit(finished_exchange(1))
    await asyncio.wait_for(pipeline.close(), 30)  # before: never returned
    assert other.closed and other.models == ["m1"]
    assert "closing sink hangs did not finish" in caplog.text
