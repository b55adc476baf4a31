"""Request-path cost of the export sinks: every sink on vs every sink off, in-process, same run.

    .venv/bin/python benchmarks/export_bench.py                 # ~1 min; --quick for a smoke run
    .venv/bin/python benchmarks/export_bench.py --soak 600      # memory over a 10 min run, sinks on

Two ``LLMObservability`` stacks over the same ``httpx.MockTransport`` upstream (canned fake-provider
bytes, no network): one with every sink off, one with every sink on (Prometheus, OTLP traces with
OpenInference attributes and OTLP metrics to a real receiver in a child process, the SQLite log
store, the JSONL file). Blocks of requests alternate between the two (the order flips every round)
so machine noise hits both alike.

Reported per request, plain and streamed (20 chunks):

* **request path**: wall time inside the ASGI call, median over every request of every block. The
  export worker runs on the same event loop between requests, as in a server; this is what a client
  waits for.
* **total CPU**: process CPU per request including the export worker and its threads, measured
  over each block plus the drain of what the block queued: what the sinks cost the machine.

``--soak`` drives the sinks-on stack for the given seconds and samples the resident set size, the
Python heap (tracemalloc) and the queue depth every few seconds; the second half's growth is the
number to watch (flat means no leak).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inprocess import MODEL, PLAIN, STREAM, _scope, capture, mock_client
from prometheus_client import CollectorRegistry

from llm_obs_middleware.asgi.aliases import Message, Receive, Scope, Send
from llm_obs_middleware.config.settings import Config
from llm_obs_middleware.middleware.stack import LLMObservability

_RECEIVER = """
import sys, time
from llm_obs_middleware.testing import OTLPReceiver
with OTLPReceiver("http") as receiver:
    print(receiver.endpoint, flush=True)
    sys.stdin.read()
"""


@contextmanager
def receiver_process() -> Iterator[str]:
    """An OTLP receiver in a child process (its decoding CPU is not ours); yields its endpoint."""
    process = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)


def config(sinks_on: bool, directory: Path, endpoint: str) -> Config:
    providers = {"fake": {"kind": "openai", "base_url": "http://fake.invalid/v1", "api_keys": ["sk-up"]}}
    exporters: dict[str, Any]
    if sinks_on:
        exporters = {
            "prometheus": {"enabled": True},
            "otlp": {"endpoint": endpoint, "openinference": True, "metrics": True, "metrics_interval_s": 5},
            "log_store": {"url": f"sqlite:///{directory / 'log.db'}", "retention_days": None},
            "jsonl": {"path": str(directory / "records.jsonl"), "max_bytes": 50 * 1024 * 1024, "backup_count": 1},
        }
    else:
        exporters = {"prometheus": {"enabled": False}, "log_store": {"enabled": False}}
    data = {"providers": providers, "models": {MODEL: {"provider": "fake"}}, "exporters": exporters}
    return Config.from_dict(data, environ={})


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the router should have answered")


async def one_request(app: LLMObservability, body: bytes) -> int:
    """Run one request through ``app``; returns the wall time inside the call in nanoseconds."""
    pending = True

    async def receive() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        return None

    started = time.perf_counter_ns()
    await app(_scope(), receive, send)
    elapsed = time.perf_counter_ns() - started
    await asyncio.sleep(0)  # the event loop (and the export worker) runs between requests, as in a server
    return elapsed


async def drain(app: LLMObservability) -> None:
    await app.exporters.pipeline.flush()


async def block(app: LLMObservability, body: bytes, count: int) -> tuple[list[int], float]:
    """``count`` requests; their in-call times and the process CPU per request including the drain."""
    gc.collect()
    cpu = time.process_time_ns()
    times = [await one_request(app, body) for _ in range(count)]
    await drain(app)
    return times, (time.process_time_ns() - cpu) / count / 1000


Row = tuple[str, float, float, float, float, float, float]


async def compare(rounds: int, per_block: int) -> list[Row]:
    plain = await capture(PLAIN, 20)
    streamed = await capture(STREAM[:-1] + b',"stream_options":{"include_usage":true}}', 20)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, receiver_process() as endpoint:
        stacks = {
            on: LLMObservability(
                _not_found,
                config=config(on, Path(tmp), endpoint),
                client=mock_client(plain, streamed),
                registry=CollectorRegistry(),
            )
            for on in (False, True)
        }
        async with stacks[False].lifespan(), stacks[True].lifespan():
            for name, body in (("plain", PLAIN), ("stream", STREAM)):
                for on in (False, True):  # warm-up: imports, caches, connections, the SQLite file
                    await block(stacks[on], body, max(50, per_block // 4))
                times: dict[bool, list[int]] = {False: [], True: []}
                cpu: dict[bool, list[float]] = {False: [], True: []}
                ratios = []  # per round: the on block's median over the off block's, the noise band
                for index in range(rounds):
                    medians = {}
                    for on in (False, True) if index % 2 == 0 else (True, False):
                        block_times, block_cpu = await block(stacks[on], body, per_block)
                        times[on] += block_times
                        cpu[on].append(block_cpu)
                        medians[on] = statistics.median(block_times)
                    ratios.append(medians[True] / medians[False])
                off_us = statistics.median(times[False]) / 1000
                on_us = statistics.median(times[True]) / 1000
                cpu_off, cpu_on = statistics.median(cpu[False]), statistics.median(cpu[True])
                rows.append((name, off_us, on_us, min(ratios), max(ratios), cpu_off, cpu_on))
            stats = stacks[True].exporters.pipeline.stats
            assert stats.dropped == 0 and not any(stats.sink_dropped.values()), "records were dropped"
    return rows


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def soak(seconds: float, sample_every: float) -> list[tuple[float, int, float, float, int]]:
    plain = await capture(PLAIN, 20)
    streamed = await capture(STREAM[:-1] + b',"stream_options":{"include_usage":true}}', 20)
    samples: list[tuple[float, int, float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp, receiver_process() as endpoint:
        stack = LLMObservability(
            _not_found,
            config=config(True, Path(tmp), endpoint),
            client=mock_client(plain, streamed),
            registry=CollectorRegistry(),
        )
        async with stack.lifespan():
            # Warm up first (price data, imports, connections: one-time allocations), then trace the
            # steady state; tracemalloc would also slow the one-time loading many times over.
            for index in range(400):
                await one_request(stack, STREAM if index % 2 else PLAIN)
            await drain(stack)
            tracemalloc.start()
            started = time.monotonic()
            next_sample = started
            sent = 0
            while (now := time.monotonic()) - started < seconds:
                await one_request(stack, STREAM if sent % 2 else PLAIN)
                sent += 1
                if now >= next_sample:
                    gc.collect()
                    heap = tracemalloc.get_traced_memory()[0] / 2**20
                    samples.append((now - started, sent, _rss_mib(), heap, stack.exporters.pipeline.depth))
                    next_sample = now + sample_every
            print(f"{sent} requests in {seconds:.0f} s", flush=True)
    tracemalloc.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="blocks per variant and workload")
    parser.add_argument("--per-block", type=int, default=400, help="requests per block")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="memory over a long run instead")
    args = parser.parse_args()
    if args.soak:
        samples = asyncio.run(soak(args.soak, max(1.0, args.soak / 20)))
        print("| t (s) | requests | RSS (MiB) | Python heap (MiB) | queue depth |\n|---:|---:|---:|---:|---:|")
        for t, sent, rss, heap, depth in samples:
            print(f"| {t:.0f} | {sent} | {rss:.1f} | {heap:.2f} | {depth} |")
        half = [s for s in samples if s[0] >= samples[-1][0] / 2]
        print(
            f"\nsecond half: RSS {half[0][2]:.1f} -> {half[-1][2]:.1f} MiB, "
            f"heap {half[0][3]:.2f} -> {half[-1][3]:.2f} MiB"
        )
        return
    rounds, per_block = (2, 100) if args.quick else (args.rounds, args.per_block)
    rows = asyncio.run(compare(rounds, per_block))
    print(f"{rounds} rounds x {per_block} requests per block, interleaved; medians")
    print(
        "| workload | request path, sinks off (µs) | sinks on (µs) | ratio | ratio per round (min-max) "
        "| total CPU off (µs) | on (µs) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, off_us, on_us, low, high, cpu_off, cpu_on in rows:
        print(
            f"| {name} | {off_us:.0f} | {on_us:.0f} | {on_us / off_us:.2f}x | {low:.2f}-{high:.2f}x "
            f"| {cpu_off:.0f} | {cpu_on:.0f} |"
        )


if __name__ == "__main__":
    main()
