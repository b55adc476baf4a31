"""The gateway as users start it: `llm-obs serve` and `uvicorn llm_obs_middleware.gateway:app`, real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llm_obs_middleware.testing import FakeProviderServer

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, base_url: str) -> Path:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""
providers:
  openai:
    kind: openai
    base_url: {base_url}
    api_keys: ["${{TEST_UPSTREAM_KEY}}"]
models:
  gpt-4o-mini: {{provider: openai}}
exporters:
  prometheus: {{enabled: true}}
  log_store: {{url: "sqlite:///{tmp_path / "log.db"}"}}
"""
    )
    return config


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
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


def exercise_and_stop(port: int, process: subprocess.Popen[bytes], tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        client = openai.OpenAI(base_url=base + "/v1", api_key="client-key", max_retries=0)
        assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert b"Traceback" not in stderr, stderr.decode()
    # Both records were flushed to the log store by the graceful shutdown, none lost.
    with sqlite3.connect(tmp_path / "log.db") as db:
        records = [json.loads(row[0]) for row in db.execute("SELECT record FROM llm_records")]
    assert sorted(r["streamed"] for r in records) == [False, True]
    assert all(r["usage"]["input_tokens"] == 12 for r in records)


def env() -> dict[str, str]:
    return {**os.environ, "TEST_UPSTREAM_KEY": "sk-from-env"}


def test_llm_obs_serve(fake: FakeProviderServer, tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, fake.url)
    process = subprocess.Popen(
        [str(BIN / "llm-obs"), "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"],
        env=env(),
        stderr=subprocess.PIPE,
    )
    exercise_and_stop(port, process, tmp_path)
    assert fake.app.requests[-1].headers["authorization"] == "Bearer sk-from-env"


@pytest.mark.parametrize("access_log", [False, True])
def test_llm_obs_serve_access_log_only_on_request(fake: FakeProviderServer, tmp_path: Path, access_log: bool) -> None:
    """At the default log level, uvicorn's line per request appears only with --access-log (the request
    log records every LLM request anyway)."""
    port = free_port()
    config = write_config(tmp_path, fake.url)
    flags = ["--access-log"] if access_log else []
    process = subprocess.Popen(
        [str(BIN / "llm-obs"), "serve", "--config", str(config), "--port", str(port), *flags],
        env=env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []}
        )
        # uvicorn writes its own date and server headers: the provider's are not relayed next to them
        assert len(response.headers.get_list("date")) == 1 and len(response.headers.get_list("server")) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    assert b"Uvicorn running" in stdout + stderr  # the default level logs
    assert (b'"POST /v1/chat/completions HTTP/1.1"' in stdout + stderr) is access_log


def test_uvicorn_module_app_reads_llm_obs_config(fake: FakeProviderServer, tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, fake.url)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "llm_obs_middleware.gateway:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**env(), "LLM_OBS_CONFIG": str(config)},
        stderr=subprocess.PIPE,
    )
    exercise_and_stop(port, process, tmp_path)


def test_uvicorn_module_app_with_a_bad_config_fails_at_startup_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("providers:\n  openai: {kind: openia, base_url: http://x}\n")
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "llm_obs_middleware.gateway:app", "--port", str(free_port())],
        env={**os.environ, "LLM_OBS_CONFIG": str(config)},
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "providers.openai.kind" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
