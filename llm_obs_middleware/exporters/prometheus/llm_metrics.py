"""The per-record Prometheus metrics: their definitions, label policy and per-series children.

Names take the ``llm_obs_`` prefix and base units (seconds, tokens, USD). Labels are bounded:
provider, model, operation, status class and error type only, never a user, key, id or path.
"""

from __future__ import annotations

from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram

from llm_obs_middleware.config.settings import PrometheusConfig, PrometheusLabel

__all__ = ["OTHER", "LLMMetrics", "LabelPolicy", "Series", "status_class"]

OTHER: Final = "other"
"""The label value standing for every value past a cap or outside an allow-list."""
_SERIES: Final = ("provider", "model", "operation")
_TOKEN_TYPES: Final = ("input", "output", "cache_read", "cache_write", "reasoning")
# Bucket boundaries advised by the OpenTelemetry GenAI metrics conventions
# (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/): gen_ai.client.operation.duration,
# gen_ai.server.time_to_first_token and gen_ai.server.time_per_output_token.
_DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TTFT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_ITL_BUCKETS: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


class LLMMetrics:
    """Every per-record metric, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, documentation: str, labels: tuple[str, ...] = _SERIES) -> Counter:
            return Counter(name, documentation, labels, registry=registry)

        def histogram(name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, documentation, _SERIES, buckets=buckets, registry=registry)

        self.requests = counter("llm_obs_requests", "LLM requests seen.", (*_SERIES, "status_class"))
        self.errors = counter("llm_obs_errors", "LLM requests that ended in error.", (*_SERIES, "error_type"))
        self.request_duration = histogram(
            "llm_obs_request_duration_seconds", "Time from request to the last response byte.", _DURATION_BUCKETS
        )
        self.time_to_first_token = histogram(
            "llm_obs_time_to_first_token_seconds", "Time from request to the first generated token.", _TTFT_BUCKETS
        )
        self.inter_token_latency = histogram(
            "llm_obs_inter_token_latency_seconds",
            "Mean time between two streamed tokens, one observation per streamed request.",
            _ITL_BUCKETS,
        )
        self.tokens = counter(
            "llm_obs_tokens",
            "Tokens used, by type; estimated when the provider reported none.",
            (*_SERIES, "type", "estimated"),
        )
        self.cost_usd = counter(
            "llm_obs_cost_usd",
            "Cost in US dollars; estimated when its tokens were.",
            ("provider", "model", "estimated"),
        )
        self.cost_components = counter(
            "llm_obs_cost_component_usd",
            "Cost in US dollars by component (input, cache_read, cache_write, output, other).",
            ("provider", "model", "component"),
        )
        self.cost_unknown = counter(
            "llm_obs_cost_unknown", "Requests with token usage but no known price.", ("provider", "model")
        )
        self.streamed_requests = counter("llm_obs_streamed_requests", "Streamed LLM requests.")
        self.retries = counter("llm_obs_retries", "Upstream attempts beyond the first.")
        self.fallbacks = counter("llm_obs_fallbacks", "Requests served by a fallback alias.")


class LabelPolicy:
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
        return value if allowed is None or value in allowed else OTHER


def status_class(status: int) -> str:
    """``"2xx"``, ``"4xx"``... for an HTTP status; ``"none"`` when no response started."""
    return f"{status // 100}xx" if 100 <= status <= 999 else "none"


class Series:
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

    def __init__(self, metrics: LLMMetrics, labels: tuple[str, str, str]) -> None:
        provider, model, _ = labels
        self.labels = labels
        self.duration = metrics.request_duration.labels(*labels)
        self.ttft = metrics.time_to_first_token.labels(*labels)
        self.itl = metrics.inter_token_latency.labels(*labels)
        self.streamed = metrics.streamed_requests.labels(*labels)
        self.retries = metrics.retries.labels(*labels)
        self.fallbacks = metrics.fallbacks.labels(*labels)
        self.tokens = tuple(metrics.tokens.labels(*labels, kind, "false") for kind in _TOKEN_TYPES)
        self.cost = metrics.cost_usd.labels(provider, model, "false")
        # estimated="true" children exist only once an estimated record arrives: no empty series.
        self.tokens_estimated: tuple[Counter, ...] = ()
        self.cost_estimated = self.cost
        self.cost_unknown = metrics.cost_unknown.labels(provider, model)
        self.requests: dict[str, Counter] = {}
        self.errors: dict[str, Counter] = {}
        # Cost component children, made on a component's first non-zero cost (no empty series).
        self.components: dict[str, Counter] = {}

    def estimated(self, metrics: LLMMetrics) -> tuple[tuple[Counter, ...], Counter]:
        """The token and cost children labelled ``estimated="true"``."""
        if not self.tokens_estimated:
            self.tokens_estimated = tuple(metrics.tokens.labels(*self.labels, kind, "true") for kind in _TOKEN_TYPES)
            self.cost_estimated = metrics.cost_usd.labels(*self.labels[:2], "true")
        return self.tokens_estimated, self.cost_estimated
