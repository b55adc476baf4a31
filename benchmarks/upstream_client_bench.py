"""CPU per upstream request of the gateway's client seam against aiohttp used directly.

    .venv/bin/python benchmarks/upstream_client_bench.py [--requests 2000] [--rounds 5]

Starts the fake provider on loopback (its own process), then in this process sends ``--requests``
non-streamed chat requests one after the other through ``llm_obs_middleware.upstream.client``
(``direct_request`` + ``send_upstream`` + ``iter_body`` + ``aclose``, the client ``build_client`` makes, as
the router sends; and with ``upstream_request``'s ``httpx.Request``, as for a signing adapter) and through a
bare ``aiohttp.ClientSession``, alternating per round, and prints the median process CPU per request of
each. The difference is what the seam costs over the fastest Python client.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp
import httpx

from llm_obs_middleware.upstream.client import build_client, direct_request, iter_body, send_upstream, upstream_request

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
HEADERS = [
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer sk-x"),
    (b"accept-encoding", b"identity"),
]


async def through_seam(client: httpx.AsyncClient, url: str, count: int) -> None:
    timeout = httpx.Timeout(120.0, connect=5.0)
    for _ in range(count):
        request = direct_request(client, "POST", url, headers=HEADERS, content=BODY, timeout=timeout)
        assert request is not None
        response = await send_upstream(client, request, provider="fake")
        async for _chunk in iter_body(response, provider="fake"):
            pass
        await response.aclose()


async def through_seam_httpx_request(client: httpx.AsyncClient, url: str, count: int) -> None:
    timeout = httpx.Timeout(120.0, connect=5.0)
    for _ in range(count):
        request = upstream_request(client, "POST", url, headers=HEADERS, content=BODY, timeout=timeout)
        response = await send_upstream(client, request, provider="fake")
        async for _chunk in iter_body(response, provider="fake"):
            pass
        await response.aclose()


async def through_aiohttp(session: aiohttp.ClientSession, url: str, count: int) -> None:
    headers = {key.decode(): value.decode() for key, value in HEADERS}
    for _ in range(count):
        async with session.request("POST", url, headers=headers, data=BODY) as response:
            async for _chunk in response.content.iter_any():
                pass


async def measure(url: str, count: int, rounds: int) -> None:
    client = build_client()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=512),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
    )
    runs: list[tuple[str, Any, Any]] = [
        ("llm-obs seam", through_seam, client),
        ("seam, httpx.Request", through_seam_httpx_request, client),
        ("aiohttp", through_aiohttp, session),
    ]
    for _, run, target in runs:
        await run(target, url, 200)  # warm: connections, caches
    figures: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    for _ in range(rounds):
        for name, run, target in runs:
            started = time.process_time()
            await run(target, url, count)
            figures[name].append((time.process_time() - started) / count * 1e6)
    for name, values in figures.items():
        print(f"{name:20s} {statistics.median(values):7.1f} µs CPU per request (rounds: {[round(v) for v in values]})")
    await client.aclose()
    await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=9731)
    args = parser.parse_args()
    fake = subprocess.Popen(
        [sys.executable, "-m", "llm_obs_middleware", "fake-provider", "--port", str(args.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
        asyncio.run(measure(url, args.requests, args.rounds))
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
