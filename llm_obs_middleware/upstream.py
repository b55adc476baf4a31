"""The one place that builds the upstream HTTP client and turns httpx errors into ours.

Everything else talks to providers through the httpx API, so users can pass their own client or
transport (tests use ``httpx.MockTransport``) and the benchmark can swap the transport behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from .errors import UpstreamConnectError, UpstreamError, UpstreamTimeout

__all__ = ["build_client", "iter_body", "send_upstream"]

# Hop-by-hop headers (RFC 9110 section 7.6.1) never cross a proxy.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)


class _NoCookies(httpx.Cookies):
    """A gateway keeps no upstream cookies: they would leak between clients (and parsing every
    response with ``http.cookiejar`` costs measurable CPU per request)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _UpstreamClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` without a cookie jar."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, value: object) -> None:
        return None


def build_client(
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 512,
    max_keepalive_connections: int = 128,
    keepalive_expiry: float = 30.0,
) -> httpx.AsyncClient:
    """One shared client for every upstream: pooled, HTTP/1.1, no redirects, no env proxies, no cookies.

    The transport is httpx's own unless ``transport`` is given. (The benchmark measures the
    ``httpx-aiohttp`` transport 2-3x faster under concurrency; see docs/benchmarks.md for how to pass it.)
    """
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=keepalive_expiry,
    )
    return _UpstreamClient(
        transport=transport,
        limits=limits,
        timeout=httpx.Timeout(120.0, connect=5.0),
        follow_redirects=False,
        trust_env=False,
    )


async def send_upstream(
    client: httpx.AsyncClient, request: httpx.Request, *, provider: str, deadline_s: float | None = None
) -> httpx.Response:
    """Send and return once the response headers arrived; the body is read with :func:`iter_body`.

    ``deadline_s`` bounds the wait for the headers whatever the transport (httpx's own timeouts are
    enforced by the transport, and a custom or mock one may not).
    """
    try:
        if deadline_s is None:
            return await client.send(request, stream=True)
        async with asyncio.timeout(deadline_s):
            return await client.send(request, stream=True)
    except TimeoutError as exc:
        raise UpstreamTimeout(f"provider {provider!r} timed out (request deadline)", provider=provider) from exc
    except httpx.TimeoutException as exc:
        phase = "connect" if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)) else "first byte"
        raise UpstreamTimeout(f"provider {provider!r} timed out ({phase})", provider=provider) from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectError(
            f"provider {provider!r} could not be reached: {type(exc).__name__}", provider=provider
        ) from exc


async def iter_body(response: httpx.Response, *, provider: str) -> AsyncIterator[bytes]:
    """The raw body bytes as they arrive (never decoded or re-chunked)."""
    if response.is_stream_consumed:  # built with its content in hand (e.g. by an httpx.MockTransport handler)
        if response.content:
            yield response.content
        return
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(
            f"provider {provider!r} stopped sending mid-response", provider=provider, status=response.status_code
        ) from exc
    except httpx.TransportError as exc:
        raise UpstreamError(
            f"provider {provider!r} closed the connection mid-response",
            provider=provider,
            status=response.status_code,
        ) from exc
