"""Sinks run blocking calls in threads of their own, never in the loop's default executor (issue 13, #10)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from llm_obs_middleware.config.settings import JSONLConfig
from llm_obs_middleware.exporters.jsonl import JSONLSink
from llm_obs_middleware.exporters.logstore import SQLiteLogStore
from llm_obs_middleware.exporters.pipeline.sink_thread import SinkThread

from .conftest import RecordFactory

DEADLINE_S = 30.0


async def test_calls_run_in_order_in_one_daemon_thread_of_the_sinks_own() -> None:
    worker = SinkThread("llm-obs-test")
    seen: list[tuple[int, str, bool]] = []

    def call(n: int) -> int:
        thread = threading.current_thread()
        seen.append((n, thread.name, thread.daemon))
        return n * 2

    assert await asyncio.gather(*(worker.run(call, n) for n in range(5))) == [0, 2, 4, 6, 8]
    assert seen == [(n, "llm-obs-test", True) for n in range(5)]
    with pytest.raises(ZeroDivisionError):
        await worker.run(divmod, 1, 0)
    worker.stop()
    assert await worker.run(call, 9) == 18  # a new thread after stop()


async def test_a_caller_that_stops_waiting_withdraws_its_call() -> None:
    worker = SinkThread("llm-obs-test")
    release, ran = threading.Event(), []
    busy = asyncio.ensure_future(worker.run(release.wait))
    await asyncio.sleep(0)  # the busy call is queued first
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await worker.run(ran.append, "withdrawn")  # queued behind the busy call, then given up
    release.set()
    assert await busy is True
    await worker.run(ran.append, "later")
    assert ran == ["later"]
    worker.stop()


async def test_sinks_work_while_the_default_executor_is_blocked(tmp_path: Path, record_factory: RecordFactory) -> None:
    # The loop's default executor, one thread, kept busy (as hung database calls kept it before the fix).
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(1))
    release = threading.Event()
    blocker = loop.run_in_executor(None, release.wait)
    store = SQLiteLogStore(tmp_path / "log.db")
    jsonl = JSONLSink(JSONLConfig(path=str(tmp_path / "records.jsonl")))
    try:
        async with asyncio.timeout(DEADLINE_S):  # before the fix: blocked until the executor is free
            for sink in (store, jsonl):
                await sink.start()
                await sink.export([record_factory(n=1)])
            assert len(await store.aquery()) == 1
            await store.close()
            await jsonl.close()
    finally:
        release.set()
        await blocker
    assert (tmp_path / "records.jsonl").read_bytes().count(b"\n") == 1
