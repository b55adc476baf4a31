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
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, TypeAlias, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    push_to_gateway,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from llm_obs_middleware.config.settings import PrometheusConfig, PrometheusLabel
from llm_obs_middleware.exporters.pipeline.export_pipeline import LOOP_SLICE, PipelineStats
from llm_obs_middleware.exporters.prometheus.routing_metrics import HealthSource, RoutingCollector

if TYPE_CHECKING:
    from llm_obs_middleware.exporters.pipeline.export_pipeline import ExportPipeline
    from llm_obs_middleware.records.schema import Cost, LLMRecord

__all__ = ["PipelineStatsSource", "PrometheusSink"]

PipelineStatsSource: TypeAlias = Callable[[], tuple[PipelineStats, int]]
"""Returns the pipeline's counters and its current queue depth; called at scrape time."""

logger = logging.getLogger("llm_obs_middleware.export")

_OTHER: Final = "other"
_SERIES: Final = ("provider", "model", "operation")
_TOKEN_TYPES: Final = ("input", "output", "cache_read", "cache_write", "reasoning")
# Bucket boundaries advised by the OpenTelemetry GenAI metrics conventions
# (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/): gen_ai.client.operation.duration,
# gen_ai.server.time_to_first_token and gen_ai.server.time_per_output_token.
_DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TTFT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_ITL_BUCKETS: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_MAX_ERROR_TYPES: Final = 100


class _LabelPolicy:
    """Maps label values through the configured allow-lists (a dropped dimension becomes ``""``)."""

    __slots__ = ("active", "allowed", "keep")

    def __init__(self, config: PrometheusConfig) -> None:
        self.keep = frozenset(config.labels)
        self.allowed = {label: frozenset(values) for label, values in config.allowed_values.items()}
        self.active = bool(self.allowed) or len(self.keep) < len(get_args(PrometheusLabel))

    def __call__(self, label: str, value: str) -> str:
        if label not in self.keep:
            return ""  # Prometheus: an empty label value is the same as no label
        allowed = self.allowed.get(label)
        return value if allowed is None or value in allowed else _OTHER


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


def _status_class(status: int) -> str:
    """``"2xx"``, ``"4xx"``... for an HTTP status; ``"none"`` when no response started."""
    return f"{status // 100}xx" if 100 <= status <= 999 else "none"


class _Series:
    """The metric children of one (provider, model, operation), resolved once: ``labels()`` costs ~1 µs."""

    __slots__ = (
        "components",
        "cost",
        "cost_estimated",
        "cost_unknown",
        "duration",
        "errors",
        "fallbacks",
        "itl",
        "labels",
        "requests",
        "retries",
        "streamed",
        "tokens",
        "tokens_estimated",
        "ttft",
    )

    def __init__(self, sink: PrometheusSink, labels: tuple[str, str, str]) -> None:
        provider, model, _ = labels
        self.labels = labels
        self.duration = sink.request_duration.labels(*labels)
        self.ttft = sink.time_to_first_token.labels(*labels)
        self.itl = sink.inter_token_latency.labels(*labels)
        self.streamed = sink.streamed_requests.labels(*labels)
        self.retries = sink.retries.labels(*labels)
        self.fallbacks = sink.fallbacks.labels(*labels)
        self.tokens = tuple(sink.tokens.labels(*labels, kind, "false") for kind in _TOKEN_TYPES)
        self.cost = sink.cost_usd.labels(provider, model, "false")
        # estimated="true" children exist only once an estimated record arrives: no empty series.
        self.tokens_estimated: tuple[Counter, ...] = ()
        self.cost_estimated = self.cost
        self.cost_unknown = sink.cost_unknown.labels(provider, model)
        self.requests: dict[str, Counter] = {}
        self.errors: dict[str, Counter] = {}
        # Cost component children, made on a component's first non-zero cost (no empty series).
        self.components: dict[str, Counter] = {}

    def estimated(self, sink: PrometheusSink) -> tuple[tuple[Counter, ...], Counter]:
        """The token and cost children labelled ``estimated="true"``."""
        if not self.tokens_estimated:
            self.tokens_estimated = tuple(sink.tokens.labels(*self.labels, kind, "true") for kind in _TOKEN_TYPES)
            self.cost_estimated = sink.cost_usd.labels(*self.labels[:2], "true")
        return self.tokens_estimated, self.cost_estimated


class _PipelineCollector:
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
        self._labels = _LabelPolicy(self.config)
        self._push_task: asyncio.Task[None] | None = None
        reg = self.registry
        self.requests = Counter("llm_obs_requests", "LLM requests seen.", (*_SERIES, "status_class"), registry=reg)
        self.errors = Counter(
            "llm_obs_errors", "LLM requests that ended in error.", (*_SERIES, "error_type"), registry=reg
        )
        self.request_duration = Histogram(
            "llm_obs_request_duration_seconds",
            "Time from request to the last response byte.",
            _SERIES,
            buckets=_DURATION_BUCKETS,
            registry=reg,
        )
        self.time_to_first_token = Histogram(
            "llm_obs_time_to_first_token_seconds",
            "Time from request to the first generated token.",
            _SERIES,
            buckets=_TTFT_BUCKETS,
            registry=reg,
        )
        self.inter_token_latency = Histogram(
            "llm_obs_inter_token_latency_seconds",
            "Mean time between two streamed tokens, one observation per streamed request.",
            _SERIES,
            buckets=_ITL_BUCKETS,
            registry=reg,
        )
        self.tokens = Counter(
            "llm_obs_tokens",
            "Tokens used, by type; estimated when the provider reported none.",
            (*_SERIES, "type", "estimated"),
            registry=reg,
        )
        self.cost_usd = Counter(
            "llm_obs_cost_usd",
            "Cost in US dollars; estimated when its tokens were.",
            ("provider", "model", "estimated"),
            registry=reg,
        )
        self.cost_components = Counter(
            "llm_obs_cost_component_usd",
            "Cost in US dollars by component (input, cache_read, cache_write, output, other).",
            ("provider", "model", "component"),
            registry=reg,
        )
        self.cost_unknown = Counter(
            "llm_obs_cost_unknown",
            "Requests with token usage but no known price.",
            ("provider", "model"),
            registry=reg,
        )
        self.streamed_requests = Counter("llm_obs_streamed_requests", "Streamed LLM requests.", _SERIES, registry=reg)
        self.retries = Counter("llm_obs_retries", "Upstream attempts beyond the first.", _SERIES, registry=reg)
        self.fallbacks = Counter("llm_obs_fallbacks", "Requests served by a fallback alias.", _SERIES, registry=reg)
        self._routing = RoutingCollector()
        reg.register(self._routing)
        self._pipeline = _PipelineCollector()
        self._pipeline.source = pipeline_stats_source
        reg.register(self._pipeline)
        self._series: dict[tuple[str, str, str], _Series] = {}
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
        model = record.response_model or record.requested_model or "unknown"
        policy = self._labels
        if policy.active:
            key = (policy("provider", record.provider), policy("model", model), policy("operation", record.operation))
        else:
            key = (record.provider, model, record.operation)
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
        klass = (
            _status_class(record.status) if not policy.active else policy("status_class", _status_class(record.status))
        )
        requests = series.requests.get(klass)
        if requests is None:
            requests = series.requests[klass] = self.requests.labels(*series.labels, klass)
        requests.inc()
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
        tokens, cost = series.estimated(self) if record.estimated else (series.tokens, series.cost)
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

    def _new_series(self, key: tuple[str, str, str]) -> _Series:
        provider, model, operation = key
        models = self._models.setdefault(provider, set())
        if model not in models:
            if len(models) >= self.max_models_per_provider:
                # Past the cap every new model shares one "other" series, bounding memory and cardinality.
                label_key = (provider, _OTHER, operation)
                series = self._series.get(label_key) or _Series(self, label_key)
                self._series[label_key] = series
                return series
            models.add(model)
        series = self._series[key] = _Series(self, key)
        return series

    def _count_cost_components(self, series: _Series, cost: Cost) -> None:
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
                    child = children[component] = self.cost_components.labels(*series.labels[:2], component)
                child.inc(usd)

    def _count_error(self, series: _Series, error_type: str) -> None:
        if self._labels.active:
            error_type = self._labels("error_type", error_type)
        counter = series.errors.get(error_type)
        if counter is None:
            if error_type not in self._error_types:
                # Error types can carry upstream text; keep their number bounded like models.
                if len(self._error_types) >= _MAX_ERROR_TYPES:
                    error_type = _OTHER
                else:
                    self._error_types.add(error_type)
            counter = series.errors[error_type] = self.errors.labels(*series.labels, error_type)
        counter.inc()
