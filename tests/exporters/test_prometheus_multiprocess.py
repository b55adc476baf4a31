"""``uvicorn --workers 2`` with ``PROMETHEUS_MULTIPROC_DIR``: ``/metrics`` sums both workers.

Real processes: uvicorn forks two gateway workers sharing one socket, in front of the fake provider
on loopback. Traffic is sent on fresh connections until both workers have counted some (each
worker writes its own ``counter_<pid>.db``), then every scrape, whichever worker answers it, must
report the total sent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_obs_middleware.testing import FakeProviderConfig, FakeProviderServer

FAKE = FakeProviderConfig(prompt_tokens=11, completion_tokens=3)
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(base: str) -> tuple[float, float]:
    """Total requests and input tokens in one ``/metrics`` answer."""
    text = httpx.get(f"{base}/metrics", headers={"connection": "close"}, timeout=5.0).text
    requests = tokens = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llm_obs_requests_total":
                requests += sample.value
            elif sample.name == "llm_obs_tokens_total" and sample.labels.get("type") == "input":
                tokens += sample.value
    return requests, tokens


def chat(base: str) -> None:
    # A new connection per request, so the kernel hands them to either worker.
    reply = httpx.post(f"{base}/v1/chat/completions", json=CHAT, headers={"connection": "close"}, timeout=10.0)
    assert reply.status_code == 200, reply.text


def test_two_workers_one_total(fake: FakeProviderServer, tmp_path: Path) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""
providers:
  openai: {{kind: openai, base_url: "{fake.url}", api_keys: [sk-test]}}
models:
  gpt-4o-mini: {{provider: openai}}
exporters:
  log_store: {{enabled: false}}
queue: {{flush_interval_s: 0.05}}
"""
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LLM_OBS_CONFIG": str(config), "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    command = [sys.executable, "-m", "uvicorn", "llm_obs_middleware.gateway:app", "--workers", "2"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"], env=env, stderr=subprocess.PIPE
    )
    try:
        _wait_ready(base, process)
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            deadline = time.monotonic() + 60
            while len(list(multiproc.glob("counter_*.db"))) < 2:
                assert time.monotonic() < deadline, "one worker got all the traffic"
                list(pool.map(chat, [base] * 16))
                sent += 16
                time.sleep(0.2)  # records are counted by each worker's export task, just after the response
        expected = (float(sent), float(sent * FAKE.prompt_tokens))
        deadline = time.monotonic() + 20
        totals = scrape(base)
        while totals != expected and time.monotonic() < deadline:
            time.sleep(0.1)
            totals = scrape(base)
        assert totals == expected
        # Several scrapes on fresh connections: whichever worker answers, it reports both.
        assert {scrape(base) for _ in range(10)} == {expected}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert b"Traceback" not in stderr, stderr.decode()


def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"uvicorn exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("uvicorn did not become ready")
