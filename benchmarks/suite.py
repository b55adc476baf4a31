"""The loopback benchmark: every target side by side, A/B interleaved, medians (run via ``benchmarks/run``).

For each workload (non-streamed chat, streamed chat) and concurrency, each repetition measures every
target once, in an order rotated per repetition, so slow drifts of a noisy machine hit all targets
alike. A measurement is a closed-loop ``wrk`` run of ``--duration`` seconds; the target's CPU time is
read from ``/proc`` before and after (for the gateways, after the export queue has drained, so the
export worker's CPU is counted). ``--soak MINUTES`` instead runs mixed traffic through the every-sink
gateway and reports RSS and export queue depth over time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import LoadResult, have_wrk, run_load
from report import render_chart, render_markdown
from targets import (
    HERE,
    LITELLM_VENV,
    Pinning,
    Proc,
    Target,
    start_fake,
    start_receiver,
    start_target,
    tree_cpu_seconds,
    tree_memory_mb,
)

ALL_TARGETS = ("direct", "bare-httpx", "bare-aiohttp", "gw-off", "gw-all")
RESULTS = HERE / "results"


def _log(text: str) -> None:
    sys.stderr.write(f"[{datetime.now().strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _litellm_version() -> str:
    site = list(LITELLM_VENV.glob("lib/python*/site-packages/litellm-*.dist-info"))
    return site[0].name.removeprefix("litellm-").removesuffix(".dist-info") if site else "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _resolved(option: str, module: str, fallback: str) -> str:
    if option != "auto":
        return option
    try:
        __import__(module)
    except ImportError:
        return fallback
    return module


def _settle(target: Target, client: httpx.Client) -> None:
    """Wait until a gateway's export queue is empty and its CPU time stops moving (export done)."""
    if target.health_url is None:
        time.sleep(0.1)
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (target.queue_depth(client) or 0) > 0:
        time.sleep(0.05)
    previous = -1.0
    while time.monotonic() < deadline:
        now = tree_cpu_seconds(target.proc.pid)
        if now == previous:
            return
        previous = now
        time.sleep(0.15)


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, every process), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _wait_quiet(ours: list[int], limit: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other processes use at most ``limit`` cores; return their last load."""
    deadline = time.monotonic() + max_wait
    while True:
        busy, mine = _machine_busy_seconds(), sum(tree_cpu_seconds(pid) for pid in ours)
        time.sleep(1.0)
        foreign = max(0.0, _machine_busy_seconds() - busy - (sum(tree_cpu_seconds(pid) for pid in ours) - mine))
        if foreign <= limit or time.monotonic() >= deadline:
            return foreign


def _measure(
    target: Target,
    mode: str,
    conc: int,
    args: argparse.Namespace,
    pin: Pinning,
    client: httpx.Client,
    ours: list[int],
) -> dict[str, float]:
    """One load run; also how busy the machine was with processes that are not ours ("foreign" load)."""
    if args.quiet_wait > 0:
        _wait_quiet(ours, args.max_foreign, args.quiet_wait)
    before = tree_cpu_seconds(target.proc.pid)
    ours_before = sum(tree_cpu_seconds(pid) for pid in ours)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = _machine_busy_seconds()
    wall = time.monotonic()
    result: LoadResult = run_load(
        target.url, mode=mode, concurrency=conc, duration=args.duration, pin=pin.load, use_wrk=args.use_wrk
    )
    _settle(target, client)
    wall = time.monotonic() - wall
    cpu = tree_cpu_seconds(target.proc.pid) - before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    mine = sum(tree_cpu_seconds(pid) for pid in ours) - ours_before + loadgen
    foreign = max(0.0, _machine_busy_seconds() - busy_before - mine) / wall
    return {
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "requests": result.requests,
        "cpu_ms": 1000 * cpu / max(1, result.requests),
        "foreign_cores": foreign,
    }


def _start_all(
    names: list[str], args: argparse.Namespace, pin: Pinning, stack: ExitStack, work: Path, logs: Path
) -> tuple[Proc, Proc | None, list[Target]]:
    _log(f"starting the fake provider ({args.chunks} chunks per answer)")
    fake = start_fake(pin, logs, args.chunks)
    stack.callback(fake.stop)
    receiver = None
    if any(name.startswith("gw-all") for name in names):
        receiver = start_receiver(pin, logs)
        stack.callback(receiver.stop)
    targets = []
    server_args = ["--loop", args.loop, "--http", args.http]
    for name in names:
        if name == "direct":
            targets.append(
                Target(
                    "direct",
                    "the fake provider itself (floor)",
                    f"http://127.0.0.1:{fake.port}/v1/chat/completions",
                    fake,
                )
            )
            continue
        _log(f"starting {name}")
        target = start_target(
            name, fake=fake, receiver=receiver, pin=pin, logs=logs, work=work, server_args=server_args
        )
        stack.callback(target.proc.stop)
        targets.append(target)
    return fake, receiver, targets


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    pin = Pinning.detect()
    if pin.enabled:
        os.sched_setaffinity(0, {1})  # this orchestrator mostly waits; keep it off the server core
    names = list(args.targets)
    if args.with_litellm and "litellm" not in names:
        names.append("litellm")
    modes = ["plain", "stream"]
    concs = args.concurrency
    RESULTS.mkdir(exist_ok=True)
    logs = RESULTS / "logs"
    logs.mkdir(exist_ok=True)
    samples: dict[str, list[dict[str, float]]] = {}
    memory: dict[str, dict[str, float]] = {}
    otlp: dict[str, int] | None = None
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="llm-obs-bench-") as tmp:
        work = Path(tmp)
        fake, receiver, targets = _start_all(names, args, pin, stack, work, logs)
        client = stack.enter_context(httpx.Client(timeout=10))
        for target in targets:
            _log(f"warming up {target.name}")
            for mode in modes:
                run_load(
                    target.url, mode=mode, concurrency=16, duration=args.warmup, pin=pin.load, use_wrk=args.use_wrk
                )
            _settle(target, client)
            memory[target.name] = {"rss_after_warmup": tree_memory_mb(target.proc.pid)[0]}
        ours = sorted({t.proc.pid for t in targets} | {fake.pid} | ({receiver.pid} if receiver else set()))
        total = len(modes) * len(concs) * args.reps * len(targets)
        done = 0
        started = time.monotonic()
        for mode in modes:
            for conc in concs:
                for rep in range(args.reps):
                    order = targets[rep % len(targets) :] + targets[: rep % len(targets)]
                    for target in order:
                        sample = _measure(target, mode, conc, args, pin, client, ours)
                        for _retry in range(args.retries):
                            if sample["foreign_cores"] <= args.max_foreign:
                                break
                            _log(f"  other processes used {sample['foreign_cores']:.2f} cores: measuring again")
                            sample = _measure(target, mode, conc, args, pin, client, ours)
                        samples.setdefault(f"{target.name}|{mode}|{conc}", []).append(sample)
                        done += 1
                        eta = (time.monotonic() - started) / done * (total - done)
                        _log(
                            f"{mode:6} c={conc:<3} rep {rep + 1}/{args.reps} {target.name:13} "
                            f"{sample['rps']:9,.0f} req/s  p50 {sample['p50_ms']:7.2f} ms  "
                            f"cpu {sample['cpu_ms']:.3f} ms/req  err {sample['errors']:.0f}  "
                            f"foreign {sample['foreign_cores']:.2f}  (eta {eta:.0f} s)"
                        )
        for target in targets:
            memory[target.name]["peak"] = tree_memory_mb(target.proc.pid)[1]
        exporting = [t for t in targets if t.name.startswith("gw-all")]
        if exporting and receiver is not None:
            for target in exporting:
                target.proc.stop()  # shutdown flushes the span processor
            stats = client.get(f"http://127.0.0.1:{receiver.port}/stats").json()
            records = 0
            for db_path in work.glob("gw-all*-logs.db"):
                with sqlite3.connect(db_path) as db:
                    records += int(db.execute("SELECT count(*) FROM llm_records").fetchone()[0])
            otlp = {"spans": stats["spans"], "requests": stats["requests"], "records": records}
    return {
        "meta": _meta(args, pin),
        "targets": [{"name": t.name, "label": t.label} for t in targets],
        "modes": modes,
        "concurrency": concs,
        "samples": samples,
        "memory": memory,
        "otlp": otlp,
    }


def _commit() -> str:
    """The package's commit, with a note when its files differ from it (the run measures the work tree)."""
    import subprocess

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=HERE.parent, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "llm_obs_middleware", "pyproject.toml")
    return f"{commit} + uncommitted changes" if dirty else commit


def _meta(args: argparse.Namespace, pin: Pinning) -> dict[str, Any]:
    versions = ", ".join(
        f"{name} {_version(name)}" for name in ("llm-obs-middleware", "httpx", "aiohttp", "uvloop", "httptools")
    )
    if args.with_litellm:
        versions += f", litellm {_litellm_version()}"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "max_foreign": args.max_foreign,
        "retries": args.retries,
        "quiet_wait": args.quiet_wait,
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": f"Linux {platform.release()}",
        "python": platform.python_version(),
        "uvicorn": _version("uvicorn"),
        "loop": _resolved(args.loop, "uvloop", "asyncio"),
        "http": _resolved(args.http, "httptools", "h11"),
        "pinning": "servers on core 0, fake provider + OTLP receiver + load generator on core 1"
        if pin.enabled
        else "none (fewer than 2 cores or no taskset)",
        "loadgen": "wrk 4.1 (1 thread, closed loop)" if args.use_wrk else "bundled asyncio client (wrk missing)",
        "duration": args.duration,
        "reps": args.reps,
        "versions": versions,
    }


def run_soak(args: argparse.Namespace) -> str:
    """Mixed traffic through the every-sink gateway for ``args.soak`` minutes; RSS and queue depth over time."""
    pin = Pinning.detect()
    if pin.enabled:
        os.sched_setaffinity(0, {1})
    RESULTS.mkdir(exist_ok=True)
    logs = RESULTS / "logs"
    logs.mkdir(exist_ok=True)
    seconds = max(1, round(args.soak * 60))
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="llm-obs-soak-") as tmp:
        _fake, _receiver, targets = _start_all(["gw-all"], args, pin, stack, Path(tmp), logs)
        target = targets[0]
        client = stack.enter_context(httpx.Client(timeout=10))
        run_load(target.url, mode="mixed", concurrency=16, duration=args.warmup, pin=pin.load, use_wrk=args.use_wrk)
        _settle(target, client)
        env = {**os.environ, "BENCH_MODE": "mixed"}
        script = str(HERE / "chat.lua")
        command = [*pin.load, "wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", "30s", "-s", script, target.url]
        if not args.use_wrk:
            command = [*pin.load, sys.executable, str(HERE / "loadgen.py"), "--url", target.url, "--mode", "mixed"]
            command += ["-c", "16", "-d", str(seconds)]
        import subprocess

        _log(f"soak: {args.soak:g} min of mixed traffic at c=16 through gw-all")
        series: list[tuple[float, float, int]] = []
        begin = time.monotonic()
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as load:
            while load.poll() is None:
                depth = target.queue_depth(client) or 0
                series.append((time.monotonic() - begin, tree_memory_mb(target.proc.pid)[0], depth))
                time.sleep(1.0)
            output = load.stdout.read() if load.stdout else ""
        _settle(target, client)
        final_depth = target.queue_depth(client) or 0
        dropped = _dropped_records(client, target)
    from loadgen import _parse

    result = _parse(output)
    return _soak_report(args, series, result, final_depth) + f"Records dropped by the export queues: {dropped}.\n"


def _dropped_records(client: httpx.Client, target: Target) -> str:
    """Sum of the gateway's ``*dropped*`` Prometheus counters (queue overflow), as text."""
    assert target.health_url is not None
    try:
        text = client.get(target.health_url.removesuffix("/healthz") + "/metrics").text
    except httpx.HTTPError as exc:
        return f"unknown ({exc})"
    total = 0.0
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if not line.startswith("#") and "dropped" in name and name.endswith("_total"):
            total += float(line.rsplit(" ", 1)[1])
    return f"{total:g}"


def _soak_report(
    args: argparse.Namespace, series: list[tuple[float, float, int]], result: LoadResult, final: int
) -> str:
    def rss_at(fraction: float) -> float:
        window = [rss for t, rss, _ in series if abs(t - fraction * series[-1][0]) <= 5]
        return statistics.median(window) if window else series[int(fraction * (len(series) - 1))][1]

    start, middle, end = rss_at(0.05), rss_at(0.5), rss_at(1.0)
    flat = end - middle <= max(5.0, 0.05 * middle)
    max_depth = max(depth for _, _, depth in series)
    lines = [
        f"# Soak: {args.soak:g} min of mixed traffic (alternating non-streamed and streamed chat), c=16, gw-all",
        "",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, nproc = {os.cpu_count()}, package at {_commit()}.",
        f"Requests: {result.requests:,} ({result.rps:,.0f} req/s), errors: {result.errors}, p50 {result.p50_ms:.2f} ms,"
        f" p99 {result.p99_ms:.2f} ms.",
        "",
        "| RSS start MB | RSS middle MB | RSS end MB | flat? | export queue depth max | after the run |",
        "|---:|---:|---:|---|---:|---:|",
        f"| {start:.1f} | {middle:.1f} | {end:.1f} | {'yes (pass)' if flat else 'NO (grew)'} | {max_depth} | {final} |",
        "",
        "RSS sampled every second (median of the samples within 5 s of 5 %, 50 % and 100 % of the run);",
        "flat = the second half grew by at most max(5 MB, 5 %). The queue bound is 10,000 records.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16, 64])
    parser.add_argument("--targets", type=lambda s: s.split(","), default=list(ALL_TARGETS))
    parser.add_argument("--with-litellm", action="store_true", help="also run the LiteLLM proxy (own venv)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s, 1 rep, c=1,16")
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="soak the every-sink gateway instead")
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=0.3,
        help="re-measure when other processes used more than this many cores meanwhile (default 0.3)",
    )
    parser.add_argument("--retries", type=int, default=1, help="re-measurements per sample at most (default 1)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each sample, wait up to this long for other processes to calm down (default 0: no wait)",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target and workload")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per answer (default 20)")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    parser.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"))
    parser.add_argument("--loadgen", default="auto", choices=("auto", "wrk", "python"))
    parser.add_argument("--out", type=Path, default=RESULTS / "latest", help="output path without suffix")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.reps, args.concurrency, args.warmup = 3.0, 1, [1, 16], 1.0
    args.use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and have_wrk())
    return args


def _stop_on_signal(signum: int, _frame: object) -> None:
    # Raise instead of dying, so the ExitStack stops every server this run started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)  # also when started in the background (SIGINT ignored)
    args = parse_args(argv)
    if args.soak:
        text = run_soak(args)
        (RESULTS / "soak.md").write_text(text)
        sys.stdout.write(text)
        return 0
    run = run_suite(args)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(run, indent=1))
    text = render_markdown(run)
    out.with_suffix(".md").write_text(text)
    try:
        render_chart(run, out.with_suffix(".png"))
    except ImportError:
        _log("matplotlib is not installed: no chart (pip install -e '.[bench]')")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
