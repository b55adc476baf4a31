"""Prometheus metrics from records, updated in the export worker and served by :meth:`PrometheusSink.render`.

Names take the ``llm_obs_`` prefix and base units (seconds, tokens, USD). Labels are bounded:
provider, model, operation, status class and error type only, never a user, key, id or path. Model
names come from clients and upstreams, so each provider keeps at most ``max_models_per_provider``
distinct model labels and reports the rest as ``other``.

The export pipeline's own health (queue depth, drops, per-sink results) is read at scrape time by a
custom collector, so it costs nothing between scrapes.

Several worker processes: ``llm-obs serve --workers N`` gives its workers a private
``PROMETHEUS_MULTIPROC_DIR`` (removed at exit); under ``uvicorn --workers N`` set it yourself to an
empty directory before the workers start (prometheus-client then keeps every counter and histogram in
memory-mapped files there). Any worker answering ``/metrics`` then serves the sum over all workers,
through prometheus-client's ``MultiProcessCollector``; the pipeline and routing health figures are
those of the worker that answered (they are live per-process state, not counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.multiprocess import MultiProcessCollector

from llm_obs_middleware.config.settings import PrometheusConfig
from llm_obs_middleware.exporters.pipeline.export_pipeline import LOOP_SLICE
from llm_obs_middleware.exporters.prometheus.llm_metrics import OTHER, LabelPolicy, LLMMetrics, Series, status_class
from llm_obs_middleware.exporters.prometheus.pipeline_metrics import PipelineCollector, PipelineStatsSource
from llm_obs_middleware.exporters.prometheus.routing_metrics import HealthSource, RoutingCollector

if TYPE_CHECKING:
    from llm_obs_middleware.exporters.pipeline.export_pipeline import ExportPipeline
    from llm_obs_middleware.records.schema import Cost, LLMRecord

__all__ = ["PipelineStatsSource", "PrometheusSink"]

logger = logging.getLogger("llm_obs_middleware.export")

_MAX_ERROR_TYPES: Final = 100


def _instance() -> dict[str, str]:
    """The Pushgateway grouping key: one group per process, so instances do not overwrite each other."""
    return {"instance": f"{socket.gethostname()}:{os.getpid()}"}


def _closing_handler(
    url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
) -> Callable[[], None]:
    """prometheus-client's push, closing the response (its default handler leaves the socket to the GC)."""

    def handle() -> None:
        request = urllib.request.Request(url, data=data, method=method)
        for name, value in headers:
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except urllib.error.HTTPError as exc:
            exc.close()
            raise OSError(f"error talking to pushgateway: {exc.code} {exc.reason}") from None

    return handle


class PrometheusSink:
    """Updates Prometheus metrics from every record; implements :class:`~.base.Sink`.

    Args:
        registry: where the metrics are registered. Defaults to a new ``CollectorRegistry`` (not the
            process-global one), so several gateways in one process do not clash.
        pipeline_stats_source: returns ``(PipelineStats, queue_depth)`` at scrape time; or call
            :meth:`bind_pipeline` once the pipeline exists.
        max_models_per_provider: distinct ``model`` label values kept per provider; later ones
            are reported as ``other``.
        config: the label allow-lists and the Pushgateway (``exporters.prometheus``).
    """

    name = "prometheus"

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        pipeline_stats_source: PipelineStatsSource | None = None,
        *,
        max_models_per_provider: int = 200,
        config: PrometheusConfig | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.max_models_per_provider = max_models_per_provider
        self.config = config if config is not None else PrometheusConfig()
        self._labels = LabelPolicy(self.config)
        self._push_task: asyncio.Task[None] | None = None
        self.metrics = LLMMetrics(self.registry)
        self._routing = RoutingCollector()
        self.registry.register(self._routing)
        self._pipeline = PipelineCollector()
        self._pipeline.source = pipeline_stats_source
        self.registry.register(self._pipeline)
        self._series: dict[tuple[str, str, str], Series] = {}
        # Read once at construction (never at import): prometheus-client's own switch for the mmap files.
        self._multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self._models: dict[str, set[str]] = {}
        self._error_types: set[str] = set()

    def bind_routing(self, health: HealthSource) -> None:
        """Expose the router's deployment and key health (read at scrape time)."""
        self._routing.source = health

    def bind_pipeline(self, pipeline: ExportPipeline) -> None:
        """Expose ``pipeline``'s queue depth, drops and per-sink results."""
        self._pipeline.source = lambda: (pipeline.snapshot(), pipeline.depth)

    def render(self) -> tuple[bytes, str]:
        """The metrics in the Prometheus text format: ``(body, content_type)``; in multiprocess mode the
        counters and histograms of every worker, summed."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped upstream
        registry.register(self._routing)
        registry.register(self._pipeline)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    async def start(self) -> None:
        """Start pushing to the Pushgateway, if one is configured (metrics otherwise wait to be scraped)."""
        if self.config.pushgateway and self._push_task is None:
            self._push_task = asyncio.get_running_loop().create_task(self._push_loop(), name="llm-obs-pushgateway")

    async def close(self) -> None:
        """Push the final values to the Pushgateway, if one is configured."""
        if self._push_task is not None:
            self._push_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._push_task
            self._push_task = None
            await asyncio.to_thread(self.push)

    def push(self) -> bool:
        """Push every metric to the Pushgateway now (blocking); ``False`` (logged) if it failed."""
        url = self.config.pushgateway
        if not url:
            return False
        try:
            # PUT: the registry holds the whole state, so it replaces this instance's group each time.
            push_to_gateway(
                url,
                job=self.config.push_job,
                registry=self.registry,
                grouping_key=_instance(),
                timeout=10,
                handler=_closing_handler,
            )
        except Exception as exc:  # the Pushgateway being down never reaches a request
            logger.warning("pushing metrics to the Pushgateway at %s failed: %r", url, exc)
            return False
        return True

    async def _push_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.push_interval_s)
            await asyncio.to_thread(self.push)

    async def export(self, records: Sequence[LLMRecord]) -> None:
        for start in range(0, len(records), LOOP_SLICE):
            for record in records[start : start + LOOP_SLICE]:
                self.observe(record)
            await asyncio.sleep(0)

    def observe(self, record: LLMRecord) -> None:
        """Update every metric from one record (synchronous, a few microseconds)."""
        series = self._count_request(record)
        error_type = record.error_type or (str(record.status) if record.status >= 400 else None)
        if error_type is not None:
            self._count_error(series, error_type)
        timing = record.timing
        series.duration.observe(timing.duration_s)
        if timing.time_to_first_token_s is not None:
            series.ttft.observe(timing.time_to_first_token_s)
        if timing.inter_token_mean_s is not None:
            series.itl.observe(timing.inter_token_mean_s)
        if record.streamed:
            series.streamed.inc()
        if record.retries:
            series.retries.inc(record.retries)
        if record.fallback_index:
            series.fallbacks.inc()
        usage = record.usage
        tokens, cost = series.estimated(self.metrics) if record.estimated else (series.tokens, series.cost)
        if usage is not None:
            for child, count in zip(
                tokens,
                (
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_tokens,
                    usage.cache_write_tokens,
                    usage.reasoning_tokens,
                ),
                strict=True,
            ):
                if count:
                    child.inc(count)
        if record.cost is not None:
            cost.inc(record.cost.total_usd)
            self._count_cost_components(series, record.cost)
        elif usage is not None and (usage.input_tokens or usage.output_tokens):
            series.cost_unknown.inc()

    def _count_request(self, record: LLMRecord) -> Series:
        """Count the request under its (allowed) labels; return the series of its provider, model and operation."""
        model = record.response_model or record.requested_model or "unknown"
        policy = self._labels
        klass = status_class(record.status)
        if policy.active:
            key = (policy("provider", record.provider), policy("model", model), policy("operation", record.operation))
            klass = policy("status_class", klass)
        else:
            key = (record.provider, model, record.operation)
        series = self._series.get(key) or self._new_series(key)
        requests = series.requests.get(klass)
        if requests is None:
            requests = series.requests[klass] = self.metrics.requests.labels(*series.labels, klass)
        requests.inc()
        return series

    def _new_series(self, key: tuple[str, str, str]) -> Series:
        provider, model, operation = key
        models = self._models.setdefault(provider, set())
        if model not in models:
            if len(models) >= self.max_models_per_provider:
                # Past the cap every new model shares one "other" series, bounding memory and cardinality.
                label_key = (provider, OTHER, operation)
                series = self._series.get(label_key) or Series(self.metrics, label_key)
                self._series[label_key] = series
                return series
            models.add(model)
        series = self._series[key] = Series(self.metrics, key)
        return series

    def _count_cost_components(self, series: Series, cost: Cost) -> None:
        children = series.components
        for component, usd in (
            ("input", cost.input_usd),
            ("cache_read", cost.cache_read_usd),
            ("cache_write", cost.cache_write_usd),
            ("output", cost.output_usd),
            ("other", cost.other_usd),
        ):
            if usd:
                child = children.get(component)
                if child is None:
                    child = children[component] = self.metrics.cost_components.labels(*series.labels[:2], component)
                child.inc(usd)

    def _count_error(self, series: Series, error_type: str) -> None:
        if self._labels.active:
            error_type = self._labels("error_type", error_type)
        counter = series.errors.get(error_type)
        if counter is None:
            if error_type not in self._error_types:
                # Error types can carry upstream text; keep their number bounded like models.
                if len(self._error_types) >= _MAX_ERROR_TYPES:
                    error_type = OTHER
                else:
                    self._error_types.add(error_type)
            counter = series.errors[error_type] = self.metrics.errors.labels(*series.labels, error_type)
        counter.inc()
