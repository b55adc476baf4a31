"""The "limit" targets: bare pure-ASGI pass-through proxies with no observability at all.

Two variants of the same proxy, differing only in the upstream HTTP client: one shared
``httpx.AsyncClient`` (what our gateway uses today) and one shared ``aiohttp.ClientSession`` (the
fastest Python client we know of, so the ceiling for a Python gateway on the same server). Both read
the request body, forward it with the client's headers (minus hop-by-hop ones) to the same path on the
upstream, and stream the answer back chunk by chunk as it arrives; nothing is parsed or recorded.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import httpx

__all__ = ["AiohttpProxy", "HttpxProxy", "proxy_for"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

# RFC 9110 section 7.6.1, plus the ones the client library sets itself.
_SKIP_REQUEST = frozenset(
    {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)
_SKIP_RESPONSE = frozenset({"content-length", "connection", "keep-alive", "transfer-encoding", "trailer", "upgrade"})


async def _read_body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def _lifespan(receive: Any, send: Any, start: Any, stop: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


class HttpxProxy:
    """Pass-through over one shared ``httpx.AsyncClient`` (pooled, HTTP/1.1, keep-alive)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.client: httpx.AsyncClient | None = None

    async def _start(self) -> None:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=30.0)
        self.client = httpx.AsyncClient(limits=limits, timeout=120.0, trust_env=False)

    async def _stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self._start, self._stop)
            return
        assert self.client is not None, "run with lifespan on"
        body = await _read_body(receive)
        headers = [(k, v) for k, v in scope["headers"] if k not in _SKIP_REQUEST]
        request = self.client.build_request(
            scope["method"], self.upstream + scope["path"], headers=headers, content=body
        )
        response = await self.client.send(request, stream=True)
        try:
            out = [(k, v) for k, v in response.headers.raw if k.decode("latin-1").lower() not in _SKIP_RESPONSE]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


class AiohttpProxy:
    """Pass-through over one shared ``aiohttp.ClientSession`` (the limit for a Python gateway)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: Any = None

    async def _start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=512, limit_per_host=0, keepalive_timeout=30.0)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=120.0),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def _stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self._start, self._stop)
            return
        assert self.session is not None, "run with lifespan on"
        body = await _read_body(receive)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in _SKIP_REQUEST]
        async with self.session.request(
            scope["method"], self.upstream + scope["path"], headers=headers, data=body
        ) as r:
            out = [(k, v) for k, v in r.raw_headers if k.decode("latin-1").lower() not in _SKIP_RESPONSE]
            await send({"type": "http.response.start", "status": r.status, "headers": out})
            async for chunk in r.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def proxy_for(kind: str, upstream: str) -> HttpxProxy | AiohttpProxy:
    """``bare-httpx`` or ``bare-aiohttp`` pointed at ``upstream`` (scheme, host and port)."""
    if kind == "bare-httpx":
        return HttpxProxy(upstream)
    if kind == "bare-aiohttp":
        return AiohttpProxy(upstream)
    raise ValueError(f"unknown bare proxy {kind!r}")
