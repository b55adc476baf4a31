"""The long hardening runs (issue 13), against real `llm-obs serve` processes on loopback.

    python benchmarks/hostile.py streams [--count 2000] [--stream-s 10]
        COUNT concurrent slow streams through one gateway process: every one answered whole (0 errors),
        the gateway's RSS sampled throughout, and every request recorded in the log store.
    python benchmarks/hostile.py outage [--seconds 60] [--rate 20]
        The OTLP collector is down for SECONDS while requests flow; the gateway (with a spool) is then
        killed with SIGKILL and restarted with the collector back: every span that reached the spool
        arrives, and the report says how many requests ended in the last second before the kill.

Each run appends its figures to benchmarks/results/hostile.md. Needs Linux (/proc) and aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "hostile.md"
LLM_OBS = Path(sys.executable).with_name("llm-obs")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_answering(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def start_fake(port: int, *, chunks: int, interval_ms: float) -> subprocess.Popen[bytes]:
    command = [str(LLM_OBS), "fake-provider", "--port", str(port), "--chunks", str(chunks)]
    command += ["--chunk-interval-ms", str(interval_ms), "--log-level", "warning"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    wait_answering(f"http://127.0.0.1:{port}/v1/models", process)
    return process


def start_gateway(config: dict[str, Any], work: Path, port: int) -> subprocess.Popen[bytes]:
    path = work / "gateway.json"
    path.write_text(json.dumps(config, indent=2))
    log = (work / "gateway.log").open("ab")
    command = [str(LLM_OBS), "serve", "--config", str(path), "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    wait_answering(f"http://127.0.0.1:{port}/healthz", process)
    return process


def gateway_config(fake_port: int, work: Path, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "providers": {
            "openai": {"kind": "openai", "base_url": f"http://127.0.0.1:{fake_port}/v1", "api_keys": ["sk-bench"]}
        },
        "models": {"gpt-4o-mini": {"provider": "openai"}},
        "exporters": {"log_store": {"url": f"sqlite:///{work / 'logs.db'}"}, "prometheus": {"enabled": True}},
    }
    config.update(extra)
    return config


def recorded(url: str) -> int:
    return int(httpx.get(url + "/logs/stats", timeout=30).json()["totals"]["requests"])


def wait_recorded(url: str, count: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while (seen := recorded(url)) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    return seen


@dataclass
class StreamTally:
    statuses: dict[str, int] = field(default_factory=dict)
    complete: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def _one_stream(session: aiohttp.ClientSession, url: str, tally: StreamTally) -> None:
    try:
        async with session.post(url, json={**CHAT, "stream": True}) as response:
            body = await response.read()
            tally.add(str(response.status))
            if response.status == 200 and body.rstrip().endswith(b"data: [DONE]"):
                tally.complete += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.add(type(exc).__name__)
        if len(tally.errors) < 5:
            tally.errors.append(repr(exc)[:200])


async def _streams(url: str, count: int, gateway_pid: int) -> tuple[StreamTally, list[float], float]:
    tally = StreamTally()
    samples: list[float] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=600)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(_one_stream(session, url, tally)) for _ in range(count)]
        while not all(task.done() for task in tasks):
            samples.append(rss_mb(gateway_pid))
            await asyncio.sleep(0.5)
        await asyncio.gather(*tasks)
    return tally, samples, time.monotonic() - started


def run_streams(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="llm-obs-hostile-") as tmp:
        work = Path(tmp)
        fake_port, port = free_port(), free_port()
        chunks = 20
        fake = start_fake(fake_port, chunks=chunks, interval_ms=args.stream_s * 1000 / chunks)
        config = gateway_config(fake_port, work, **json.loads(args.extra_config))
        gateway = start_gateway(config, work, port)
        try:
            url = f"http://127.0.0.1:{port}"
            idle = rss_mb(gateway.pid)
            tally, samples, took = asyncio.run(_streams(url + "/v1/chat/completions", args.count, gateway.pid))
            after = rss_mb(gateway.pid)
            seen = wait_recorded(url, args.count)
        finally:
            for process in (gateway, fake):
                process.send_signal(signal.SIGTERM)
            for process in (gateway, fake):
                process.wait(60)
    errors = args.count - tally.complete
    lines = [
        f"### streams: {args.count} concurrent, {args.stream_s:g} s each ({_now()})",
        "",
        f"- answered whole: {tally.complete} of {args.count} ({errors} errors); statuses {tally.statuses}",
        f"- gateway RSS: {idle:.0f} MB idle, {max(samples or [idle]):.0f} MB peak, {after:.0f} MB after",
        f"- recorded: {seen} of {args.count}; wall time {took:.1f} s",
    ]
    lines += [f"- error sample: {error}" for error in tally.errors]
    return "\n".join(lines)


async def _steady(url: str, seconds: float, rate: float) -> tuple[int, int, float]:
    """Send ``rate`` requests per second for ``seconds``; (sent, answered 200, when the last one ended)."""
    sent = ok = 0
    last_end = 0.0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one() -> None:
            nonlocal ok, last_end
            async with session.post(url, json=CHAT) as response:
                await response.read()
                ok += response.status == 200
                last_end = time.monotonic()

        tasks = []
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            tasks.append(asyncio.create_task(one()))
            sent += 1
            await asyncio.sleep(max(0.0, sent / rate - elapsed))
        await asyncio.gather(*tasks, return_exceptions=True)
    return sent, ok, last_end


def run_outage(args: argparse.Namespace) -> str:
    from llm_obs_middleware.testing import OTLPReceiver

    receiver = OTLPReceiver().start()
    endpoint = receiver.endpoint
    receiver.stop()  # the collector is down: its port is known, nothing listens there
    with tempfile.TemporaryDirectory(prefix="llm-obs-outage-") as tmp:
        work = Path(tmp)
        fake_port, port = free_port(), free_port()
        fake = start_fake(fake_port, chunks=5, interval_ms=0)
        gateway: subprocess.Popen[bytes] | None = None
        exporters = {
            "log_store": {"enabled": False},
            "otlp": {"endpoint": endpoint, "protocol": "http"},
        }
        config = gateway_config(fake_port, work, queue={"spool_dir": str(work / "spool")})
        config["exporters"] = exporters
        config.update(json.loads(args.extra_config))
        url = f"http://127.0.0.1:{port}"
        try:
            gateway = start_gateway(config, work, port)
            sent, ok, last_end = asyncio.run(_steady(url + "/v1/chat/completions", args.seconds, args.rate))
            settle = max(0.0, last_end + args.settle_s - time.monotonic())
            time.sleep(settle)  # the spool's bound: a record is on disk within this after its request ended
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(30)
            receiver.start()
            gateway = start_gateway(config, work, port)
            arrived = _llm_traces(receiver, ok, timeout=120)
        finally:
            for process in (gateway, fake):
                if process is not None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(60)
            receiver.stop()
    return "\n".join(
        [
            f"### outage: collector down {args.seconds:g} s at {args.rate:g} req/s, then kill -9 ({_now()})",
            "",
            f"- requests: {sent} sent, {ok} answered 200",
            f"- killed {args.settle_s:g} s after the last request ended; restarted with the collector back",
            f"- requests whose LLM span arrived: {arrived} of {ok} ({ok - arrived} lost)",
        ]
    )


def _llm_traces(receiver: Any, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        traces = {span["trace_id"] for span in receiver.spans if span["attributes"].get("gen_ai.operation.name")}
        if len(traces) >= expected or time.monotonic() > deadline:
            return len(traces)
        time.sleep(0.5)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    streams = scenarios.add_parser("streams", help="many concurrent slow streams through one process")
    streams.add_argument("--count", type=int, default=2000)
    streams.add_argument("--stream-s", type=float, default=10.0, help="seconds each stream lasts")
    outage = scenarios.add_parser("outage", help="collector outage, kill -9, restart: nothing spooled is lost")
    outage.add_argument("--seconds", type=float, default=60.0)
    outage.add_argument("--rate", type=float, default=20.0, help="requests per second")
    outage.add_argument("--settle-s", type=float, default=2.0, help="wait after the last request before kill -9")
    for sub in (streams, outage):
        sub.add_argument("--extra-config", default="{}", help="JSON merged into the gateway config's top level")
        sub.add_argument("--no-write", action="store_true", help="print only; do not append to hostile.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    report = run_streams(args) if args.scenario == "streams" else run_outage(args)
    print(report)
    if not args.no_write:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(report + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
