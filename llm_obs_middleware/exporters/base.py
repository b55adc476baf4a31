"""The export pipeline: a bounded queue drained by one background task that feeds every sink.

The request path only calls :meth:`ExportPipeline.submit` (``put_nowait``); building the record,
pricing it and every sink's I/O happen in the worker. A full queue drops the newest record and
counts it. ``close()`` flushes everything queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from .._record import build_record

if TYPE_CHECKING:
    from ..pricing.base import PriceSource
    from ..schema import LLMRecord
    from ..state import Exchange

__all__ = ["ExportPipeline", "PipelineStats", "Sink"]

logger = logging.getLogger("llm_obs_middleware.export")


class Sink(Protocol):
    """Something records are exported to (Prometheus, OTLP, a log store...)."""

    name: str

    async def start(self) -> None:
        """Open connections/files; called once before the first export."""

    async def export(self, records: Sequence[LLMRecord]) -> None:
        """Export one batch. May raise: the pipeline logs and counts the failure."""

    async def close(self) -> None:
        """Flush and release resources."""


class PipelineStats:
    """Counters of the pipeline's own health (also exposed as Prometheus metrics)."""

    __slots__ = ("dropped", "exported", "failed", "submitted")

    def __init__(self) -> None:
        self.submitted = 0
        self.dropped = 0
        self.exported: dict[str, int] = {}
        self.failed: dict[str, int] = {}


class ExportPipeline:
    """Bounded queue + worker task + sinks.

    Args:
        sinks: where records go, in order.
        price_source: prices each record (``None``: no cost is computed).
        queue_size: records held at most before new ones are dropped (and counted).
        batch_size: records handed to each sink per call.
        capture_content: keep prompts/completions in records.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        price_source: PriceSource | None = None,
        queue_size: int = 10_000,
        batch_size: int = 256,
        capture_content: bool = False,
    ) -> None:
        self.sinks = list(sinks)
        self.price_source = price_source
        self.batch_size = batch_size
        self.capture_content = capture_content
        self.stats = PipelineStats()
        self._queue_size = queue_size
        self._queue: asyncio.Queue[Exchange | None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    @property
    def depth(self) -> int:
        """Records waiting in the queue."""
        return self._queue.qsize() if self._queue is not None else 0

    def submit(self, exchange: Exchange) -> None:
        """Queue a finished exchange without awaiting anything; drop and count when full."""
        if self._worker is None:
            self._spawn()
        assert self._queue is not None
        self.stats.submitted += 1
        try:
            self._queue.put_nowait(exchange)
        except asyncio.QueueFull:
            self.stats.dropped += 1

    async def start(self) -> None:
        """Start the worker now (lifespan startup); otherwise it starts on the first record."""
        if self._worker is None:
            self._spawn()

    async def close(self) -> None:
        """Export everything queued, then close every sink. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None and self._queue is not None:
            await self._queue.put(None)
            await self._worker
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception:
                logger.exception("closing sink %s failed", sink.name)

    async def flush(self) -> None:
        """Wait until every record queued so far has been exported (tests, demo)."""
        if self._queue is not None:
            await self._queue.join()

    def _spawn(self) -> None:
        self._queue = asyncio.Queue(self._queue_size)
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="llm-obs-export")

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        for sink in self.sinks:
            try:
                await sink.start()
            except Exception:
                logger.exception("starting sink %s failed", sink.name)
        while True:
            first = await queue.get()
            batch = [first]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            stop = None in batch
            exchanges = [item for item in batch if item is not None]
            if exchanges:
                await self._export(exchanges)
            for _ in batch:
                queue.task_done()
            if stop:
                return

    async def _export(self, exchanges: list[Exchange]) -> None:
        records: list[LLMRecord] = []
        for exchange in exchanges:
            try:
                records.append(build_record(exchange, self.price_source, capture_content=self.capture_content))
            except Exception:
                logger.exception("building a record failed; it is counted as dropped")
                self.stats.dropped += 1
        for sink in self.sinks:
            try:
                await sink.export(records)
            except Exception:
                logger.exception("sink %s failed to export %d records", sink.name, len(records))
                self.stats.failed[sink.name] = self.stats.failed.get(sink.name, 0) + len(records)
            else:
                self.stats.exported[sink.name] = self.stats.exported.get(sink.name, 0) + len(records)
