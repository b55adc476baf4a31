"""Exporters: the export pipeline and the sinks records go to (Prometheus, OTLP, the log store)."""

from __future__ import annotations

from .base import ExportPipeline, PipelineStats, Sink
from .logstore import SQLiteLogStore, open_log_store
from .logstore.api import LogReader, log_routes
from .otlp import OTLPSink
from .prometheus import PipelineStatsSource, PrometheusSink

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
