"""CPU per upstream request of the gateway's upstream seam, against aiohttp used directly and
(``--old REV``) against the seam as it was at a git revision.

    .venv/bin/python benchmarks/upstream_client_bench.py [--requests 2000] [--rounds 5] [--old 93ebb95]

Starts the fake provider on loopback in its own process (so ``time.process_time`` counts this side
only), then sends ``--requests`` non-streamed and then streamed chat requests one after the other
through ``Upstream.send`` + ``chunks()`` + ``aclose()`` (as the router sends, timeouts and headers as
it passes them), through a bare ``aiohttp.ClientSession``, and through the old seam when asked
(``direct_request`` + ``send_upstream`` + ``iter_body`` + ``aclose``, loaded from ``git show REV:...``),
alternating per round, and prints the median process CPU per request of each.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from llm_obs_middleware.upstream.client import Upstream, build_upstream

PLAIN = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
STREAM = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
HEADERS = [
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer sk-x"),
    (b"accept-encoding", b"identity"),
]
TIMEOUTS = httpx.Timeout(120.0, connect=5.0)


async def through_upstream(upstream: Upstream, url: str, body: bytes, count: int) -> None:
    for _ in range(count):
        response = await upstream.send("POST", url, HEADERS, body, timeouts=TIMEOUTS, provider="fake")
        async for _chunk in response.chunks():
            pass
        await response.aclose()


async def through_aiohttp(session: aiohttp.ClientSession, url: str, body: bytes, count: int) -> None:
    headers = {key.decode(): value.decode() for key, value in HEADERS}
    for _ in range(count):
        async with session.request("POST", url, headers=headers, data=body) as response:
            async for _chunk in response.content.iter_any():
                pass


def load_old(revision: str) -> Any:
    """The old ``upstream/client.py`` (and its aiohttp transport) of ``revision``, as module ``old_upstream.client``."""
    root = Path(tempfile.mkdtemp()) / "old_upstream"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name in ("client", "aiohttp_transport"):
        text = subprocess.run(
            ["git", "show", f"{revision}:llm_obs_middleware/upstream/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        text = text.replace("llm_obs_middleware.upstream.aiohttp_transport", "old_upstream.aiohttp_transport")
        (root / f"{name}.py").write_text(text)
    sys.path.insert(0, str(root.parent))
    return importlib.import_module("old_upstream.client")


def old_runner(old: Any) -> Any:
    async def through_old(client: Any, url: str, body: bytes, count: int) -> None:
        for _ in range(count):
            request = old.direct_request(client, "POST", url, headers=HEADERS, content=body, timeout=TIMEOUTS)
            response = await old.send_upstream(client, request, provider="fake")
            async for _chunk in old.iter_body(response, provider="fake"):
                pass
            await response.aclose()

    return through_old


async def measure(url: str, count: int, rounds: int, old: Any) -> None:
    upstream = build_upstream()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512), auto_decompress=False)
    runs: list[tuple[str, Any, Any]] = [("new seam (aiohttp)", through_upstream, upstream)]
    if old is not None:
        runs.append(("old seam (aiohttp)", old_runner(old), old.build_client()))
    runs.append(("bare aiohttp", through_aiohttp, session))
    for kind, body in (("non-streamed", PLAIN), ("streamed", STREAM)):
        for _, run, target in runs:
            await run(target, url, body, 200)  # warm: connections, caches
        figures: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        for _ in range(rounds):
            for name, run, target in runs:
                started = time.process_time()
                await run(target, url, body, count)
                figures[name].append((time.process_time() - started) / count * 1e6)
        medians = {name: statistics.median(values) for name, values in figures.items()}
        print(f"{kind}, {count} requests x {rounds} rounds:")
        for name, values in figures.items():
            print(f"  {name:20s} {medians[name]:7.1f} µs CPU per request (rounds: {[round(v) for v in values]})")
        if old is not None:
            print(f"  new / old: {medians['new seam (aiohttp)'] / medians['old seam (aiohttp)']:.3f}")
    await upstream.aclose()
    if old is not None:
        await runs[1][2].aclose()
    await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=9731)
    parser.add_argument("--old", help="git revision whose upstream/client.py to compare against")
    args = parser.parse_args()
    old = load_old(args.old) if args.old else None
    code = (
        "import time; from llm_obs_middleware.testing import FakeProviderServer\n"
        f"with FakeProviderServer(port={args.port}):\n    time.sleep(10**6)"
    )
    fake = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{args.port}/v1/chat/completions"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{args.port}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(measure(url, args.requests, args.rounds, old))
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
