"""Real ``llm-obs serve`` processes: ``kill -9`` during a collector outage loses nothing that reached the
spool, and SIGTERM with a long stream in flight ends within the graceful-shutdown limit, recording the stream."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_obs_middleware.testing import FakeProviderConfig, FakeProviderServer, OTLPReceiver

CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
LLM_OBS = str(Path(sys.executable).parent / "llm-obs")


@pytest.fixture
def fake_server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` (another process's state) until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [LLM_OBS, "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"],
        stderr=subprocess.PIPE,
    )

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, "the gateway answers /healthz")
    return process


def spooled(port: int, sink: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llm_obs_export_records_total" and sample.labels == {"sink": sink, "result": "spooled"}:
                return sample.value
    return 0.0


def test_kill_9_during_a_collector_outage_loses_no_span(fake_server: FakeProviderServer, tmp_path: Path) -> None:
    receiver = OTLPReceiver("http").start()
    endpoint = receiver.endpoint
    receiver.stop()  # the collector is down: nothing listens on its port
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""
providers:
  openai: {{kind: openai, base_url: "{fake_server.url}", api_keys: [sk-test]}}
models:
  gpt-4o-mini: {{provider: openai}}
exporters:
  prometheus: {{enabled: true}}
  log_store: {{enabled: false}}
  otlp: {{endpoint: "{endpoint}", timeout: 2}}
queue: {{spool_dir: "{tmp_path / "spool"}", spool_after_s: 0.2, retry_initial_backoff_s: 0.2}}
"""
    )
    port = free_port()
    sent: set[str] = set()
    process = serve(config, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(40):
                reply = client.post("/v1/chat/completions", json=CHAT)
                assert reply.status_code == 200
                sent.add(reply.headers["traceparent"].split("-")[1])
        # On disk soon although the queue is nowhere near half full (before: only at 5,000 records).
        wait_for(lambda: spooled(port, "otlp") >= len(sent), "every record spooled")
    finally:
        process.kill()  # SIGKILL: no shutdown, nothing flushed
        process.communicate(timeout=20)
    receiver.start()  # the collector is back on its port
    try:
        process = serve(config, port)  # the same spool_dir: the next process replays it
        try:

            def arrived() -> set[str]:
                return {span["trace_id"] for span in receiver.spans if span["kind"] == "CLIENT"}

            wait_for(lambda: arrived() >= sent, "every span delivered after the restart")
            wait_for(lambda: not any((tmp_path / "spool").glob("*.jsonl")), "the spool emptied once exported")
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
    finally:
        receiver.stop()
    assert arrived() == sent
    assert b"Traceback" not in stderr, stderr.decode()


def test_sigterm_with_a_long_stream_in_flight_ends_it_and_records_it(tmp_path: Path) -> None:
    # A stream of 10 minutes: SIGTERM must not wait for it beyond the graceful-shutdown limit.
    slow = FakeProviderServer(FakeProviderConfig(chunks=1200, chunk_interval_s=0.5))
    db = tmp_path / "log.db"
    config = tmp_path / "gateway.yaml"
    port = free_port()
    with slow:
        config.write_text(
            f"""
providers:
  openai: {{kind: openai, base_url: "{slow.url}", api_keys: [sk-test]}}
models:
  gpt-4o-mini: {{provider: openai}}
exporters:
  log_store: {{url: "sqlite:///{db}"}}
"""
        )
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "llm_obs_middleware.gateway:app",
                "--port",
                str(port),
                "--timeout-graceful-shutdown",
                "1",
            ],
            env={**os.environ, "LLM_OBS_CONFIG": str(config)},
            stderr=subprocess.PIPE,
        )
        first_chunk = threading.Event()

        def stream() -> None:
            try:
                with (
                    httpx.Client(timeout=60) as client,
                    client.stream(
                        "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json={**CHAT, "stream": True}
                    ) as reply,
                ):
                    for _ in reply.iter_raw():
                        first_chunk.set()
            except httpx.HTTPError:
                pass  # the server ends the stream

        wait_for(lambda: _healthy(port, process), "the gateway answers /healthz")
        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        assert first_chunk.wait(20)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)  # the stream had 10 minutes left
        reader.join(10)
    assert b"Application shutdown complete" in stderr  # the pipeline flushed after the stream was cut
    with sqlite3.connect(db) as conn:
        records = [json.loads(row[0]) for row in conn.execute("SELECT record FROM llm_records")]
    [record] = records  # the cut stream is recorded, as an error, with what it had streamed so far
    assert record["streamed"] is True and record["timing"]["chunks"] >= 1
    assert (record["outcome"], record["error_type"]) == ("app_error", "CancelledError")


def _healthy(port: int, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    except httpx.TransportError:
        return False
