"""Build the export pipeline and its sinks from the config (one place, used by the stack and gateway)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    meter_provider = None
    if exporters.prometheus.enabled:
        from llm_obs_middleware.exporters.prometheus.exporter import PrometheusSink

        prometheus = PrometheusSink(registry, config=exporters.prometheus)
        sinks.append(prometheus)
    if (exporters.otlp is not None and exporters.otlp.enabled) or span_exporter is not None or tracer_provider:
        from llm_obs_middleware.config.settings import OTLPConfig
        from llm_obs_middleware.exporters.otlp.traces import OTLPSink

        otlp_config = exporters.otlp or OTLPConfig(endpoint="http://127.0.0.1:4318")
        otlp_sink = OTLPSink(
            otlp_config,
            service_name=config.service_name,
            tracer_provider=tracer_provider,
            span_exporter=span_exporter,
        )
        tracer_provider = otlp_sink.tracer_provider
        sinks.append(otlp_sink)
        if otlp_config.metrics and exporters.otlp is not None and exporters.otlp.enabled:
            from llm_obs_middleware.exporters.otlp.metrics import OTLPMetricsSink

            metrics_sink = OTLPMetricsSink(otlp_config, service_name=config.service_name)
            meter_provider = metrics_sink.meter_provider
            sinks.append(metrics_sink)
    log_store = None
    store_url = exporters.log_store.url or default_log_store_url
    if exporters.log_store.enabled and store_url is not None:
        from llm_obs_middleware.exporters.logstore import open_log_store

        log_store = open_log_store(msgspec.structs.replace(exporters.log_store, url=store_url))
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
    return Exporters(pipeline, prometheus, log_store, price_source, tracer_provider, meter_provider)
