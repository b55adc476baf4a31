"""GenAI client metrics (``exporters.otlp.metrics``) as the real OTLP receiver decodes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.config.settings import OTLPConfig
from llm_obs_middleware.exporters.otlp.metrics import DURATION_BUCKETS, TOKEN_BUCKETS, TTFT_BUCKETS, OTLPMetricsSink
from llm_obs_middleware.records.schema import Timing, Usage
from llm_obs_middleware.testing import FakeProviderConfig, FakeProviderServer, OTLPReceiver
from llm_obs_middleware.testing.otlp_receiver import ReceivedMetricPoint

from ..conftest import config_dict
from .conftest import START_NS, RecordFactory

FAKE = FakeProviderConfig(prompt_tokens=40, completion_tokens=9, chunks=3)


@pytest.fixture(autouse=True)
def _plain_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


def by_type(points: list[ReceivedMetricPoint]) -> dict[Any, ReceivedMetricPoint]:
    return {point["attributes"].get("gen_ai.token.type"): point for point in points}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_gateway_traffic_becomes_genai_metrics(protocol: str, fake: FakeProviderServer, tmp_path: Path) -> None:
    with OTLPReceiver(protocol) as receiver:  # type: ignore[arg-type]
        data = config_dict(fake.url, tmp_path, service_name="metrics-test")
        data["exporters"]["otlp"] = {
            "endpoint": receiver.endpoint,
            "protocol": protocol,
            "metrics": True,
            "server_spans": False,
        }
        gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
        await gateway.startup()
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw.test") as client:
            for stream in (False, False, True):
                assert (await client.post("/v1/chat/completions", json={**chat, "stream": stream})).status_code == 200
        await gateway.shutdown()  # the last export happens at shutdown
        tokens = by_type(receiver.latest_metrics("gen_ai.client.token.usage"))
        durations = receiver.latest_metrics("gen_ai.client.operation.duration")
        ttft = receiver.latest_metrics("gen_ai.server.time_to_first_token")

    assert set(tokens) == {"input", "output"}
    assert (tokens["input"]["count"], tokens["input"]["value"]) == (3, 3 * 40)
    assert (tokens["output"]["count"], tokens["output"]["value"]) == (3, 3 * 9)
    inputs = tokens["input"]
    assert inputs["type"] == "histogram" and inputs["unit"] == "{token}"
    assert inputs["explicit_bounds"] == list(TOKEN_BUCKETS)
    assert inputs["bucket_counts"][TOKEN_BUCKETS.index(64)] == 3  # 40 tokens fall in (16, 64]
    assert inputs["attributes"]["gen_ai.operation.name"] == "chat"
    assert inputs["attributes"]["gen_ai.provider.name"] == "openai"
    assert inputs["attributes"]["gen_ai.request.model"] == "gpt-4o-mini"
    assert inputs["resource"]["service.name"] == "metrics-test"
    assert inputs["protocol"] == protocol
    [duration] = durations
    assert duration["count"] == 3 and duration["unit"] == "s" and duration["explicit_bounds"] == list(DURATION_BUCKETS)
    assert "error.type" not in duration["attributes"]
    [first_token] = ttft
    assert first_token["count"] == 1 and first_token["explicit_bounds"] == list(TTFT_BUCKETS)


async def test_errors_carry_error_type_and_nothing_is_recorded_after_close(record_factory: RecordFactory) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    sink = OTLPMetricsSink(OTLPConfig(), metric_reader=reader)
    timing = Timing(start_unix_nano=START_NS, end_unix_nano=START_NS + 10**9, duration_s=1.0, time_to_first_token_s=0.2)
    await sink.export(
        [
            record_factory(n=1, status=429, error_type="rate_limited", streamed=True, timing=timing),
            record_factory(n=2, usage=Usage(input_tokens=5)),
        ]
    )
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    duration_points: list[Any] = list(metrics["gen_ai.client.operation.duration"].data.data_points)
    assert sorted(str(p.attributes.get("error.type")) for p in duration_points) == ["None", "rate_limited"]
    # A failed stream's first-token time is not a TTFT; only the input count is known for record 2.
    assert "gen_ai.server.time_to_first_token" not in metrics
    token_points: list[Any] = list(metrics["gen_ai.client.token.usage"].data.data_points)
    [token_point] = token_points
    assert token_point.attributes["gen_ai.token.type"] == "input" and token_point.sum == 5
    await sink.close()
    await sink.export([record_factory(n=3)])  # ignored, no error
