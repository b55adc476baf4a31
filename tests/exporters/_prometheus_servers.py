"""Real Prometheus and Pushgateway servers (Debian's ``prometheus``, ``prometheus-pushgateway``) on loopback.

Each runs as a child process on a free port with its storage in a temporary directory, and is
stopped (SIGTERM, then SIGKILL) when the context exits. A missing binary fails the test under
``CI=true`` and skips it elsewhere (the project rule for tests that need a server).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from .conftest import _server_missing

__all__ = ["Prometheus", "pushgateway", "running_prometheus"]

STARTUP_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _server_missing(name, "the binary is not on PATH (apt-get install prometheus prometheus-pushgateway)")
        raise AssertionError("unreachable")  # _server_missing raises
    return path


@contextmanager
def _process(args: Sequence[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{args[0]} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(ready_url, timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} not ready within {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A Pushgateway on a free loopback port (no persistence file); yields its base URL."""
    binary = _binary("prometheus-pushgateway")
    url = f"http://127.0.0.1:{_free_port()}"
    args = [binary, f"--web.listen-address={url.removeprefix('http://')}", "--persistence.file="]
    with _process(args, url + "/-/ready", tmp_path / "pushgateway.log"):
        yield url


class Prometheus:
    """A running Prometheus server and the two parts of its HTTP API the tests use."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` evaluates to now (``/api/v1/query``)."""
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5.0)
        reply.raise_for_status()
        body = reply.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        """The value of a one-element query result (``None`` when it is empty)."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def targets_up(self) -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.url}/api/v1/targets", timeout=5.0)
        reply.raise_for_status()
        targets: list[dict[str, Any]] = reply.json()["data"]["activeTargets"]
        return targets


@contextmanager
def running_prometheus(tmp_path: Path, targets: dict[str, str], *, interval: str = "1s") -> Iterator[Prometheus]:
    """Prometheus scraping each ``job -> host:port`` of ``targets`` every ``interval`` (``honor_labels`` on,
    as for a Pushgateway), storing its TSDB under ``tmp_path``."""
    binary = _binary("prometheus")
    jobs = "\n".join(
        f"  - job_name: {job}\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']"
        for job, target in targets.items()
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\nscrape_configs:\n{jobs}\n"
    )
    address = f"127.0.0.1:{_free_port()}"
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={address}",
        "--log.level=warn",
    ]
    with _process(args, f"http://{address}/-/ready", tmp_path / "prometheus.log"):
        yield Prometheus(f"http://{address}")
