"""Build the export pipeline and its sinks from the config (one place, used by the stack and gateway)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import msgspec

from llm_obs_middleware.exporters.pipeline.export_pipeline import ExportPipeline, Sink

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from prometheus_client import CollectorRegistry

    from llm_obs_middleware.config.settings import Config
    from llm_obs_middleware.exporters.logstore import SQLLogStore
    from llm_obs_middleware.exporters.prometheus.exporter import PrometheusSink
    from llm_obs_middleware.pricing.base import PriceSource

__all__ = ["Exporters", "build_exporters"]


class Exporters:
    """The pipeline plus the sinks the gateway serves from (``/metrics``, ``/logs``)."""

    __slots__ = ("log_store", "meter_provider", "pipeline", "price_source", "prometheus", "tracer_provider")

    def __init__(
        self,
        pipeline: ExportPipeline,
        prometheus: PrometheusSink | None,
        log_store: SQLLogStore | None,
        price_source: PriceSource | None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.tracer_provider = tracer_provider
        """The provider LLM spans go through (``None`` without OTLP)."""
        self.meter_provider = meter_provider
        """The provider of the OTLP GenAI metrics (``None`` without ``otlp.metrics``)."""
        self.prometheus = prometheus
        self.log_store = log_store
        self.price_source = price_source


def build_exporters(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
    span_exporter: SpanExporter | None = None,
    price_source: PriceSource | None = None,
    default_log_store_url: str | None = None,
) -> Exporters:
    """Sinks named by ``config.exporters``; runtime objects (registry, tracer provider) override defaults.

    ``default_log_store_url`` is where records are stored when ``exporters.log_store.url`` is unset: the
    gateway passes its SQLite file; a middleware stack passes nothing, so it stores nothing unless told where.
    """
    exporters = config.exporters
    sinks: list[Sink] = []
    prometheus = None
    if exporters.prometheus.enabled:
        from llm_obs_middleware.exporters.prometheus.exporter import PrometheusSink

        prometheus = PrometheusSink(registry, config=exporters.prometheus)
        sinks.append(prometheus)
    otlp = _otlp_sinks(config, tracer_provider, span_exporter)
    sinks += otlp.sinks
    log_store = _log_store(config, default_log_store_url)
    if log_store is not None:
        sinks.append(log_store)
    if exporters.jsonl is not None and exporters.jsonl.enabled:
        from llm_obs_middleware.exporters.jsonl import JSONLSink

        sinks.append(JSONLSink(exporters.jsonl))
    if price_source is None:
        from llm_obs_middleware.pricing.chain import build_price_source

        price_source = build_price_source(config.pricing)  # reads pricing.overrides now: errors at start-up
    from llm_obs_middleware.exporters.pipeline.redact import configured_secrets, redactor

    pipeline = ExportPipeline(
        sinks,
        price_source=price_source,
        queue=config.queue,
        capture_content=config.capture_content,
        transform=redactor(config.redact, configured_secrets(config)),
    )
    if prometheus is not None:
        prometheus.bind_pipeline(pipeline)
    return Exporters(pipeline, prometheus, log_store, price_source, otlp.tracer_provider, otlp.meter_provider)


class _OTLPSinks(NamedTuple):
    sinks: list[Sink]
    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None


def _otlp_sinks(
    config: Config, tracer_provider: TracerProvider | None, span_exporter: SpanExporter | None
) -> _OTLPSinks:
    """The OTLP trace sink (when configured, or when the caller passes a tracer provider or span exporter)
    and the GenAI metrics sink (``otlp.metrics``)."""
    otlp = config.exporters.otlp
    if not ((otlp is not None and otlp.enabled) or span_exporter is not None or tracer_provider):
        return _OTLPSinks([], tracer_provider, None)
    from llm_obs_middleware.config.settings import OTLPConfig
    from llm_obs_middleware.exporters.otlp.traces import OTLPSink

    otlp_config = otlp or OTLPConfig(endpoint="http://127.0.0.1:4318")
    traces = OTLPSink(
        otlp_config, service_name=config.service_name, tracer_provider=tracer_provider, span_exporter=span_exporter
    )
    if not (otlp_config.metrics and otlp is not None and otlp.enabled):
        return _OTLPSinks([traces], traces.tracer_provider, None)
    from llm_obs_middleware.exporters.otlp.metrics import OTLPMetricsSink

    metrics = OTLPMetricsSink(otlp_config, service_name=config.service_name)
    return _OTLPSinks([traces, metrics], traces.tracer_provider, metrics.meter_provider)


def _log_store(config: Config, default_url: str | None) -> SQLLogStore | None:
    """The log store ``exporters.log_store`` names (its URL, else ``default_url``; none without either)."""
    settings = config.exporters.log_store
    url = settings.url or default_url
    if not settings.enabled or url is None:
        return None
    from llm_obs_middleware.exporters.logstore import open_log_store

    return open_log_store(msgspec.structs.replace(settings, url=url))
