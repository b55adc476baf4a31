"""A real Prometheus server scrapes the gateway, and a real Pushgateway takes its pushes.

The gateway runs under uvicorn on loopback in front of the fake provider; Prometheus (Debian's
``prometheus``) scrapes its ``/metrics`` every second, and the gateway pushes to a Pushgateway
(Debian's ``prometheus-pushgateway``) that Prometheus scrapes too. The totals Prometheus' query API
and the Pushgateway's ``/metrics`` return must equal what the log store recorded.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import FakeProviderConfig, FakeProviderServer
from llm_obs_middleware.testing.server import BackgroundServer

from ..conftest import config_dict
from ._prometheus_servers import Prometheus, pushgateway, running_prometheus

FAKE = FakeProviderConfig(prompt_tokens=13, completion_tokens=5, chunks=3)
PUSH_JOB = "llm_obs_push_test"


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


def _eventually(read: Callable[[], Any], expected: Any, timeout: float = 30.0) -> Any:
    """Poll ``read`` until it returns ``expected`` (scrapes and pushes happen on their own clock)."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    return value


def _drive(base_url: str) -> list[dict[str, Any]]:
    """Plain and streamed chats on two models; returns what ``/logs`` recorded for them."""
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        for index in range(6):
            body = {**chat, "model": "gpt-4o-mini" if index % 2 else "fast", "stream": index % 3 == 0}
            reply = client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 20
        while True:
            records: list[dict[str, Any]] = client.get("/logs").json()["data"]
            if len(records) == 6 or time.monotonic() > deadline:
                return records
            time.sleep(0.1)


def _token_sum(records: list[dict[str, Any]], field: str, model: str | None = None) -> float:
    return float(sum(r["usage"][field] for r in records if model is None or r["response_model"] == model))


def _pushed(url: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` with ``labels`` in the Pushgateway's ``/metrics``."""
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_prometheus_and_pushgateway_totals_match_the_records(fake: FakeProviderServer, tmp_path: Path) -> None:
    with pushgateway(tmp_path) as push_url:
        data = config_dict(fake.url, tmp_path)
        data["exporters"]["prometheus"] = {"pushgateway": push_url, "push_interval_s": 0.2, "push_job": PUSH_JOB}
        data["queue"] = {"flush_interval_s": 0.05}
        gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
        with BackgroundServer(gateway, lifespan="on") as server:
            targets = {
                "llm_gateway": server.url.removeprefix("http://"),
                "pushgateway": push_url.removeprefix("http://"),
            }
            with running_prometheus(tmp_path, targets) as prometheus:
                records = _drive(server.url)
                assert len(records) == 6
                input_total, output_total = _token_sum(records, "input_tokens"), _token_sum(records, "output_tokens")
                assert (input_total, output_total) == (6 * 13, 6 * 5)
                _check_prometheus(prometheus, records, input_total, output_total)
                _check_pushgateway(push_url, prometheus, input_total, output_total)


def _check_prometheus(prometheus: Prometheus, records: list[dict[str, Any]], inputs: float, outputs: float) -> None:
    scraped = '{job="llm_gateway"}'
    tokens = 'sum by (type) (llm_obs_tokens_total{job="llm_gateway", type=~"input|output"})'

    def token_totals() -> dict[str, float]:
        return {row["metric"]["type"]: float(row["value"][1]) for row in prometheus.query(tokens)}

    assert _eventually(token_totals, {"input": inputs, "output": outputs}) == {"input": inputs, "output": outputs}
    assert prometheus.scalar(f"sum(llm_obs_requests_total{scraped})") == 6
    # Per model: the label is the model that answered (the alias "fast" is served by gpt-4o).
    models = {record["response_model"] for record in records}
    assert len(models) == 2
    for model in models:
        query = f'sum(llm_obs_tokens_total{{job="llm_gateway", model="{model}", type="input"}})'
        assert prometheus.scalar(query) == _token_sum(records, "input_tokens", model)
    cost = sum(record["cost"]["total_usd"] for record in records)
    assert cost > 0
    scraped_cost = prometheus.scalar(f"sum(llm_obs_cost_usd_total{scraped})")
    assert scraped_cost is not None and math.isclose(scraped_cost, cost, rel_tol=1e-9)
    up = {target["labels"]["job"]: target["health"] for target in prometheus.targets_up()}
    assert up["llm_gateway"] == "up"


def _check_pushgateway(push_url: str, prometheus: Prometheus, inputs: float, outputs: float) -> None:
    def pushed_input() -> float:
        return _pushed(push_url, "llm_obs_tokens_total", job=PUSH_JOB, type="input")

    assert _eventually(pushed_input, inputs) == inputs
    assert _pushed(push_url, "llm_obs_tokens_total", job=PUSH_JOB, type="output") == outputs
    assert _pushed(push_url, "llm_obs_requests_total", job=PUSH_JOB) == 6
    # And through Prometheus scraping the Pushgateway (honor_labels keeps the pushed job label).
    query = f'sum(llm_obs_tokens_total{{job="{PUSH_JOB}", type="output"}})'
    assert _eventually(lambda: prometheus.scalar(query), outputs) == outputs


def test_push_reaches_a_real_pushgateway_and_close_pushes_the_last_state(
    tmp_path: Path, record_factory: Callable[..., Any]
) -> None:
    from llm_obs_middleware.config.settings import PrometheusConfig
    from llm_obs_middleware.exporters import PrometheusSink
    from llm_obs_middleware.records.schema import Usage

    with pushgateway(tmp_path) as push_url:
        # A push interval far longer than the test: only close() pushes.
        config = PrometheusConfig(pushgateway=push_url, push_interval_s=3600, push_job="close_push")
        sink = PrometheusSink(CollectorRegistry(), config=config)

        async def run() -> None:
            await sink.start()
            await sink.export([record_factory(n=n, usage=Usage(input_tokens=10, output_tokens=n)) for n in (1, 2, 3)])
            assert _pushed(push_url, "llm_obs_tokens_total", job="close_push") == 0  # nothing pushed yet
            await sink.close()

        asyncio.run(run())
        assert _pushed(push_url, "llm_obs_tokens_total", job="close_push", type="input") == 30
        assert _pushed(push_url, "llm_obs_tokens_total", job="close_push", type="output") == 6
        # Grouped by instance (host:pid), so several gateway processes do not overwrite each other.
        text = httpx.get(f"{push_url}/metrics", timeout=5.0).text
        assert f':{os.getpid()}"' in text
