"""Start, probe and stop the processes a benchmark run needs: the fake provider, an OTLP receiver,
and each target (bare proxies, the gateway with sinks off and on, optionally the LiteLLM proxy).

Servers under test are pinned to core 0; the fake provider, the OTLP receiver and the load generator
to core 1 (when the machine has two cores and ``taskset``). CPU time and memory are read from
``/proc`` for the server process and its children.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = [
    "HERE",
    "LITELLM_VENV",
    "ROOT",
    "Pinning",
    "Proc",
    "Target",
    "free_port",
    "start_fake",
    "start_receiver",
    "start_target",
    "tree_cpu_seconds",
    "tree_memory_mb",
]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LITELLM_VENV = HERE / ".litellm-venv"
MODEL = "gpt-4o-mini"
CHAT_PATH = "/v1/chat/completions"
_TICKS = os.sysconf("SC_CLK_TCK")
GATEWAY_FLAGS = frozenset({"httpx", "nospans", "nolinger", "granian", "base"})


@dataclass(frozen=True)
class Pinning:
    """``taskset`` prefixes for the server core and the load core (empty when pinning is impossible)."""

    server: list[str]
    load: list[str]

    @classmethod
    def detect(cls) -> Pinning:
        if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
            return cls(server=["taskset", "-c", "0"], load=["taskset", "-c", "1"])
        return cls(server=[], load=[])

    @property
    def enabled(self) -> bool:
        return bool(self.server)


@dataclass
class Proc:
    """A process this run started (and will stop), with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)  # its own session: the server and any children
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self.log.close()


@dataclass
class Target:
    """One thing under load: its chat URL and, when we started it, its server process."""

    name: str
    label: str
    url: str
    proc: Proc
    health_url: str | None = None
    notes: list[str] = field(default_factory=list)

    def queue_depth(self, client: httpx.Client) -> int | None:
        """The gateway's export queue depth from ``/healthz`` (``None`` for other targets)."""
        if self.health_url is None:
            return None
        try:
            depth = client.get(self.health_url, timeout=5).json().get("export_queue_depth")
        except (httpx.HTTPError, ValueError):
            return None
        return int(depth) if depth is not None else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            for child in text.split():
                found.extend(_children(int(child)))
    except OSError:
        pass
    return found


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads) and its live children, in seconds."""
    total = 0
    for one in _children(pid):
        try:
            stat = Path(f"/proc/{one}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5): utime, stime
    return total / _TICKS


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` in MB, summed over the process and its children."""
    rss = hwm = 0
    for one in _children(pid):
        try:
            status = Path(f"/proc/{one}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss / 1024, hwm / 1024


def _spawn(name: str, command: list[str], port: int, logs: Path, env: dict[str, str] | None = None) -> Proc:
    log = (logs / f"{name}.log").open("wb")
    popen = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    return Proc(name, popen, log, port)


def _wait_ready(proc: Proc, url: str | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see its log")
        try:
            if url is None:
                with socket.create_connection(("127.0.0.1", proc.port), timeout=1):
                    return
            elif httpx.get(url, timeout=2).status_code < 500:
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer within {timeout:.0f} s")


def _serve(
    target: str,
    port: int,
    pin: Pinning,
    logs: Path,
    *extra: str,
    core: str = "server",
    log_name: str | None = None,
    env: dict[str, str] | None = None,
) -> Proc:
    prefix = pin.server if core == "server" else pin.load
    command = [*prefix, sys.executable, str(HERE / "serve.py"), target, "--port", str(port), *extra]
    return _spawn(log_name or target, command, port, logs, env=env)


def _base_tree_env() -> dict[str, str]:
    """The environment that makes a target import the package from ``LLM_OBS_BASE_TREE`` (a checkout of
    an earlier commit), so before and after are measured side by side in one run."""
    tree = os.environ.get("LLM_OBS_BASE_TREE")
    if not tree or not (Path(tree) / "llm_obs_middleware" / "__init__.py").is_file():
        raise ValueError("a -base target needs LLM_OBS_BASE_TREE set to a checkout with llm_obs_middleware/")
    return {**os.environ, "PYTHONPATH": tree}


def start_fake(pin: Pinning, logs: Path, chunks: int) -> Proc:
    """The package's fake provider, on the load core."""
    port = free_port()
    proc = _serve("fake", port, pin, logs, "--chunks", str(chunks), core="load")
    _wait_ready(proc, None, 30)
    return proc


def start_receiver(pin: Pinning, logs: Path) -> Proc:
    """The OTLP/HTTP receiver the every-sink gateway exports to, on the load core."""
    port = free_port()
    proc = _serve("otlp-receiver", port, pin, logs, core="load")
    _wait_ready(proc, None, 30)
    return proc


def _gateway_config(fake_port: int, *, sinks: bool, work: Path, receiver_port: int | None) -> dict[str, Any]:
    exporters: dict[str, Any] = {"prometheus": {"enabled": sinks}, "log_store": {"enabled": False}}
    if sinks:
        exporters["log_store"] = {"enabled": True, "url": f"sqlite:///{work / 'gw-all-logs.db'}"}
        exporters["otlp"] = {"endpoint": f"http://127.0.0.1:{receiver_port}", "protocol": "http"}
    return {
        "providers": {
            "fake": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{fake_port}/v1",
                "api_keys": ["sk-bench-upstream"],
            }
        },
        "models": {MODEL: {"provider": "fake"}},
        "service_name": "llm-obs-bench",
        "exporters": exporters,
    }


def _litellm_config(fake_port: int) -> str:
    # JSON is YAML; the proxy reads it with its YAML loader.
    return json.dumps(
        {
            "model_list": [
                {
                    "model_name": MODEL,
                    "litellm_params": {
                        "model": f"openai/{MODEL}",
                        "api_base": f"http://127.0.0.1:{fake_port}/v1",
                        "api_key": "sk-bench-upstream",
                    },
                }
            ],
            "litellm_settings": {"telemetry": False, "turn_off_message_logging": True, "drop_params": True},
            "general_settings": {},
        }
    )


def start_target(
    name: str,
    *,
    fake: Proc,
    receiver: Proc | None,
    pin: Pinning,
    logs: Path,
    work: Path,
    server_args: list[str],
) -> Target:
    """Start one target on the server core and wait until it answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    upstream = f"http://127.0.0.1:{fake.port}"
    if name in ("bare-httpx", "bare-aiohttp", "bare-aiohttp-granian"):
        kind, server = (name, []) if name != "bare-aiohttp-granian" else ("bare-aiohttp", ["--server", "granian"])
        proc = _serve(kind, port, pin, logs, "--upstream", upstream, *server_args, *server, log_name=name)
        _wait_ready(proc, None, 30)
        label = "bare proxy, httpx" if name == "bare-httpx" else "bare proxy, aiohttp (limit)"
        if server:
            label = "bare proxy, aiohttp, served by granian"
        return Target(name, label, base + CHAT_PATH, proc)
    if name.startswith(("gw-off", "gw-all")):
        # gw-off | gw-all, optionally with experiment suffixes that change the gateway's config, to measure
        # what a setting buys: -httpx (upstream_transport: httpx, httpx's own transport instead of aiohttp's),
        # -nospans (otlp.server_spans: false), -nolinger (queue.flush_interval_s: 0, a batch per record),
        # -granian (served by granian instead of uvicorn), -base (the package from LLM_OBS_BASE_TREE: before/after).
        base_name, *flags = name.split("-")[1:]
        unknown = set(flags) - GATEWAY_FLAGS
        if base_name not in ("off", "all") or unknown:
            raise ValueError(f"unknown gateway target {name!r} (suffixes: {', '.join(sorted(GATEWAY_FLAGS))})")
        sinks = base_name == "all"
        config = _gateway_config(
            fake.port, sinks=sinks, work=work, receiver_port=receiver.port if receiver is not None else None
        )
        if sinks:
            config["exporters"]["log_store"]["url"] = f"sqlite:///{work / f'{name}-logs.db'}"
            if "nospans" in flags:
                config["exporters"]["otlp"]["server_spans"] = False
        if "httpx" in flags:
            config["upstream_transport"] = "httpx"
        if "nolinger" in flags:
            config["queue"] = {"flush_interval_s": 0}
        path = work / f"{name}.json"
        path.write_text(json.dumps(config, indent=2))
        server = ["--server", "granian"] if "granian" in flags else []
        env = _base_tree_env() if "base" in flags else None
        proc = _serve("gateway", port, pin, logs, *server_args, *server, "--config", str(path), log_name=name, env=env)
        _wait_ready(proc, base + "/healthz", 60)
        label = "llm-obs gateway, every sink on" if sinks else "llm-obs gateway, sinks off"
        notes = {
            "httpx": "httpx's own transport",
            "nospans": "no SERVER spans",
            "nolinger": "a batch per record",
            "granian": "served by granian",
            "base": "the package at LLM_OBS_BASE_TREE",
        }
        if flags:
            label += " (experiment: " + ", ".join(notes[f] for f in flags) + ")"
        return Target(name, label, base + CHAT_PATH, proc, health_url=base + "/healthz")
    if name == "litellm":
        path = work / "litellm.yaml"
        path.write_text(_litellm_config(fake.port))
        env = {
            **os.environ,
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
            "LITELLM_MODE": "PRODUCTION",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch of the price map
            "DISABLE_SCHEMA_UPDATE": "True",
            # No master key: the leanest LiteLLM path (no auth work per request), loopback only.
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        }
        env.pop("DATABASE_URL", None)
        litellm = LITELLM_VENV / "bin" / "litellm"
        command = [*pin.server, str(litellm), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
        command += ["--num_workers", "1"]
        proc = _spawn("litellm", command, port, logs, env=env)
        _wait_ready(proc, base + "/health/liveliness", 180)
        return Target(name, "LiteLLM proxy, 1 worker", base + CHAT_PATH, proc)
    raise ValueError(f"unknown target {name!r}")
