"""Tokens and cost agree across /metrics, OTLP spans and /logs, and with what the fake provider reported.

Nothing in between is mocked: the gateway runs under uvicorn on loopback and calls the fake provider
over loopback; the official openai SDK sends one plain and one streamed chat (the stream without
``include_usage``, so the router's own usage request is what prices it); ``/metrics`` is scraped as
Prometheus text, ``/logs`` read over HTTP, and spans decoded by an OTLP/HTTP receiver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer, OTLPReceiver

from .conftest import config_dict

FAKE = FakeProviderConfig(prompt_tokens=2_000, cached_tokens=1_536, completion_tokens=300, reasoning_tokens=100)
# gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million tokens (reasoning billed as
# output). genai-prices 0.2.3 data.py openai "gpt-4o-mini"; https://openai.com/api/pricing/.
INPUT_USD = (2_000 - 1_536) * 0.15 / 1e6  # $0.0000696
CACHE_READ_USD = 1_536 * 0.075 / 1e6  # $0.0001152
OUTPUT_USD = 300 * 0.60 / 1e6  # $0.00018
ONE_REQUEST_USD = INPUT_USD + CACHE_READ_USD + OUTPUT_USD  # $0.0003648
LABELS = {"provider": "openai", "model": "gpt-4o-mini"}


@pytest.fixture(autouse=True)
def _plain_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


def samples(metrics_text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, keyed by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
    }


def sample(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def exported(http: httpx.Client, base: str) -> tuple[list[dict[str, Any]], dict[Any, float]]:
    """/logs and /metrics once both sinks hold the two records (they export independently)."""
    deadline = time.monotonic() + 10
    while True:
        records: list[dict[str, Any]] = http.get(base + "/logs").json()["data"]
        found = samples(http.get(base + "/metrics").text)
        requests = sample(found, "llm_obs_requests_total", **LABELS, operation="chat", status_class="2xx")
        if len(records) == 2 and requests == 2:
            return records, found
        assert time.monotonic() < deadline, f"sinks did not get both records: {len(records)} logged, {requests}"
        time.sleep(0.02)


def test_tokens_and_cost_agree_across_metrics_spans_and_logs(fake: FakeProviderServer, tmp_path: Path) -> None:
    with OTLPReceiver("http") as receiver:
        data = config_dict(fake.url, tmp_path)
        data["exporters"].update(prometheus={"enabled": True}, otlp={"endpoint": receiver.endpoint, "protocol": "http"})
        with BackgroundServer(create_gateway(Config.from_dict(data))) as server, httpx.Client() as http:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="client-key", http_client=http, max_retries=0)
            plain = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            assert all(chunk.usage is None for chunk in stream), "the client did not ask for usage"
            assert plain.usage is not None and plain.usage.prompt_tokens == FAKE.prompt_tokens
            records, found = exported(http, server.url)
        spans = [span for span in receiver.wait_for(6) if span["kind"] == "CLIENT"]  # 2 x (SERVER, CLIENT, attempt)

    # /logs: each record carries the fake's usage and the hand-computed cost, split by component.
    assert sorted(record["streamed"] for record in records) == [False, True]
    for record in records:
        usage, cost = record["usage"], record["cost"]
        assert (usage["input_tokens"], usage["cache_read_tokens"]) == (FAKE.prompt_tokens, FAKE.cached_tokens)
        assert (usage["output_tokens"], usage["reasoning_tokens"]) == (FAKE.completion_tokens, FAKE.reasoning_tokens)
        assert record["estimated"] is False
        assert cost["input_usd"] == pytest.approx(INPUT_USD, rel=1e-9)
        assert cost["cache_read_usd"] == pytest.approx(CACHE_READ_USD, rel=1e-9)
        assert cost["output_usd"] == pytest.approx(OUTPUT_USD, rel=1e-9)
        assert cost["total_usd"] == pytest.approx(ONE_REQUEST_USD, rel=1e-9)

    # /metrics: the two requests summed.
    tokens = {"operation": "chat", "estimated": "false", **LABELS}
    assert sample(found, "llm_obs_tokens_total", **tokens, type="input") == 2 * FAKE.prompt_tokens
    assert sample(found, "llm_obs_tokens_total", **tokens, type="cache_read") == 2 * FAKE.cached_tokens
    assert sample(found, "llm_obs_tokens_total", **tokens, type="output") == 2 * 300
    assert sample(found, "llm_obs_tokens_total", **tokens, type="reasoning") == 2 * FAKE.reasoning_tokens
    assert sample(found, "llm_obs_cost_usd_total", **LABELS, estimated="false") == pytest.approx(2 * ONE_REQUEST_USD)
    for component, usd in (("input", INPUT_USD), ("cache_read", CACHE_READ_USD), ("output", OUTPUT_USD)):
        metric = sample(found, "llm_obs_cost_component_usd_total", **LABELS, component=component)
        assert metric == pytest.approx(2 * usd), component
    assert sample(found, "llm_obs_cost_unknown_total", **LABELS) in (None, 0.0)

    # OTLP spans, as decoded off the wire: one per record, with the same figures.
    by_id = {str(span["attributes"]["llm_obs.request_id"]): span["attributes"] for span in spans}
    assert set(by_id) == {record["request_id"] for record in records}
    for attrs in by_id.values():
        assert attrs["gen_ai.usage.input_tokens"] == FAKE.prompt_tokens
        assert attrs["gen_ai.usage.output_tokens"] == 300
        assert attrs["gen_ai.usage.cache_read.input_tokens"] == FAKE.cached_tokens
        assert attrs["gen_ai.usage.reasoning.output_tokens"] == FAKE.reasoning_tokens
        assert attrs["llm_obs.cost.usd"] == pytest.approx(ONE_REQUEST_USD, rel=1e-9)
