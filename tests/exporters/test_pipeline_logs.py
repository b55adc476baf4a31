"""The export pipeline says what it loses and when a sink is down or back (issue 13, finding 15)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from .test_pipeline import FlakySink, GatedSink, _until, finished_exchange, pipeline_with


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "llm_obs_middleware.export" and r.levelno == logging.WARNING]


async def test_dropped_records_are_logged_once_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    slow, fast = GatedSink("slow"), GatedSink("fast", open_gate=True)
    pipeline = pipeline_with(slow, fast, max_records=4, batch_size=100, on_full="drop_oldest")
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.export"):
        for n in range(10):
            pipeline.submit(finished_exchange(n))  # 6 dropped at the front queue, in one go
        await asyncio.wait_for(_until(lambda: len(fast.records) == 4), 5)
        slow.gate.set()
        await pipeline.close()
    [front] = [r for r in _warnings(caplog) if "records dropped" in r.getMessage()]
    assert front.getMessage().startswith("6 records dropped at the export queue")
    assert vars(front)["llm_obs"] == {"event": "records_dropped", "sink": None, "dropped": 6, "dropped_total": 6}


async def test_a_sink_queue_that_overflows_is_named(caplog: pytest.LogCaptureFixture) -> None:
    slow, fast = GatedSink("slow"), GatedSink("fast", open_gate=True)
    pipeline = pipeline_with(slow, fast, max_records=4, batch_size=2, on_full="drop_oldest")
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.export"):
        for n in range(10):
            pipeline.submit(finished_exchange(n))
            await asyncio.sleep(0.001)  # let the dispatcher hand each record over
        await asyncio.wait_for(_until(lambda: len(fast.records) == 10), 5)
        slow.gate.set()
        await pipeline.close()
    lines = [vars(r)["llm_obs"] for r in _warnings(caplog) if "records dropped" in r.getMessage()]
    assert lines and all(fields["sink"] == "slow" for fields in lines)
    assert sum(fields["dropped"] for fields in lines) == 5 == lines[-1]["dropped_total"]


async def test_a_sink_outage_and_its_recovery_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    flaky = FlakySink(failures=3)
    pipeline = pipeline_with(flaky, batch_size=100)
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.export"):
        pipeline.submit(finished_exchange(0))
        await asyncio.wait_for(_until(lambda: len(flaky.records) == 1), 5)
        await pipeline.close()
    messages = [r.getMessage() for r in _warnings(caplog)]
    assert any(m.startswith("sink flaky failed to export 1 records") for m in messages), messages
    assert "sink flaky exported again after 3 failed attempts" in messages
