"""One sink's side of the export pipeline: its queue, its worker task, retries, refusals and the spool.

A batch the sink fails to take with a retryable error (anything but
:class:`~..errors.PermanentExportError`) is retried with exponential backoff and jitter. Without a
spool it stays in memory meanwhile; with one (``queue.spool_dir``) it goes to disk at once, and so
does whatever queues up while the sink backs off, at the latest ``queue.spool_after_s`` after it
arrived; the worker then replays the spool, oldest first. A batch still being exported after
``spool_after_s`` is copied to disk too (:meth:`.Spool.hold`), so ``kill -9`` loses at most the records
of the last ``spool_after_s``.

A batch the sink refuses (:class:`~..errors.PermanentExportError`) is split in halves until the
records it cannot write are alone; those are dropped, counted (``rejected``) and logged, one line
each, and the rest are exported: one bad record never wedges a sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llm_obs_middleware.errors import ExportError, PermanentExportError
from llm_obs_middleware.exporters.pipeline.queue import Buffer
from llm_obs_middleware.exporters.pipeline.spool import Spool

if TYPE_CHECKING:
    from llm_obs_middleware.exporters.pipeline.export_pipeline import ExportPipeline, Sink
    from llm_obs_middleware.records.schema import LLMRecord

__all__ = ["SinkWorker"]

logger = logging.getLogger("llm_obs_middleware.export")


class SinkWorker:
    """The queue and the worker task of one sink (made by :class:`~.base.ExportPipeline` when it starts)."""

    __slots__ = (
        "backoff",
        "batch",
        "buffer",
        "failures",
        "from_spool",
        "held",
        "oldest_at",
        "pipeline",
        "replay_turn",
        "retry_at",
        "sink",
        "spool",
        "spool_pending",
        "task",
    )

    def __init__(self, sink: Sink, pipeline: ExportPipeline) -> None:
        queue = pipeline.queue
        self.sink = sink
        self.pipeline = pipeline
        self.buffer: Buffer[LLMRecord] = Buffer(queue.max_records, queue.on_full == "drop_oldest")
        self.batch: list[LLMRecord] = []
        """Records taken from the queue (or the spool) and not exported yet."""
        self.from_spool = False
        """The batch was read from the spool (which keeps it until it is exported)."""
        self.spool = Spool(queue.spool_dir, sink.name, queue.spool_max_bytes) if queue.spool_dir else None
        self.spool_pending = self.spool is not None
        """The spool may hold records (checked on disk when the sink is idle)."""
        self.held = False
        """The batch has a copy on disk (:meth:`.Spool.hold`) until its export ends."""
        self.oldest_at = 0.0
        """Loop time the oldest record in the queue arrived."""
        self.replay_turn = False
        """Replay a spooled batch next even though records are queued (so neither starves)."""
        self.retry_at = 0.0
        """With a spool, after a failed export: no export before this loop time."""
        self.backoff = queue.retry_initial_backoff_s
        self.failures = 0
        """Failed attempts in a row."""
        self.task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self.buffer) + len(self.batch)

    def hand(self, records: Sequence[LLMRecord], now: float) -> int:
        """Queue ``records``; return how many the full queue dropped."""
        buffer = self.buffer
        if not len(buffer):
            self.oldest_at = now
        put = buffer.put
        dropped = 0
        for record in records:
            dropped += put(record)
        return dropped

    async def run(self) -> None:
        pipeline, sink, buffer, queue = self.pipeline, self.sink, self.buffer, self.pipeline.queue
        loop = asyncio.get_running_loop()
        try:
            await sink.start()
        except Exception:  # sinks connect again on export, where failures are retried
            logger.exception("starting sink %s failed", sink.name)
        batch_size, linger = queue.batch_size, queue.flush_interval_s
        if self.spool is not None:
            linger = min(linger, queue.spool_after_s)  # a batch waiting to fill is not on disk yet
        while True:
            closing, now = pipeline.closing.is_set(), loop.time()
            if closing and (now >= pipeline.deadline or self.retry_at >= pipeline.deadline):
                # No export attempt fits in the shutdown grace any more: spool what is queued, or drop it.
                if len(buffer):
                    await self.abandon()
                if pipeline.dispatched:
                    return
                await buffer.wait()  # for the dispatcher's last records
                continue
            if self.retry_at > now:
                await self._wait_to_retry()
                continue
            if self.spool_pending and not closing and (self.replay_turn or not len(buffer)):
                self.replay_turn = False
                await self._replay()
                continue
            if not len(buffer):
                if closing and pipeline.dispatched:
                    return
                await buffer.wait()
                continue
            if linger and len(buffer) < batch_size and not (closing or pipeline.urgent):
                buffer.wake_at = batch_size
                await buffer.wait(max(0.0, self.oldest_at + linger - loop.time()))
                buffer.wake_at = 1
            since = self.oldest_at
            self.batch = buffer.take(batch_size)
            self.replay_turn = self.spool_pending
            await self._deliver(since)
            pipeline.progress.set()

    async def abandon(self) -> None:
        """Shutdown: spool what this worker still holds, or count it as dropped."""
        # A batch read from the spool is still in it (uncommitted): the next process replays it.
        held = ([] if self.from_spool else self.batch) + self.buffer.take(len(self.buffer))
        self.batch = []
        if held and self.spool is not None:
            await self._spill(held)
        else:
            self.pipeline.stats.sink_dropped[self.sink.name] += len(held)
        await self._release()
        self.pipeline.progress.set()

    # -- exporting ----------------------------------------------------------------------------------

    async def _deliver(self, since: float) -> bool:
        """Export ``self.batch`` (queued since ``since``); refused records are dropped and counted.

        ``False``: not all exported (the sink failed and the rest is spooled, or the shutdown grace ended).
        """
        loop = asyncio.get_running_loop()
        pipeline, sink, stats = self.pipeline, self.sink, self.pipeline.stats
        parts = [self.batch]  # a stack: a refused part is split and its halves pushed back
        while parts:
            part = parts.pop()
            self.batch = part + [record for rest in reversed(parts) for record in rest]
            try:
                await self._export(part, since)
            except PermanentExportError as exc:
                if len(part) > 1 and not exc.whole_batch:
                    half = len(part) // 2
                    parts += (part[half:], part[:half])
                else:
                    self._reject(part, exc)
                continue
            except Exception as exc:
                self.failures += 1
                stats.failed[sink.name] += len(part)
                if self.failures == 1:
                    logger.warning(
                        "sink %s failed to export %d records (%r); retrying with backoff", sink.name, len(part), exc
                    )
                delay = min(self.backoff, pipeline.queue.retry_max_backoff_s) * random.uniform(0.8, 1.2)
                self.backoff *= 2
                if self.spool is not None:
                    # Down: the records wait on disk, not in memory, and come back by replay.
                    if not self.from_spool:
                        await self._spill(self.batch)
                    self.batch = []
                    await self._release()
                    self.retry_at = loop.time() + delay
                    return False
                if pipeline.closing.is_set() and loop.time() + delay >= pipeline.deadline:
                    logger.error("sink %s still failing at shutdown; %d records left", sink.name, self.pending)
                    await self.abandon()
                    return False
                await self._backoff(delay)
                parts.append(part)
                continue
            stats.exported[sink.name] += len(part)
            if self.failures:
                logger.warning("sink %s exported again after %d failed attempts", sink.name, self.failures)
                self.failures, self.backoff = 0, pipeline.queue.retry_initial_backoff_s
        self.batch = []
        await self._release()
        return True

    async def _export(self, part: list[LLMRecord], since: float) -> None:
        """One export attempt; with a spool, records waiting too long meanwhile go to disk."""
        if self.spool is None or self.from_spool:
            await self.sink.export(part)
            return
        loop = asyncio.get_running_loop()
        after, buffer = self.pipeline.queue.spool_after_s, self.buffer
        task = asyncio.ensure_future(self.sink.export(part))
        try:
            while True:
                now = loop.time()
                wake = now + after
                if not self.held:
                    wake = min(wake, since + after)
                if len(buffer):
                    wake = min(wake, self.oldest_at + after)
                    waits: tuple[asyncio.Future[Any], ...] = (task,)
                else:  # also woken by the first record to arrive, to time its stay
                    buffer.ready.clear()
                    waits = (task, asyncio.ensure_future(buffer.ready.wait()))
                done, _ = await asyncio.wait(waits, timeout=max(0.0, wake - now), return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits[1:]:
                    waiter.cancel()
                if task in done:
                    break
                now = loop.time()
                if not self.held and now >= since + after:
                    await asyncio.to_thread(self.spool.hold, self.batch)
                    self.held = True
                if len(buffer) and now >= self.oldest_at + after:
                    await self._spill(buffer.take(len(buffer)))
        finally:
            if not task.done():  # the worker was cancelled (shutdown)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        task.result()

    async def _release(self) -> None:
        if self.held:
            assert self.spool is not None
            await asyncio.to_thread(self.spool.release)
            self.held = False

    def _reject(self, records: list[LLMRecord], exc: PermanentExportError) -> None:
        name, reason = self.sink.name, _describe(exc)
        self.pipeline.stats.rejected[name] += len(records)
        # The trace id is ours (or a validated traceparent's): it finds the request, and is no content.
        if len(records) == 1:
            logger.error("sink %s refused a record (trace %s); it is dropped: %s", name, records[0].trace_id, reason)
        else:
            logger.error("sink %s refused a batch; %d records are dropped: %s", name, len(records), reason)

    # -- waiting and the spool ----------------------------------------------------------------------

    async def _backoff(self, delay: float) -> None:
        """No spool: wait ``delay`` before retrying the batch held in memory."""
        loop = asyncio.get_running_loop()
        until, closing, buffer = loop.time() + delay, self.pipeline.closing.is_set(), self.buffer
        buffer.wake_at = sys.maxsize  # queued records wait for the retry; close() and flush() still wake it
        try:
            while (remaining := until - loop.time()) > 0:
                await buffer.wait(remaining)
                if self.pipeline.closing.is_set() and not closing:
                    return  # cut short by close(): a sink that came back gets its records within the grace
        finally:
            buffer.wake_at = 1

    async def _wait_to_retry(self) -> None:
        """With a spool, between two attempts: move what queues up to disk after ``spool_after_s``."""
        pipeline, buffer = self.pipeline, self.buffer
        loop = asyncio.get_running_loop()
        after, closing = pipeline.queue.spool_after_s, pipeline.closing.is_set()
        try:
            while (remaining := self.retry_at - loop.time()) > 0:
                if len(buffer) and (loop.time() >= self.oldest_at + after or len(buffer) >= pipeline.spill_at):
                    await self._spill(buffer.take(len(buffer)))
                    continue
                if len(buffer):  # woken when it is time to spool them, or early if the queue fills up
                    buffer.wake_at = pipeline.spill_at
                    await buffer.wait(min(remaining, self.oldest_at + after - loop.time()))
                else:  # woken by the first record to arrive, to time its stay
                    buffer.wake_at = 1
                    await buffer.wait(remaining)
                if pipeline.closing.is_set() and not closing:
                    self.retry_at = 0.0  # cut short by close(): a sink that came back gets one more try
                    return
        finally:
            buffer.wake_at = 1

    async def _replay(self) -> None:
        """Export the oldest spooled batch; the spool forgets it once exported."""
        spool = self.spool
        assert spool is not None
        self.batch = await asyncio.to_thread(spool.peek, self.pipeline.queue.batch_size)
        if not self.batch:
            self.spool_pending = False
            self.pipeline.progress.set()
            return
        self.from_spool = True
        try:
            if await self._deliver(0.0):
                await asyncio.to_thread(spool.commit)
        finally:
            self.batch, self.from_spool = [], False
        self.pipeline.progress.set()

    async def _spill(self, records: list[LLMRecord]) -> None:
        """Park ``records`` in the spool; what does not fit is dropped and counted."""
        if not records:
            return
        assert self.spool is not None
        name = self.sink.name
        try:
            lost = await asyncio.to_thread(self.spool.append, records)
        except Exception:
            logger.exception("spooling %d records of sink %s failed; they are dropped", len(records), name)
            lost = len(records)
        stats = self.pipeline.stats
        stats.spooled[name] += len(records) - lost
        stats.sink_dropped[name] += lost
        self.spool_pending = self.spool_pending or lost < len(records)


def _describe(exc: BaseException) -> str:
    """The exception for a log line: our own errors' messages name no content or secret; others by type only."""
    if isinstance(exc, ExportError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__
