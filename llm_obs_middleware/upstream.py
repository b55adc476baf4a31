"""The one place that builds the upstream HTTP client and turns httpx errors into ours.

Everything else talks to providers through the httpx API, so users can pass their own client or
transport (tests use ``httpx.MockTransport``). Behind that API the default transport is aiohttp's
(through ``httpx-aiohttp``, the ``fast`` extra) when installed: the benchmark measures it at a third of
httpx's own CPU per request under concurrency (docs/benchmarks.md). Errors of either transport become ours here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

import httpx

from .errors import ConfigurationError, UpstreamConnectError, UpstreamError, UpstreamTimeout

try:
    import aiohttp

    from ._aiohttp_transport import ExactURLAiohttpTransport as AiohttpTransport
except ImportError:  # the ``fast`` extra is not installed: httpx's own transport
    aiohttp = None  # type: ignore[assignment]
    AiohttpTransport = None  # type: ignore[assignment,misc]

__all__ = ["TransportName", "build_client", "iter_body", "send_upstream", "upstream_request"]

TransportName = Literal["auto", "aiohttp", "httpx"]

# httpx-aiohttp re-raises aiohttp errors as httpx ones (loosely: a server disconnect becomes a
# ConnectTimeout) and lets some through unmapped; both kinds are classified by the aiohttp original.
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    (httpx.TransportError,) if aiohttp is None else (httpx.TransportError, aiohttp.ClientError)
)

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
    transport_name: TransportName = "auto",
    max_connections: int = 512,
    max_keepalive_connections: int = 128,
    keepalive_expiry: float = 30.0,
) -> httpx.AsyncClient:
    """One shared client for every upstream: pooled, HTTP/1.1, no redirects, no env proxies, no cookies.

    ``transport`` wins when given. Otherwise ``transport_name``: ``aiohttp`` (needs the ``fast`` extra),
    ``httpx`` (httpx's own), or ``auto``: aiohttp's when installed, else httpx's.
    """
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=keepalive_expiry,
    )
    if transport is None:
        transport = _named_transport(transport_name, limits)
    return _UpstreamClient(
        transport=transport,
        limits=limits,
        timeout=httpx.Timeout(120.0, connect=5.0),
        follow_redirects=False,
        trust_env=False,
    )


_URL_CACHE_SIZE = 1024
_parsed_urls: dict[str, httpx.URL] = {}


def upstream_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: list[tuple[bytes, bytes]],
    content: bytes,
    timeout: httpx.Timeout,
) -> httpx.Request:
    """The request to send upstream: exactly ``headers`` (plus ``host`` and ``content-length``) and ``content``.

    A client built here gets a bare ``httpx.Request`` on a cached parsed URL: ``build_request``'s merging
    of default headers, cookies and base URL would do nothing for it but costs about 2.5x the CPU
    (benchmarks/inprocess.py). A client of the caller's own goes through its ``build_request`` so its
    defaults apply.
    """
    if type(client) is not _UpstreamClient:
        return client.build_request(method, url, headers=headers, content=content, timeout=timeout)
    parsed = _parsed_urls.get(url)
    if parsed is None:
        if len(_parsed_urls) >= _URL_CACHE_SIZE:
            _parsed_urls.clear()  # URLs vary by model at most: a bound, not an eviction policy
        parsed = _parsed_urls[url] = httpx.URL(url)
    return httpx.Request(method, parsed, headers=headers, content=content, extensions={"timeout": timeout.as_dict()})


def _named_transport(name: TransportName, limits: httpx.Limits) -> httpx.AsyncBaseTransport | None:
    if name == "httpx" or (name == "auto" and AiohttpTransport is None):
        return None
    if AiohttpTransport is None:
        raise ConfigurationError(
            "upstream_transport: 'aiohttp' needs the fast extra (pip install 'llm-obs-middleware[fast]')"
        )
    return AiohttpTransport(limits=limits, trust_env=False)


def transport_name(client: httpx.AsyncClient) -> str:
    """``aiohttp`` or ``httpx``: which transport a client built here sends through (for logs and tests)."""
    transport = client._transport  # httpx keeps no public accessor
    return "aiohttp" if AiohttpTransport is not None and isinstance(transport, AiohttpTransport) else "httpx"


def _origin(exc: Exception) -> BaseException:
    """The aiohttp error behind an httpx one re-raised by httpx-aiohttp, else ``exc`` itself."""
    cause = exc.__cause__
    if aiohttp is not None and isinstance(exc, httpx.TransportError) and isinstance(cause, aiohttp.ClientError):
        return cause
    return exc


def _timeout_phase(exc: Exception) -> str | None:
    """``connect`` or ``read`` when ``exc`` is a timeout, else None."""
    origin = _origin(exc)
    if isinstance(origin, httpx.TimeoutException):
        return "connect" if isinstance(origin, (httpx.ConnectTimeout, httpx.PoolTimeout)) else "read"
    if aiohttp is not None and isinstance(origin, aiohttp.ConnectionTimeoutError):
        return "connect"
    return "read" if isinstance(origin, TimeoutError) else None  # aiohttp's socket read timeout


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
    except _TRANSPORT_ERRORS as exc:
        phase = _timeout_phase(exc)
        if phase is not None:
            what = "connect" if phase == "connect" else "first byte"
            raise UpstreamTimeout(f"provider {provider!r} timed out ({what})", provider=provider) from exc
        raise UpstreamConnectError(
            f"provider {provider!r} could not be reached: {type(_origin(exc)).__name__}", provider=provider
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
    except _TRANSPORT_ERRORS as exc:
        if _timeout_phase(exc) is not None:
            raise UpstreamTimeout(
                f"provider {provider!r} stopped sending mid-response", provider=provider, status=response.status_code
            ) from exc
        raise UpstreamError(
            f"provider {provider!r} closed the connection mid-response",
            provider=provider,
            status=response.status_code,
        ) from exc
