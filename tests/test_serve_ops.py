"""`llm-obs serve` as operators run it: console lines on failures (text or JSON) and summed metrics across workers.

Real processes on loopback, in front of the fake provider (issue 13, findings 15 and 16).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_obs_middleware.testing import FakeProviderServer

from .test_processes import BIN, free_port, wait_healthy, write_config

KEY = "sk-from-env"
PROMPT = "prompt-marker-ocelot-3317"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


def serve(tmp_path: Path, fake_url: str, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = write_config(tmp_path, fake_url)
    environ = {**os.environ, "TEST_UPSTREAM_KEY": KEY, "TMPDIR": str(tmp_path)}
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [str(BIN / "llm-obs"), "serve", "--config", str(config), "--port", str(port), *flags],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, process)
    return process, base


def stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    return stderr.decode()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_failed_upstream_attempts_are_logged(fake: FakeProviderServer, tmp_path: Path, log_format: str) -> None:
    process, base = serve(tmp_path, fake.url, "--log-format", log_format)
    try:
        reply = httpx.post(base + "/v1/chat/completions", json=CHAT, headers={"x-fake-status": "500"}, timeout=30)
        assert reply.status_code == 500  # the upstream's answer, after the retries
    finally:
        stderr = stop(process)
    assert KEY not in stderr and PROMPT not in stderr
    expected = {
        "provider": "openai",
        "deployment": "gpt-4o-mini/openai/gpt-4o-mini",
        "key": "openai#0",
        "status": 500,
        "error": "http_500",
    }
    if log_format == "json":
        lines = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON, uvicorn's too
        failed = [line for line in lines if line.get("event") == "upstream_attempt_failed"]
        assert len(failed) == 3  # the first attempt and two retries
        for line in failed:
            assert line["level"] == "warning" and isinstance(line["latency_ms"], float)
            assert {name: line[name] for name in expected} == expected
        assert any(line["logger"] == "uvicorn.error" for line in lines)
    else:
        failed_lines = [line for line in stderr.splitlines() if "upstream attempt failed" in line]
        assert len(failed_lines) == 3, stderr
        for line in failed_lines:
            assert "WARNING" in line
            assert all(f"{name}={value}" in line for name, value in expected.items()), line


def _requests_total(base: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "llm_obs_requests_total"
    )


def test_workers_share_their_metrics_without_any_setting(fake: FakeProviderServer, tmp_path: Path) -> None:
    process, base = serve(tmp_path, fake.url, "--workers", "2", "--log-level", "warning")
    scrapes: list[float] = []
    try:
        (metrics_dir,) = tmp_path.glob("llm-obs-metrics-*")  # private to this server, under its TMPDIR
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(10):
                # A new connection each time, so the workers share the requests.
                assert client.post("/v1/chat/completions", json=CHAT, headers={"connection": "close"}).is_success
        deadline = time.monotonic() + 30
        while _requests_total(base) != 10 and time.monotonic() < deadline:
            time.sleep(0.1)  # records reach the metrics in each worker's export task
        scrapes = [_requests_total(base) for _ in range(8)]  # whichever worker answers
    finally:
        stderr = stop(process)
    assert scrapes == [10.0] * 8, stderr
    assert not metrics_dir.exists()  # removed at exit


def test_serve_lifts_the_open_files_limit_for_many_streams(fake: FakeProviderServer, tmp_path: Path) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.skip("the hard limit on open files leaves nothing to lift")
    low = 1024
    port = free_port()
    config = write_config(tmp_path, fake.url)
    process = subprocess.Popen(
        [str(BIN / "llm-obs"), "serve", "--config", str(config), "--port", str(port)],
        env={**os.environ, "TEST_UPSTREAM_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)),
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
        assert line.split()[3] == str(hard)  # the soft limit, raised from 1024
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
