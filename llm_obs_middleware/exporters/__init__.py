"""Exporters: the export pipeline and the sinks records go to (Prometheus, OTLP, the log store).

Names load lazily: importing one exporter does not load the others' backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_obs_middleware._lazy import lazy_attributes

if TYPE_CHECKING:
    from llm_obs_middleware.exporters.logstore import SQLiteLogStore, open_log_store
    from llm_obs_middleware.exporters.logstore.api import LogReader, log_routes
    from llm_obs_middleware.exporters.otlp.traces import OTLPSink
    from llm_obs_middleware.exporters.pipeline.export_pipeline import ExportPipeline, PipelineStats, Sink
    from llm_obs_middleware.exporters.prometheus.exporter import PipelineStatsSource, PrometheusSink

__all__ = [
    "ExportPipeline",
    "LogReader",
    "OTLPSink",
    "PipelineStats",
    "PipelineStatsSource",
    "PrometheusSink",
    "SQLiteLogStore",
    "Sink",
    "log_routes",
    "open_log_store",
]

_PIPELINE = "llm_obs_middleware.exporters.pipeline.export_pipeline"
_PROMETHEUS = "llm_obs_middleware.exporters.prometheus.exporter"
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "ExportPipeline": _PIPELINE,
        "PipelineStats": _PIPELINE,
        "Sink": _PIPELINE,
        "LogReader": "llm_obs_middleware.exporters.logstore.api",
        "log_routes": "llm_obs_middleware.exporters.logstore.api",
        "OTLPSink": "llm_obs_middleware.exporters.otlp.traces",
        "PipelineStatsSource": _PROMETHEUS,
        "PrometheusSink": _PROMETHEUS,
        "SQLiteLogStore": "llm_obs_middleware.exporters.logstore",
        "open_log_store": "llm_obs_middleware.exporters.logstore",
    },
)
