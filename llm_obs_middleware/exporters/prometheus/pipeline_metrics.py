"""Prometheus view of the export pipeline: queue depth, drops and per-sink results.

Read at scrape time from the pipeline's counters by a custom collector, so it costs nothing between
scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeAlias

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_obs_middleware.exporters.pipeline.export_pipeline import PipelineStats

__all__ = ["PipelineCollector", "PipelineStatsSource"]

PipelineStatsSource: TypeAlias = Callable[[], tuple[PipelineStats, int]]
"""Returns the pipeline's counters and its current queue depth; called at scrape time."""


class PipelineCollector:
    """Reads the export pipeline's counters when Prometheus scrapes."""

    def __init__(self) -> None:
        self.source: PipelineStatsSource | None = None

    def describe(self) -> Iterable[Metric]:
        # Registering calls describe() so the names are reserved without touching the source.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        if self.source is None:
            return ()
        stats, depth = self.source()
        depth_family, dropped, records, sink_depth = self._families()
        depth_family.add_metric([], depth)
        dropped.add_metric([], stats.dropped)
        for result, counts in (
            ("exported", stats.exported),
            ("failed", stats.failed),
            ("dropped", stats.sink_dropped),
            ("rejected", stats.rejected),
            ("spooled", stats.spooled),
        ):
            for sink, count in sorted(counts.items()):
                records.add_metric([sink, result], count)
        for sink, count in sorted(stats.sink_depth.items()):
            sink_depth.add_metric([sink], count)
        return depth_family, dropped, records, sink_depth

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("llm_obs_export_queue_depth", "Records not yet exported to every sink."),
            CounterMetricFamily(
                "llm_obs_export_records_dropped",
                "Records dropped before reaching the sinks: the export queue was full or a record unbuildable.",
            ),
            CounterMetricFamily(
                "llm_obs_export_records",
                "Records per sink by result: exported; failed (an attempt, retried); dropped (sink queue full, "
                "or unexported when the shutdown grace ended); rejected (refused by the sink for good, dropped); "
                "spooled (parked on disk while the sink was down or slow).",
                labels=("sink", "result"),
            ),
            GaugeMetricFamily("llm_obs_export_sink_queue_depth", "Records waiting for each sink.", labels=("sink",)),
        )
