"""The export pipeline: never blocks the caller, drops and counts when full, survives failing sinks, flushes."""

from __future__ import annotations

import asyncio
from typing import Any

from llm_obs_middleware import ExportPipeline, LLMRecord
from llm_obs_middleware.state import Exchange


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
    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.records: list[LLMRecord] = []

    async def start(self) -> None:
        return None

    async def export(self, records: Any) -> None:
        await self.gate.wait()
        self.records.extend(records)

    async def close(self) -> None:
        return None


class FailingSink(GatedSink):
    name = "failing"

    async def export(self, records: Any) -> None:
        raise ConnectionError("collector down")


async def test_full_queue_drops_and_counts_without_blocking() -> None:
    sink = GatedSink()
    pipeline = ExportPipeline([sink], queue_size=3, batch_size=1)
    for n in range(10):
        pipeline.submit(finished_exchange(n))  # synchronous: never awaits a sink
    assert pipeline.stats.submitted == 10
    assert pipeline.stats.dropped == 7
    assert pipeline.depth == 3
    sink.gate.set()
    await pipeline.close()
    assert [r.requested_model for r in sink.records] == ["m0", "m1", "m2"]
    assert pipeline.stats.exported == {"gated": 3}


async def test_a_failing_sink_is_counted_and_does_not_starve_the_others() -> None:
    good = GatedSink()
    good.gate.set()
    pipeline = ExportPipeline([FailingSink(), good], batch_size=2)
    for n in range(5):
        pipeline.submit(finished_exchange(n))
    await pipeline.flush()
    assert len(good.records) == 5
    assert pipeline.stats.failed == {"failing": 5}
    assert pipeline.stats.exported == {"gated": 5}
    await pipeline.close()


async def test_close_flushes_everything_queued_and_is_idempotent() -> None:
    sink = GatedSink()
    sink.gate.set()
    pipeline = ExportPipeline([sink], batch_size=4)
    for n in range(9):
        pipeline.submit(finished_exchange(n))
    await pipeline.close()
    await pipeline.close()
    assert len(sink.records) == 9
