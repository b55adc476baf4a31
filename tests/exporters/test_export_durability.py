"""Nothing is lost: a collector outage under steady traffic, and SIGTERM with records still queued.

Real components only: the stock OTLP exporters against :class:`OTLPReceiver` over loopback (stopped
and restarted on the same port, as a collector restart looks), and a real ``llm-obs serve`` process
writing to SQLite.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import FakeProviderServer, OTLPReceiver, create_fake_provider

from ..conftest import config_dict

CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def _plain_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_collector_outage_under_steady_traffic_loses_and_duplicates_nothing(
    protocol: Literal["http", "grpc"], tmp_path: Path
) -> None:
    receiver = OTLPReceiver(protocol).start()
    data = config_dict(tmp_path=tmp_path)
    data["exporters"]["otlp"] = {"endpoint": receiver.endpoint, "protocol": protocol, "timeout": 1}
    data["queue"] = {"batch_size": 32, "retry_initial_backoff_s": 0.05, "retry_max_backoff_s": 0.4}
    fake = create_fake_provider()
    sent = 0
    sent_while_down = 0
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
            gateway = create_gateway(Config.from_dict(data), client=upstream, registry=CollectorRegistry())
            await gateway.startup()
            transport = httpx.ASGITransport(app=gateway)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:

                async def traffic(seconds: float) -> int:
                    deadline = time.monotonic() + seconds
                    count = 0
                    while time.monotonic() < deadline:
                        reply = await client.post("/v1/chat/completions", json=CHAT)
                        assert reply.status_code == 200
                        count += 1
                        await asyncio.sleep(0.005)
                    return count

                sent += await traffic(0.5)
                await asyncio.to_thread(receiver.stop)  # the collector goes away...
                sent_while_down = await traffic(1.2)
                sent += sent_while_down
                # The exporter retries inside its own timeout before reporting a failure: wait for it
                # (under load that can take longer than the traffic above) before the collector returns.
                for _ in range(400):  # at most 20 s
                    if gateway.pipeline.stats.failed.get("otlp"):
                        break
                    await asyncio.sleep(0.05)
                failed_during_outage = gateway.pipeline.stats.failed.get("otlp", 0)
                await asyncio.to_thread(receiver.start)  # ...and comes back on the same port
                sent += await traffic(0.5)
                await asyncio.wait_for(gateway.pipeline.flush(), 30)
                logged = (await client.get("/logs", params={"limit": 1000})).json()["data"]
            stats = gateway.pipeline.stats
            await gateway.shutdown()
        spans = await asyncio.to_thread(receiver.wait_for, sent, 10)
    finally:
        receiver.stop()
    assert sent_while_down > 10 and failed_during_outage > 0  # the outage was real and seen by the sink
    request_ids = {record["request_id"] for record in logged}
    assert len(request_ids) == sent  # the log store (another sink) has every request, each once
    arrived = Counter(str(s["attributes"]["llm_obs.request_id"]) for s in spans if s["kind"] == "CLIENT")
    assert {rid for rid, n in arrived.items() if n > 1} == set()  # nothing twice
    assert set(arrived) == request_ids  # nothing lost, nothing made up
    assert stats.exported["otlp"] == sent
    assert stats.sink_dropped == {"prometheus": 0, "otlp": 0, "log_store": 0}
    assert stats.dropped == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


def test_sigterm_flushes_every_queued_record_to_sqlite(fake_server: FakeProviderServer, tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    config = tmp_path / "gateway.yaml"
    # A long flush interval keeps every record in the queue until shutdown forces the batch out.
    config.write_text(
        f"""
providers:
  openai: {{kind: openai, base_url: "{fake_server.url}", api_keys: [sk-test]}}
models:
  gpt-4o-mini: {{provider: openai}}
exporters:
  log_store: {{url: "sqlite:///{db}"}}
queue: {{flush_interval_s: 600, batch_size: 1000}}
"""
    )
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "llm-obs"), "serve", "--config", str(config), "--port", str(port)],
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    sent: list[list[str]] = []
    try:
        _wait_healthy(base, process)
        with httpx.Client(base_url=base) as client:
            for _ in range(25):
                reply = client.post("/v1/chat/completions", json=CHAT)
                assert reply.status_code == 200
                # The fake provider sends its own x-request-id too; ours is among the values.
                sent.append(reply.headers.get_list("x-request-id", split_commas=True))
            health = client.get("/healthz").json()
        assert health["export_queue_depth"] == 25  # all still queued...
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM llm_records").fetchone() == (0,)  # ...none written yet
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says SIGTERM.
    assert process.returncode in (0, -signal.SIGTERM), stderr.decode()
    assert b"Application shutdown complete" in stderr
    assert b"Traceback" not in stderr, stderr.decode()
    with sqlite3.connect(db) as conn:
        stored = [row[0] for row in conn.execute("SELECT request_id FROM llm_records")]
    assert len(stored) == len(set(stored)) == 25
    assert all(sum(value in stored for value in values) == 1 for values in sent)  # each request stored once


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("server did not become healthy")
