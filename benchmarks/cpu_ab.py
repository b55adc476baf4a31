"""Server cost per request of gateway builds side by side: the package from several trees, in one run.

    .venv/bin/python benchmarks/cpu_ab.py base=/path/to/old-checkout new=. --sinks off -c 1,16 --rounds 5
    .venv/bin/python benchmarks/cpu_ab.py base=/path/to/old-checkout new=. --instructions --requests 512

Each ``name=tree`` is a directory holding ``llm_obs_middleware/`` (``.`` is this checkout). Every tree's
gateway is served by ``serve.py`` (uvicorn, uvloop, httptools, aiohttp upstream transport) on the server
core against one fake provider (and, with ``--sinks all``, one OTLP receiver) on the load core, all
started once; the rounds then measure each gateway in turn, the order rotated per round. Medians, min
and max over the rounds are printed per tree and concurrency.

* Default, **CPU time**: a round runs ``wrk`` for ``--duration`` seconds per gateway; the figure is the
  gateway process's CPU time (every thread's ``sum_exec_runtime`` from ``/proc/<pid>/task/*/schedstat``:
  the event loop, the export worker, the sink threads; read once the export queue drained and the
  process went idle) over the requests answered. Steadier than requests per second on a shared machine,
  but still moved by other processes (caches, frequency).
* ``--instructions``: the gateways run under ``valgrind --tool=callgrind`` (instrumentation off until the
  measurement); a round sends exactly ``--requests`` requests per gateway (a plain keep-alive client,
  ``-c`` connections) and counts the instructions the gateway executed, every thread, until its export
  queue drained. Deterministic to about 0.5 % (``PYTHONHASHSEED=0``) whatever else runs on the machine,
  and slow (~50 requests/s). With ``--sinks all`` the export queue lingers ``--linger`` seconds, so
  batches fill to ``queue.batch_size`` as they do under real load rather than at valgrind's pace.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import MESSAGES, run_load
from targets import (
    ROOT,
    Pinning,
    Proc,
    _gateway_config,
    _serve,
    _spawn,
    _wait_ready,
    free_port,
    start_fake,
    start_receiver,
)

HERE = Path(__file__).resolve().parent


def cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of every live thread of ``pid`` (the gateway's threads live as long as it does)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except OSError:
            continue
    return total


def _queue_empty(health: str, client: httpx.Client, every: float = 0.1, limit: float = 60) -> None:
    """Wait until the gateway's export queue is empty (each look is a ``/healthz`` request, counted too)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if not client.get(health, timeout=60).json().get("export_queue_depth"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(every)


def _idle(pid: int) -> None:
    """Wait until the process is idle (under 2 ms of CPU in 0.2 s): the export worker is done."""
    previous = cpu_ns(pid)
    for _ in range(100):
        time.sleep(0.2)
        now = cpu_ns(pid)
        if now - previous < 2_000_000:
            return
        previous = now


def send_requests(url: str, count: int, connections: int, stream: bool) -> None:
    """``count`` chat requests over ``connections`` keep-alive connections; raises on any non-200."""
    parts = urlsplit(url)
    body = ('{"model":"gpt-4o-mini",' + MESSAGES + ',"max_tokens":64' + (',"stream":true}' if stream else "}")).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-client"}
    failures: list[str] = []

    def one_connection(n: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        try:
            for _ in range(n):
                conn.request("POST", parts.path, body, headers)
                response = conn.getresponse()
                data = response.read()
                if response.status != 200:
                    failures.append(f"{response.status} {data[:200]!r}")
        finally:
            conn.close()

    threads = [
        threading.Thread(target=one_connection, args=(count // connections + (i < count % connections),))
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, e.g. {failures[0]}")


class Callgrind:
    """A gateway under callgrind: instruction counts of what it runs between :meth:`start` and :meth:`stop`."""

    def __init__(self, proc: Proc, out: Path) -> None:
        self.proc = proc
        self.out = out

    def _control(self, *argv: str) -> None:
        subprocess.run(["callgrind_control", *argv, str(self.proc.pid)], check=True, capture_output=True)

    def start(self) -> None:
        self._control("--zero")
        self._control("--instr=on")

    def stop(self) -> int:
        """Instructions since :meth:`start` (all threads)."""
        self._control("--instr=off")
        before = set(self.out.parent.glob(self.out.name + ".*"))
        self._control("--dump")
        for _ in range(100):
            dumps = set(self.out.parent.glob(self.out.name + ".*")) - before
            if dumps:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # let the dump files be written out
        total = 0
        for dump in dumps:
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        return total


def _config(args: argparse.Namespace, name: str, fake: Proc, receiver: Proc | None, work: Path) -> Path:
    sinks = args.sinks == "all"
    config = _gateway_config(fake.port, sinks=sinks, work=work, receiver_port=receiver.port if receiver else None)
    if sinks:
        config["exporters"]["log_store"]["url"] = f"sqlite:///{work / f'{name}-logs.db'}"
        if args.instructions:
            config["queue"] = {"flush_interval_s": args.linger}
    path = work / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", help="name=path of a tree holding llm_obs_middleware/")
    parser.add_argument("--sinks", choices=("off", "all"), default="off")
    parser.add_argument("--mode", choices=("plain", "stream"), default="plain")
    parser.add_argument("-c", "--concurrency", default="1,16")
    parser.add_argument("-d", "--duration", type=float, default=3, help="CPU time: seconds of wrk per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind")
    parser.add_argument("--requests", type=int, default=512, help="instructions: requests per measurement")
    parser.add_argument("--linger", type=float, default=20.0, help="instructions, all sinks: queue.flush_interval_s")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.trees)
    levels = [int(c) for c in args.concurrency.split(",")]
    pin = Pinning.detect()
    results: dict[tuple[str, int], list[float]] = {(n, c): [] for n in trees for c in levels}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="llm-obs-cpu-ab-") as tmp:
        work = Path(tmp)
        fake = start_fake(pin, work, 20)
        stack.callback(fake.stop)
        receiver = start_receiver(pin, work) if args.sinks == "all" else None
        if receiver is not None:
            stack.callback(receiver.stop)
        servers: dict[str, tuple[Proc, str, str, Callgrind | None]] = {}
        for name, tree in trees.items():
            config = _config(args, name, fake, receiver, work)
            port = free_port()
            env = {**os.environ, "PYTHONPATH": str((ROOT / tree).resolve()), "PYTHONHASHSEED": "0"}
            meter = None
            if args.instructions:
                out = work / f"callgrind-{name}.out"
                command = [*pin.server, "valgrind", "--tool=callgrind", "--instr-atstart=no"]
                command += [f"--callgrind-out-file={out}", sys.executable, str(HERE / "serve.py"), "gateway"]
                command += ["--port", str(port), "--config", str(config)]
                proc = _spawn(name, command, port, work, env=env)
            else:
                proc = _serve("gateway", port, pin, work, "--config", str(config), log_name=name, env=env)
            stack.callback(proc.stop)
            base = f"http://127.0.0.1:{port}"
            _wait_ready(proc, base + "/healthz", 600 if args.instructions else 60)
            if args.instructions:
                meter = Callgrind(proc, out)
            servers[name] = (proc, base + "/v1/chat/completions", base + "/healthz", meter)
        client = stack.enter_context(httpx.Client())
        names = list(trees)
        for name in names:  # warm-up (imports, connections, caches)
            run_load(servers[name][1], mode=args.mode, concurrency=max(levels), duration=2, pin=pin.load)
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for c in levels:
                for name in order:
                    figure = _measure(args, servers[name], c, client, pin)
                    results[(name, c)].append(figure)
                    sys.stderr.write(f"round {rnd} c={c} {name}: {figure:,.1f}\n")
    unit = "instructions" if args.instructions else "server CPU us"
    print(f"sinks {args.sinks}, {args.mode}, {args.rounds} rounds: {unit} per request")
    print("| c | tree | median | min | max |")
    print("|---:|---|---:|---:|---:|")
    for c in levels:
        for name in names:
            values = results[(name, c)]
            row = (statistics.median(values), min(values), max(values))
            print(
                f"| {c} | {name} | " + " | ".join(f"{v:,.0f}" if args.instructions else f"{v:.1f}" for v in row) + " |"
            )


def _measure(
    args: argparse.Namespace, server: tuple[Proc, str, str, Any], c: int, client: httpx.Client, pin: Pinning
) -> float:
    proc, url, health, meter = server
    if meter is not None:
        # Under callgrind a look at /healthz costs ~0.1 M instructions: look once a second. With every
        # sink on, --requests a multiple of queue.batch_size (256) leaves no batch waiting out --linger.
        _queue_empty(health, client, every=1.0, limit=args.linger + 120)  # the warm-up's records too
        meter.start()
        send_requests(url, args.requests, c, args.mode == "stream")
        time.sleep(0.5)
        if args.sinks == "all":
            _queue_empty(health, client, every=1.0, limit=args.linger + 120)
            time.sleep(5)  # the sink threads finish their last batch
        return meter.stop() / args.requests
    _queue_empty(health, client)
    _idle(proc.pid)
    before = cpu_ns(proc.pid)
    load = run_load(url, mode=args.mode, concurrency=c, duration=args.duration, pin=pin.load)
    _queue_empty(health, client)
    _idle(proc.pid)  # the few /healthz requests of the drain are counted too, alike for every tree
    if load.errors or not load.requests:
        raise RuntimeError(f"{url}: {load.errors} errors, {load.requests} requests")
    return (cpu_ns(proc.pid) - before) / 1000 / load.requests


if __name__ == "__main__":
    main()
