"""Drive load: ``wrk`` with ``chat.lua`` (preferred), or a bundled asyncio HTTP/1.1 client as fallback.

Both are closed-loop (each of ``concurrency`` keep-alive connections sends its next request when the
previous answer has fully arrived, streams included) and report the same figures as one
``BENCH_RESULT {json}`` line. Run alone, this module is the fallback client::

    python benchmarks/loadgen.py --url http://127.0.0.1:9303/v1/chat/completions --mode stream -c 16 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["LoadResult", "have_wrk", "run_load"]

HERE = Path(__file__).resolve().parent
MESSAGES = '"messages":[{"role":"user","content":"Say hello in five words."}]'


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured (``requests`` counts only successful answers)."""

    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _parse(output: str) -> LoadResult:
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            data = json.loads(line.removeprefix("BENCH_RESULT "))
            errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
            return LoadResult(
                requests=max(0, data["requests"] - data["status"]),  # wrk counts non-2xx/3xx answers too
                duration_s=data["duration_us"] / 1e6,
                errors=errors,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
            )
    raise RuntimeError(f"no result in load generator output:\n{output[-2000:]}")


def run_load(
    url: str,
    *,
    mode: str,
    concurrency: int,
    duration: float,
    model: str = "gpt-4o-mini",
    pin: list[str] | None = None,
    use_wrk: bool = True,
) -> LoadResult:
    """Run one closed-loop load of ``duration`` seconds against ``url`` and return its figures."""
    pin = pin or []
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_MODEL": model}
    if use_wrk:
        command = [
            *pin,
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "30s",
            "-s",
            str(HERE / "chat.lua"),
            url,
        ]
    else:
        command = [
            *pin,
            sys.executable,
            str(HERE / "loadgen.py"),
            "--url",
            url,
            "--mode",
            mode,
            "--model",
            model,
            "-c",
            str(concurrency),
            "-d",
            str(duration),
        ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr[-2000:]}")
    return _parse(done.stdout)


# -- the asyncio fallback client --------------------------------------------------------------


def _request_bytes(url: str, body: bytes) -> bytes:
    parts = urlsplit(url)
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer sk-bench-client\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _connection(url: str, bodies: list[bytes], until: float, latencies: list[float], errors: list[int]) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    requests = [_request_bytes(url, body) for body in bodies]
    count = 0
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(requests[count % len(requests)])
            count += 1
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            if status >= 400:
                errors[0] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors[0] += 1
    finally:
        writer.close()


async def _fallback(url: str, mode: str, model: str, concurrency: int, duration: float) -> dict[str, float]:
    plain = f'{{"model":"{model}",{MESSAGES},"max_tokens":64}}'.encode()
    stream = f'{{"model":"{model}",{MESSAGES},"max_tokens":64,"stream":true}}'.encode()
    bodies = {"plain": [plain], "stream": [stream], "mixed": [plain, stream]}[mode]
    latencies: list[float] = []
    errors = [0]
    started = time.perf_counter()
    until = started + duration
    await asyncio.gather(*(_connection(url, bodies, until, latencies, errors) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[max(0, math.ceil(p / 100 * len(latencies)) - 1)] * 1e6

    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "connect": 0,
        "read": 0,
        "write": 0,
        "status": errors[0],
        "timeout": 0,
        "p50_us": int(percentile(50)),
        "p99_us": int(percentile(99)),
        "mean_us": sum(latencies) / len(latencies) * 1e6 if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="asyncio fallback load generator (wrk is preferred)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("plain", "stream", "mixed"), default="plain")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    args = parser.parse_args()
    coroutine = _fallback(args.url, args.mode, args.model, args.concurrency, args.duration)
    try:
        import uvloop

        result = uvloop.run(coroutine)
    except ImportError:
        result = asyncio.run(coroutine)
    sys.stdout.write("BENCH_RESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
