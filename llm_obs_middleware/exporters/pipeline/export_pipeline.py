"""The export pipeline: a bounded queue in front of the sinks, and one bounded queue and worker per sink.

The request path only calls :meth:`ExportPipeline.submit`, which appends to a bounded buffer without
awaiting anything. A dispatcher task builds the records (pricing included) in batches and hands each
record to every sink's own buffer; each sink has a worker task that exports batches to it
(:mod:`._sink_worker`). A batch that fails is retried with exponential backoff and jitter until it
goes through (in memory, or from the disk spool with ``queue.spool_dir``), so a sink that is down
never loses records it holds and never slows the other sinks; a batch the sink refuses for good is
split until the record it cannot take is alone, and that one is dropped and counted. Every buffer is
bounded (``queue.max_records``); a full one drops its oldest or the newest record (``queue.on_full``)
and counts it. :meth:`ExportPipeline.close` exports everything queued within
``queue.shutdown_grace_s``; what a sink still holds after that is spooled, or dropped and counted.

Delivery is at least once per sink, and exactly once as long as a sink reports a failed batch as
failed: the log stores upsert by request id, and OTLP spans keep their ids across retries. With a
spool, a crash can send one batch per sink again (the one being exported or replayed when it happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from llm_obs_middleware.config.settings import QueueConfig
from llm_obs_middleware.exporters.pipeline.queue import Buffer
from llm_obs_middleware.exporters.pipeline.sink_worker import SinkWorker
from llm_obs_middleware.records.build import build_record

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange
    from llm_obs_middleware.pricing.base import PriceSource
    from llm_obs_middleware.records.schema import LLMRecord

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


_CLOSE_AT_LEAST_S = 2.0
"""Time each sink gets to close (flush, disconnect) even when the shutdown grace is over."""

RecordTransform = Callable[["LLMRecord"], "LLMRecord"]
"""Applied to every record before any sink sees it (redaction)."""


class Sink(Protocol):
    """Something records are exported to (Prometheus, OTLP, a log store...)."""

    name: str

    async def start(self) -> None:
        """Open connections/files; called once before the first export."""

    async def export(self, records: Sequence[LLMRecord]) -> None:
        """Export one batch, or raise.

        Raises:
            PermanentExportError: the sink refused records it will never take (invalid data): the
                pipeline splits the batch to find them, drops and counts them, and exports the rest.
            Exception: anything else (:class:`~..errors.RetryableExportError` says so explicitly)
                is counted as a failure and the same records are retried later.
        """

    async def close(self) -> None:
        """Flush and release resources."""


class PipelineStats:
    """Counters of the pipeline's own health (also exposed as Prometheus metrics).

    ``dropped`` counts records lost before any sink got them (the front queue full, a record that
    could not be built, a submit after close); ``sink_dropped`` the records one sink never got (its
    queue full, or still unexported when the shutdown grace ran out); ``rejected`` the records a sink
    refused for good (:class:`~..errors.PermanentExportError`). ``failed`` counts records in failed
    export attempts, each retried.
    """

    __slots__ = ("dropped", "exported", "failed", "rejected", "sink_depth", "sink_dropped", "spooled", "submitted")

    def __init__(self) -> None:
        self.submitted = 0
        self.dropped = 0
        self.exported: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.sink_dropped: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.spooled: dict[str, int] = {}
        """Records each sink parked in its disk spool (``queue.spool_dir``) while it was down."""
        self.sink_depth: dict[str, int] = {}
        """Records waiting for each sink (queued or being exported), as of the last :meth:`ExportPipeline.snapshot`."""


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
        self._workers: list[SinkWorker] = []
        """One per sink, made when the tasks start (``sinks`` may be extended until then)."""
        self._dispatcher: asyncio.Task[None] | None = None
        # Read by the sink workers:
        self.closing = asyncio.Event()
        self.progress = asyncio.Event()
        """Set each time the dispatcher or a worker finishes a batch (what :meth:`flush` waits on)."""
        self.deadline = 0.0
        """Loop time the shutdown grace ends (once :attr:`closing` is set)."""
        self.urgent = 0
        """Callers of :meth:`flush` waiting: sinks do not wait for batches to fill."""
        self.spill_at = max(1, self.queue.max_records // 2)
        """A sink backing off spools its queue once it holds this many records."""
        self._building = 0
        """Exchanges the dispatcher took from the queue and is building into records."""
        self._drops_reported: dict[str, int] = {}  # drops already logged, per queue ("" is the front one)
        self._closed = False
        self._count_sinks()

    @property
    def depth(self) -> int:
        """Records not yet exported everywhere: the front queue plus the fullest sink queue."""
        return len(self._ingress) + self._building + max((worker.pending for worker in self._workers), default=0)

    @property
    def dispatched(self) -> bool:
        """The dispatcher has handed the sinks everything it will (it ended, at close)."""
        return self._dispatcher is not None and self._dispatcher.done()

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
        self.urgent += 1
        try:
            for worker in self._workers:
                worker.buffer.wake()
            while (
                len(self._ingress)
                or self._building
                or any(worker.pending or worker.spool_pending for worker in self._workers)
            ):
                self.progress.clear()
                await self.progress.wait()
        finally:
            self.urgent -= 1

    async def close(self) -> None:
        """Export everything queued (within ``queue.shutdown_grace_s``), then close every sink. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.queue.shutdown_grace_s
        self.closing.set()
        if self._dispatcher is not None:
            self._ingress.wake()
            await self._dispatcher
            tasks = [worker.task for worker in self._workers if worker.task is not None]
            for worker in self._workers:
                worker.buffer.wake()
            if tasks:
                # Workers stop by themselves once empty or past the deadline; one stuck in an export is cancelled.
                _, stuck = await asyncio.wait(tasks, timeout=max(0.0, self.deadline - loop.time()) + 0.5)
                for task in stuck:
                    task.cancel()
                for worker in self._workers:
                    if worker.task in stuck:
                        with contextlib.suppress(asyncio.CancelledError):
                            await worker.task
                        await worker.abandon()
        for sink in self.sinks:
            try:
                # Bounded, so a sink that hangs (a locked database) cannot hold the shutdown forever.
                async with asyncio.timeout(max(_CLOSE_AT_LEAST_S, self.deadline - loop.time())):
                    await sink.close()
            except TimeoutError:
                logger.error("closing sink %s did not finish within the shutdown grace", sink.name)
            except Exception:
                logger.exception("closing sink %s failed", sink.name)

    # -- tasks ------------------------------------------------------------------------------------

    def _count_sinks(self) -> None:
        stats = self.stats
        for sink in self.sinks:
            for counter in (
                stats.exported,
                stats.failed,
                stats.rejected,
                stats.sink_dropped,
                stats.spooled,
                stats.sink_depth,
            ):
                counter.setdefault(sink.name, 0)

    def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [SinkWorker(sink, self) for sink in self.sinks]
        self._count_sinks()
        self._dispatcher = loop.create_task(self._dispatch(), name="llm-obs-export")
        for worker in self._workers:
            worker.task = loop.create_task(worker.run(), name=f"llm-obs-export-{worker.sink.name}")

    async def _dispatch(self) -> None:
        ingress = self._ingress
        batch_size = self.queue.batch_size
        while True:
            if not len(ingress):
                if self.closing.is_set():
                    break
                await ingress.wait()
                continue
            exchanges = ingress.take(batch_size)
            self._building = len(exchanges)  # out of the queue, not with the sinks yet: flush() waits for them
            records: list[LLMRecord] = []
            for start in range(0, len(exchanges), LOOP_SLICE):
                records += self._build(exchanges[start : start + LOOP_SLICE])
                await asyncio.sleep(0)  # requests run between two slices, not after a whole batch
            now = asyncio.get_running_loop().time()
            for worker in self._workers:
                if dropped := worker.hand(records, now):
                    self.stats.sink_dropped[worker.sink.name] += dropped
            self._building = 0
            self.progress.set()
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
