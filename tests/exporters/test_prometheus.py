"""PrometheusSink: metric values from records, bounded labels, pipeline health, exposition."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware.exporters.pipeline.export_pipeline import ExportPipeline
from llm_obs_middleware.exporters.prometheus import exporter as prometheus
from llm_obs_middleware.exporters.prometheus.exporter import PrometheusSink
from llm_obs_middleware.records.schema import Cost, Timing, Usage

from .conftest import START_NS, RecordFactory

SERIES = {"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "operation": "chat"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_counts_requests_tokens_and_cost(registry: CollectorRegistry, record_factory: RecordFactory) -> None:
    sink = PrometheusSink(registry)
    usage = Usage(
        input_tokens=1000, output_tokens=200, cache_read_tokens=400, cache_write_tokens=0, reasoning_tokens=50
    )
    await sink.export(
        [
            record_factory(n=1, usage=usage, cost=Cost(total_usd=0.25)),
            record_factory(n=2, usage=usage, cost=Cost(total_usd=0.5)),
            record_factory(n=3, status=503, outcome="upstream_error", error_type="http.503"),
            record_factory(n=4, status=0, outcome="client_disconnected"),
        ]
    )
    assert value(registry, "llm_obs_requests_total", **SERIES, status_class="2xx") == 2
    assert value(registry, "llm_obs_requests_total", **SERIES, status_class="5xx") == 1
    assert value(registry, "llm_obs_requests_total", **SERIES, status_class="none") == 1
    assert value(registry, "llm_obs_errors_total", **SERIES, error_type="http.503") == 1
    assert value(registry, "llm_obs_tokens_total", **SERIES, estimated="false", type="input") == 2000
    assert value(registry, "llm_obs_tokens_total", **SERIES, estimated="false", type="output") == 400
    assert value(registry, "llm_obs_tokens_total", **SERIES, estimated="false", type="cache_read") == 800
    assert value(registry, "llm_obs_tokens_total", **SERIES, estimated="false", type="reasoning") == 100
    # A reported zero adds nothing, so no series is created for it.
    assert value(registry, "llm_obs_tokens_total", **SERIES, estimated="false", type="cache_write") in (None, 0)
    assert value(
        registry, "llm_obs_cost_usd_total", provider="openai", model=SERIES["model"], estimated="false"
    ) == pytest.approx(0.75)
    assert value(registry, "llm_obs_cost_unknown_total", provider="openai", model=SERIES["model"]) == 0
    assert value(registry, "llm_obs_request_duration_seconds_count", **SERIES) == 4
    assert value(registry, "llm_obs_request_duration_seconds_sum", **SERIES) == pytest.approx(2.0)


async def test_latency_histograms_and_streaming(registry: CollectorRegistry, record_factory: RecordFactory) -> None:
    sink = PrometheusSink(registry)
    timing = Timing(
        start_unix_nano=START_NS,
        end_unix_nano=START_NS + 3_000_000_000,
        duration_s=3.0,
        time_to_first_token_s=0.3,
        inter_token_mean_s=0.02,
        chunks=10,
    )
    await sink.export([record_factory(timing=timing, streamed=True, retries=2)])
    assert value(registry, "llm_obs_time_to_first_token_seconds_count", **SERIES) == 1
    assert value(registry, "llm_obs_time_to_first_token_seconds_sum", **SERIES) == pytest.approx(0.3)
    assert value(registry, "llm_obs_time_to_first_token_seconds_bucket", **SERIES, le="0.25") == 0
    assert value(registry, "llm_obs_time_to_first_token_seconds_bucket", **SERIES, le="0.5") == 1
    assert value(registry, "llm_obs_inter_token_latency_seconds_bucket", **SERIES, le="0.025") == 1
    assert value(registry, "llm_obs_inter_token_latency_seconds_bucket", **SERIES, le="0.01") == 0
    assert value(registry, "llm_obs_request_duration_seconds_bucket", **SERIES, le="2.56") == 0
    assert value(registry, "llm_obs_request_duration_seconds_bucket", **SERIES, le="5.12") == 1
    assert value(registry, "llm_obs_streamed_requests_total", **SERIES) == 1
    assert value(registry, "llm_obs_retries_total", **SERIES) == 2


async def test_model_label_falls_back_and_unknown_cost(
    registry: CollectorRegistry, record_factory: RecordFactory
) -> None:
    sink = PrometheusSink(registry)
    await sink.export(
        [
            record_factory(response_model=None, usage=Usage(input_tokens=5, output_tokens=1)),
            record_factory(response_model=None, status=429, error_type=None),
        ]
    )
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(registry, "llm_obs_cost_unknown_total", **labels) == 1
    assert value(registry, "llm_obs_requests_total", **labels, operation="chat", status_class="4xx") == 1
    # Without an error type the HTTP status stands in for it.
    assert value(registry, "llm_obs_errors_total", **labels, operation="chat", error_type="429") == 1


async def test_models_per_provider_are_capped(registry: CollectorRegistry, record_factory: RecordFactory) -> None:
    sink = PrometheusSink(registry, max_models_per_provider=2)
    models = ["m1", "m2", "m3", "m4", "m1"]
    await sink.export([record_factory(n=i, response_model=m) for i, m in enumerate(models)])
    await sink.export([record_factory(provider="anthropic", response_model="m9")])

    def requests(provider: str, model: str) -> float | None:
        return value(
            registry, "llm_obs_requests_total", provider=provider, model=model, operation="chat", status_class="2xx"
        )

    assert requests("openai", "m1") == 2
    assert requests("openai", "m2") == 1
    assert requests("openai", "m3") is None
    assert requests("openai", "other") == 2
    assert requests("anthropic", "m9") == 1  # the cap is per provider


async def test_pipeline_health_is_read_at_scrape_time(
    registry: CollectorRegistry, record_factory: RecordFactory
) -> None:
    sink = PrometheusSink(registry)
    assert value(registry, "llm_obs_export_queue_depth") is None  # nothing bound yet
    pipeline = ExportPipeline([sink])
    sink.bind_pipeline(pipeline)
    pipeline.stats.dropped = 3
    pipeline.stats.exported["prometheus"] = 7
    pipeline.stats.failed["otlp"] = 2
    assert value(registry, "llm_obs_export_queue_depth") == 0
    assert value(registry, "llm_obs_export_records_dropped_total") == 3
    assert value(registry, "llm_obs_export_records_total", sink="prometheus", result="exported") == 7
    assert value(registry, "llm_obs_export_records_total", sink="otlp", result="failed") == 2
    pipeline.stats.dropped = 4
    assert value(registry, "llm_obs_export_records_dropped_total") == 4
    pipeline.stats.sink_dropped["otlp"] = 5
    assert value(registry, "llm_obs_export_records_total", sink="otlp", result="dropped") == 5
    assert value(registry, "llm_obs_export_sink_queue_depth", sink="prometheus") == 0


async def test_sink_queue_depth_is_live(registry: CollectorRegistry, record_factory: RecordFactory) -> None:
    import asyncio

    from llm_obs_middleware.asgi.state import Exchange
    from llm_obs_middleware.config.settings import QueueConfig

    class Stuck:
        name = "stuck"
        gate = asyncio.Event()

        async def start(self) -> None: ...

        async def export(self, records: object) -> None:
            await self.gate.wait()

        async def close(self) -> None: ...

    sink = PrometheusSink(registry)
    stuck = Stuck()
    pipeline = ExportPipeline([sink, stuck], queue=QueueConfig(shutdown_grace_s=0, flush_interval_s=0))
    sink.bind_pipeline(pipeline)
    for n in range(3):
        exchange = Exchange({"method": "POST", "path": "/v1/chat/completions"})
        exchange.is_llm, exchange.provider, exchange.operation, exchange.status = True, "openai", "chat", 200
        exchange.end_ns = exchange.start_ns + n
        pipeline.submit(exchange)
    for _ in range(100):
        await asyncio.sleep(0.001)
        if value(registry, "llm_obs_export_records_total", sink="prometheus", result="exported") == 3:
            break
    assert value(registry, "llm_obs_export_sink_queue_depth", sink="stuck") == 3
    assert value(registry, "llm_obs_export_sink_queue_depth", sink="prometheus") == 0
    assert value(registry, "llm_obs_export_queue_depth") == 3
    stuck.gate.set()
    await pipeline.close()
    assert value(registry, "llm_obs_export_sink_queue_depth", sink="stuck") == 0


def test_stats_source_callable(registry: CollectorRegistry) -> None:
    pipeline = ExportPipeline([])
    pipeline.stats.dropped = 9
    PrometheusSink(registry, lambda: (pipeline.stats, 5))
    assert value(registry, "llm_obs_export_queue_depth") == 5
    assert value(registry, "llm_obs_export_records_dropped_total") == 9


async def test_render_and_private_registries(record_factory: RecordFactory) -> None:
    first, second = PrometheusSink(), PrometheusSink()  # no duplicate-registration error
    assert first.registry is not second.registry
    await first.export([record_factory(usage=Usage(input_tokens=3))])
    body, content_type = first.render()
    assert content_type.startswith("text/plain")
    text = body.decode()
    series = 'model="gpt-4o-mini-2024-07-18",operation="chat",provider="openai"'
    assert f'llm_obs_requests_total{{{series},status_class="2xx"}} 1.0' in text
    assert f'llm_obs_tokens_total{{estimated="false",{series},type="input"}} 3.0' in text
    assert "llm_obs_requests_total" not in second.render()[0].decode().split("# TYPE")[-1]
    await first.start()
    await first.close()


async def test_error_types_are_capped(
    registry: CollectorRegistry, record_factory: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus, "_MAX_ERROR_TYPES", 2)
    sink = PrometheusSink(registry)
    await sink.export([record_factory(n=i, status=500, error_type=f"e{i}") for i in range(4)])
    await sink.export([record_factory(status=500, error_type="e3")])

    def errors(error_type: str) -> float | None:
        return value(registry, "llm_obs_errors_total", **SERIES, error_type=error_type)

    assert (errors("e0"), errors("e1"), errors("e2")) == (1, 1, None)
    assert errors("other") == 3
