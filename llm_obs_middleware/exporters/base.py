"""The export pipeline: a bounded queue in front of the sinks, and one bounded queue and worker per sink.

The request path only calls :meth:`ExportPipeline.submit`, which appends to a bounded buffer without
awaiting anything. A dispatcher task builds the records (pricing included) in batches and hands each
record to every sink's own buffer; each sink has a worker task that exports batches to it. A batch
that fails is retried with exponential backoff and jitter until it goes through, so a sink that is
down never loses records it holds and never slows the other sinks. Every buffer is bounded
(``queue.max_records``); a full one drops its oldest or the newest record (``queue.on_full``) and
counts it. :meth:`ExportPipeline.close` exports everything queued within ``queue.shutdown_grace_s``;
what a sink still holds after that is dropped and counted.

Delivery is at least once per sink, and exactly once as long as a sink reports a failed batch as
failed: the log stores upsert by request id, and OTLP spans keep their ids across retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from .._record import build_record
from ..config import QueueConfig
from ._queue import Buffer
from .spool import Spool

if TYPE_CHECKING:
    from ..pricing.base import PriceSource
    from ..schema import LLMRecord
    from ..state import Exchange

__all__ = [
    "LOOP_SLICE",
    "THREAD_SLICE",
    "ExportPipeline",
    "PipelineStats",
    "RecordTransform",
    "Sink",
    "give_way_to_the_loop",
]

logger = logging.getLogger("llm_obs_middleware.export")

LOOP_SLICE = 32
"""Records the export worker handles on the event loop between two yields to it: a batch of 256 at
~10-20 µs per record per step would otherwise hold requests up for milliseconds (p99 at low concurrency)."""

THREAD_SLICE = 32
"""Records (or spans) an export thread handles between two calls of :func:`give_way_to_the_loop`."""


def give_way_to_the_loop() -> None:
    """Called from an export thread between slices of work. ``time.sleep(0)`` releases the GIL, and the
    event loop, when it waits for it, runs first; otherwise requests wait for up to Python's 5 ms switch
    interval at a time while a thread encodes or builds rows (p99 at low concurrency)."""
    time.sleep(0)


RecordTransform = Callable[["LLMRecord"], "LLMRecord"]
"""Applied to every record before any sink sees it (redaction)."""


class Sink(Protocol):
    """Something records are exported to (Prometheus, OTLP, a log store...)."""

    name: str

    async def start(self) -> None:
        """Open connections/files; called once before the first export."""

    async def export(self, records: Sequence[LLMRecord]) -> None:
        """Export one batch, or raise: the pipeline counts the failure and retries the same batch later."""

    async def close(self) -> None:
        """Flush and release resources."""


class PipelineStats:
    """Counters of the pipeline's own health (also exposed as Prometheus metrics).

    ``dropped`` counts records lost before any sink got them (the front queue full, a record that
    could not be built, a submit after close); ``sink_dropped`` the records one sink never got (its
    queue full, or still unexported when the shutdown grace ran out). ``failed`` counts records in
    failed export attempts, each retried.
    """

    __slots__ = ("dropped", "exported", "failed", "sink_depth", "sink_dropped", "spooled", "submitted")

    def __init__(self) -> None:
        self.submitted = 0
        self.dropped = 0
        self.exported: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.sink_dropped: dict[str, int] = {}
        self.spooled: dict[str, int] = {}
        """Records each sink parked in its disk spool (``queue.spool_dir``) while it was down."""
        self.sink_depth: dict[str, int] = {}
        """Records waiting for each sink (queued or being exported), as of the last :meth:`ExportPipeline.snapshot`."""


class _SinkWorker:
    __slots__ = ("batch", "buffer", "from_spool", "sink", "spool", "spool_pending", "task")

    def __init__(self, sink: Sink, queue: QueueConfig) -> None:
        self.sink = sink
        self.buffer: Buffer[LLMRecord] = Buffer(queue.max_records, queue.on_full == "drop_oldest")
        self.batch: list[LLMRecord] = []
        """The batch being exported (and retried)."""
        self.from_spool = False
        """The batch was read from the spool (which keeps it until it is exported)."""
        self.spool = Spool(queue.spool_dir, sink.name, queue.spool_max_bytes) if queue.spool_dir else None
        self.spool_pending = self.spool is not None
        """The spool may hold records (checked on disk when the sink is idle)."""
        self.task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self.buffer) + len(self.batch)


class ExportPipeline:
    """Bounded queues + a dispatcher task + one worker task per sink.

    Args:
        sinks: where records go.
        price_source: prices each record (``None``: no cost is computed).
        queue: bounds, drop policy, batching, retry backoff and shutdown grace.
        capture_content: keep prompts/completions in records.
        transform: applied to each record before the sinks get it (e.g. redaction).
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        price_source: PriceSource | None = None,
        queue: QueueConfig | None = None,
        capture_content: bool = False,
        transform: RecordTransform | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.price_source = price_source
        self.queue = queue if queue is not None else QueueConfig()
        self.capture_content = capture_content
        self.transform = transform
        self.stats = PipelineStats()
        self._ingress: Buffer[Exchange] = Buffer(self.queue.max_records, self.queue.on_full == "drop_oldest")
        self._workers: list[_SinkWorker] = []
        """One per sink, made when the tasks start (``sinks`` may be extended until then)."""
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._progress = asyncio.Event()
        """Set each time the dispatcher or a worker finishes a batch (what :meth:`flush` waits on)."""
        self._deadline = 0.0
        self._urgent = 0
        self._building = 0
        """Exchanges the dispatcher took from the queue and is building into records."""
        self._drops_reported: dict[str, int] = {}  # drops already logged, per queue ("" is the front one)
        self._spill_at = max(1, self.queue.max_records // 2)
        self._closed = False
        self._count_sinks()

    @property
    def depth(self) -> int:
        """Records not yet exported everywhere: the front queue plus the fullest sink queue."""
        return len(self._ingress) + self._building + max((worker.pending for worker in self._workers), default=0)

    def snapshot(self) -> PipelineStats:
        """The counters, with each sink's queue depth refreshed (called at scrape time)."""
        for worker in self._workers:
            self.stats.sink_depth[worker.sink.name] = worker.pending
        return self.stats

    def submit(self, exchange: Exchange) -> None:
        """Queue a finished exchange without awaiting anything; a full queue drops one record and counts it."""
        self.stats.submitted += 1
        if not self.sinks:
            return  # nowhere to go: not even worth building (and pricing) the record
        if self._closed:
            self.stats.dropped += 1
            return
        if self._dispatcher is None:
            self._spawn()
        self.stats.dropped += self._ingress.put(exchange)

    async def start(self) -> None:
        """Start the tasks now (lifespan startup); otherwise they start with the first record."""
        if self._dispatcher is None and not self._closed:
            self._spawn()

    async def flush(self) -> None:
        """Wait until every record queued so far is exported everywhere (tests, demo).

        Sinks waiting to fill a batch (``queue.flush_interval_s``) export at once meanwhile. A sink
        that stays down keeps this waiting: bound it with ``asyncio.timeout``.
        """
        self._urgent += 1
        try:
            for worker in self._workers:
                worker.buffer.wake()
            while (
                len(self._ingress)
                or self._building
                or any(worker.pending or worker.spool_pending for worker in self._workers)
            ):
                self._progress.clear()
                await self._progress.wait()
        finally:
            self._urgent -= 1

    async def close(self) -> None:
        """Export everything queued (within ``queue.shutdown_grace_s``), then close every sink. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.queue.shutdown_grace_s
        self._closing.set()
        if self._dispatcher is not None:
            self._ingress.wake()
            await self._dispatcher
            tasks = [worker.task for worker in self._workers if worker.task is not None]
            for worker in self._workers:
                worker.buffer.wake()
            if tasks:
                # Workers stop by themselves once empty or past the deadline; one stuck in an export is cancelled.
                _, stuck = await asyncio.wait(tasks, timeout=max(0.0, self._deadline - loop.time()) + 0.5)
                for task in stuck:
                    task.cancel()
                for worker in self._workers:
                    if worker.task in stuck:
                        with contextlib.suppress(asyncio.CancelledError):
                            await worker.task
                        await self._abandon(worker)
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception:
                logger.exception("closing sink %s failed", sink.name)

    # -- tasks ------------------------------------------------------------------------------------

    def _count_sinks(self) -> None:
        stats = self.stats
        for sink in self.sinks:
            for counter in (stats.exported, stats.failed, stats.sink_dropped, stats.spooled, stats.sink_depth):
                counter.setdefault(sink.name, 0)

    def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [_SinkWorker(sink, self.queue) for sink in self.sinks]
        self._count_sinks()
        self._dispatcher = loop.create_task(self._dispatch(), name="llm-obs-export")
        for worker in self._workers:
            worker.task = loop.create_task(self._run_sink(worker), name=f"llm-obs-export-{worker.sink.name}")

    async def _dispatch(self) -> None:
        ingress = self._ingress
        batch_size = self.queue.batch_size
        while True:
            if not len(ingress):
                if self._closing.is_set():
                    break
                await ingress.wait()
                continue
            exchanges = ingress.take(batch_size)
            self._building = len(exchanges)  # out of the queue, not with the sinks yet: flush() waits for them
            records: list[LLMRecord] = []
            for start in range(0, len(exchanges), LOOP_SLICE):
                records += self._build(exchanges[start : start + LOOP_SLICE])
                await asyncio.sleep(0)  # requests run between two slices, not after a whole batch
            for worker in self._workers:
                self._hand(worker, records)
            self._building = 0
            self._progress.set()
            self._report_drops()
        for worker in self._workers:
            worker.buffer.wake()

    def _build(self, exchanges: Iterable[Exchange]) -> list[LLMRecord]:
        records: list[LLMRecord] = []
        for exchange in exchanges:
            try:
                record = build_record(exchange, self.price_source, capture_content=self.capture_content)
                if self.transform is not None:
                    record = self.transform(record)
            except Exception:
                logger.exception("building a record failed; it is counted as dropped")
                self.stats.dropped += 1
            else:
                records.append(record)
        return records

    def _report_drops(self) -> None:
        """A warning per queue that dropped records since the last batch: one line per batch, never one
        per record (that would add work to the overload that caused the drops)."""
        stats, reported = self.stats, self._drops_reported
        for queue, count in (("", stats.dropped), *stats.sink_dropped.items()):
            new = count - reported.get(queue, 0)
            if new > 0:
                reported[queue] = count
                where = f"sink {queue}'s queue" if queue else "the export queue (full, or a record could not be built)"
                fields = {"event": "records_dropped", "sink": queue or None, "dropped": new, "dropped_total": count}
                logger.warning("%d records dropped at %s (%d in all)", new, where, count, extra={"llm_obs": fields})

    def _hand(self, worker: _SinkWorker, records: list[LLMRecord]) -> None:
        put = worker.buffer.put
        dropped = 0
        for record in records:
            dropped += put(record)
        if dropped:
            self.stats.sink_dropped[worker.sink.name] += dropped

    async def _run_sink(self, worker: _SinkWorker) -> None:
        sink, buffer = worker.sink, worker.buffer
        loop = asyncio.get_running_loop()
        try:
            await sink.start()
        except Exception:  # sinks connect again on export, where failures are retried
            logger.exception("starting sink %s failed", sink.name)
        batch_size, linger = self.queue.batch_size, self.queue.flush_interval_s
        while True:
            if self._closing.is_set() and loop.time() >= self._deadline and len(buffer):
                await self._abandon(worker)
            if not len(buffer):
                if worker.spool_pending and not self._closing.is_set():
                    await self._replay(worker)
                    continue
                if self._closing.is_set() and self._dispatcher is not None and self._dispatcher.done():
                    return
                await buffer.wait()
                continue
            if linger and len(buffer) < batch_size and not (self._closing.is_set() or self._urgent):
                buffer.wake_at = batch_size
                await buffer.wait(linger)
                buffer.wake_at = 1
            worker.batch = buffer.take(batch_size)
            await self._deliver(worker)
            worker.batch = []
            self._progress.set()

    async def _replay(self, worker: _SinkWorker) -> None:
        """Export the oldest spooled batch (the sink is idle); the spool forgets it once exported."""
        spool = worker.spool
        assert spool is not None
        worker.batch = await asyncio.to_thread(spool.peek, self.queue.batch_size)
        if not worker.batch:
            worker.spool_pending = False
            self._progress.set()
            return
        worker.from_spool = True
        try:
            if await self._deliver(worker):
                await asyncio.to_thread(spool.commit)
        finally:
            worker.batch, worker.from_spool = [], False
        self._progress.set()

    async def _spill(self, worker: _SinkWorker, records: list[LLMRecord]) -> None:
        """Park ``records`` in the sink's spool; what does not fit is dropped and counted."""
        assert worker.spool is not None
        try:
            lost = await asyncio.to_thread(worker.spool.append, records)
        except Exception:
            logger.exception("spooling %d records of sink %s failed; they are dropped", len(records), worker.sink.name)
            lost = len(records)
        name = worker.sink.name
        self.stats.spooled[name] += len(records) - lost
        self.stats.sink_dropped[name] += lost
        worker.spool_pending = worker.spool_pending or lost < len(records)

    async def _deliver(self, worker: _SinkWorker) -> bool:
        """Export ``worker.batch``, retrying with backoff; ``False`` if the shutdown grace ended first."""
        sink, batch, stats = worker.sink, worker.batch, self.stats
        loop = asyncio.get_running_loop()
        backoff = self.queue.retry_initial_backoff_s
        failures = 0
        while True:
            try:
                await sink.export(batch)
            except Exception as exc:
                failures += 1
                stats.failed[sink.name] += len(batch)
                if failures == 1:
                    logger.warning(
                        "sink %s failed to export %d records (%r); retrying with backoff", sink.name, len(batch), exc
                    )
                delay = min(backoff, self.queue.retry_max_backoff_s) * random.uniform(0.8, 1.2)
                backoff *= 2
                if self._closing.is_set() and loop.time() + delay >= self._deadline:
                    logger.error("sink %s still failing at shutdown; %d records left", sink.name, worker.pending)
                    await self._abandon(worker)
                    return False
                await self._backoff(worker, delay)
                continue
            stats.exported[sink.name] += len(batch)
            if failures:
                logger.warning("sink %s exported again after %d failed attempts", sink.name, failures)
            return True

    async def _backoff(self, worker: _SinkWorker, delay: float) -> None:
        """Wait ``delay`` before a retry; meanwhile move what queues up to the spool, if there is one."""
        loop = asyncio.get_running_loop()
        until, closing, buffer = loop.time() + delay, self._closing.is_set(), worker.buffer
        # Woken when the queue reaches the spill mark (with a spool), or by close() / flush().
        buffer.wake_at = self._spill_at if worker.spool is not None else sys.maxsize
        try:
            while (remaining := until - loop.time()) > 0:
                if worker.spool is not None and len(buffer) >= self._spill_at:
                    # Down for a while: move what waits to disk rather than let the queue overflow.
                    await self._spill(worker, buffer.take(len(buffer)))
                    continue
                await buffer.wait(remaining)
                if self._closing.is_set() and not closing:
                    return  # cut short by close(): a sink that has come back gets its records within the grace
        finally:
            buffer.wake_at = 1

    async def _abandon(self, worker: _SinkWorker) -> None:
        """The shutdown grace is over: spool what ``worker`` still holds, or count it as dropped."""
        # A batch read from the spool is still in it (uncommitted): the next process replays it.
        held = ([] if worker.from_spool else worker.batch) + worker.buffer.take(len(worker.buffer))
        worker.batch = []
        if held and worker.spool is not None:
            await self._spill(worker, held)
        else:
            self.stats.sink_dropped[worker.sink.name] += len(held)
        self._progress.set()
