"""Prometheus label allow-lists and the Pushgateway (a recording HTTP server on loopback)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
from llm_obs_middleware.config.settings import PrometheusConfig
from llm_obs_middleware.exporters.prometheus.exporter import PrometheusSink, _instance
from llm_obs_middleware.testing import BackgroundServer

from .conftest import RecordFactory


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_dropped_dimensions_are_empty_and_aggregate(record_factory: RecordFactory) -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, config=PrometheusConfig(labels=["provider", "status_class"]))
    await sink.export(
        [
            record_factory(n=1, response_model="a"),
            record_factory(n=2, response_model="b", operation="embeddings"),
            record_factory(n=3, response_model="c", status=500, error_type="boom"),
        ]
    )
    empty = {"model": "", "operation": ""}
    assert value(registry, "llm_obs_requests_total", provider="openai", status_class="2xx", **empty) == 2
    assert value(registry, "llm_obs_requests_total", provider="openai", status_class="5xx", **empty) == 1
    assert value(registry, "llm_obs_errors_total", provider="openai", error_type="", **empty) == 1
    assert value(registry, "llm_obs_request_duration_seconds_count", provider="openai", **empty) == 3
    body = sink.render()[0].decode()
    assert 'model="a"' not in body and "boom" not in body


async def test_values_outside_the_allow_list_become_other(record_factory: RecordFactory) -> None:
    registry = CollectorRegistry()
    config = PrometheusConfig(allowed_values={"model": ["gpt-4o"], "provider": ["openai"]})
    sink = PrometheusSink(registry, config=config)
    await sink.export(
        [
            record_factory(n=1, response_model="gpt-4o"),
            record_factory(n=2, response_model="tenant-fine-tune-123"),
            record_factory(n=3, response_model="gpt-4o", provider="acme-proxy"),
        ]
    )
    labels = {"operation": "chat", "status_class": "2xx"}
    assert value(registry, "llm_obs_requests_total", provider="openai", model="gpt-4o", **labels) == 1
    assert value(registry, "llm_obs_requests_total", provider="openai", model="other", **labels) == 1
    assert value(registry, "llm_obs_requests_total", provider="other", model="gpt-4o", **labels) == 1


class RecordingPushgateway:
    """What a Pushgateway receives: the method, path and body of every push."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, str, bytes]] = []
        self.arrived = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.pushes.append((scope["method"], scope["path"], body))
        self.arrived.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_pushes_periodically_and_at_close(record_factory: RecordFactory) -> None:
    gateway = RecordingPushgateway()
    with BackgroundServer(gateway, lifespan="off") as server:
        config = PrometheusConfig(pushgateway=server.url, push_interval_s=0.05, push_job="gw-test")
        sink = PrometheusSink(CollectorRegistry(), config=config)
        await sink.start()
        await sink.export([record_factory(n=1)])
        assert await asyncio.to_thread(gateway.arrived.wait, 5)
        await sink.export([record_factory(n=2), record_factory(n=3)])
        await sink.close()
    instance = _instance()["instance"]
    method, path, _ = gateway.pushes[0]
    assert (method, path) == ("PUT", f"/metrics/job/gw-test/instance/{instance}")
    last = gateway.pushes[-1][2].decode()
    series = 'model="gpt-4o-mini-2024-07-18",operation="chat",provider="openai",status_class="2xx"'
    assert f"llm_obs_requests_total{{{series}}} 3.0" in last  # the final push has the final values


async def test_a_pushgateway_that_is_down_is_logged_not_raised(
    record_factory: RecordFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sink = PrometheusSink(CollectorRegistry(), config=PrometheusConfig(pushgateway="http://127.0.0.1:9"))
    await sink.start()
    await sink.export([record_factory(n=1)])
    await sink.close()
    assert "pushing metrics to the Pushgateway at http://127.0.0.1:9 failed" in caplog.text
    assert PrometheusSink(CollectorRegistry()).push() is False  # none configured


def test_config_rejects_unknown_labels() -> None:
    from llm_obs_middleware import Config, ConfigurationError

    with pytest.raises(ConfigurationError, match=r"exporters\.prometheus\.labels"):
        Config.from_dict({"exporters": {"prometheus": {"labels": ["user_id"]}}})
    with pytest.raises(ConfigurationError, match="push_interval_s"):
        Config.from_dict({"exporters": {"prometheus": {"push_interval_s": 0}}})
