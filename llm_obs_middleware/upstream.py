"""The one place that builds the upstream HTTP client and turns httpx errors into ours.

Everything else builds upstream requests with the httpx API, so users can pass their own client or
transport (tests use ``httpx.MockTransport``), and reads answers as an :class:`UpstreamResponse`. Behind
that API the default transport is aiohttp's (the ``fast`` extra) when installed: the benchmark measures it
at a third of httpx's own CPU per request under concurrency (docs/benchmarks.md). A client built here with
that transport hands the request to its aiohttp session directly, skipping httpx's send machinery and
response objects (about a third of the client's CPU per request). Errors of either transport become ours here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Literal

import httpx

from ._content_coding import DECODABLE, inflate
from .errors import (
    ConfigurationError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamPoolFull,
    UpstreamProtocolError,
    UpstreamTimeout,
)

try:
    import aiohttp

    from ._aiohttp_transport import (
        ExactURLAiohttpTransport as AiohttpTransport,
        aiohttp_timeout,
        aiohttp_timeout_of,
        direct_url,
        exact_url,
    )
except ImportError:  # the ``fast`` extra is not installed: httpx's own transport
    aiohttp = None  # type: ignore[assignment]
    AiohttpTransport = None  # type: ignore[assignment,misc]

__all__ = [
    "DirectRequest",
    "ResponseHeaders",
    "TransportName",
    "UpstreamResponse",
    "build_client",
    "iter_body",
    "pool_size",
    "send_upstream",
    "upstream_request",
]

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
# The serving ASGI server writes its own: relaying the provider's too would send each of them twice.
SERVER_SET = frozenset({b"date", b"server"})


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
    direct: Any = None
    """The aiohttp transport when requests go to its session directly (see :func:`send_upstream`)."""
    max_connections: int | None = None
    """The size of its connection pool (see :func:`pool_size`)."""

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
    max_connections: int = 4096,
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
    direct = transport is None
    if transport is None:
        transport = _named_transport(transport_name, limits)
    client = _UpstreamClient(
        transport=transport,
        limits=limits,
        timeout=httpx.Timeout(120.0, connect=5.0),
        follow_redirects=False,
        trust_env=False,
    )
    if direct and AiohttpTransport is not None and isinstance(transport, AiohttpTransport):
        client.direct = transport
    client.max_connections = max_connections
    return client


def pool_size(client: httpx.AsyncClient) -> int | None:
    """How many connections a client built here may hold at once (``None``: a client of the caller's own)."""
    return client.max_connections if type(client) is _UpstreamClient else None


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


class DirectRequest:
    """An upstream request for the gateway's own aiohttp session, without an ``httpx.Request``: building
    one (header normalization, a byte stream, ``host``/``content-length``) cost about 30 µs per request,
    only for :func:`send_upstream` to take it apart again. aiohttp adds ``host`` and ``content-length``."""

    __slots__ = ("content", "headers", "method", "timeout", "url")

    def __init__(
        self, method: str, url: str, headers: list[tuple[bytes, bytes]], content: bytes, timeout: httpx.Timeout
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.content = content
        self.timeout = timeout


def direct_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: list[tuple[bytes, bytes]],
    content: bytes,
    timeout: httpx.Timeout,
) -> DirectRequest | None:
    """A :class:`DirectRequest` when ``client`` sends through its aiohttp session directly, else ``None``
    (then build the request with :func:`upstream_request`)."""
    if type(client) is not _UpstreamClient or client.direct is None:
        return None
    return DirectRequest(method, url, headers, content, timeout)


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


class ResponseHeaders(Mapping[str, str]):
    """A provider's response headers as received: ``raw`` pairs in order, and a case-insensitive mapping
    (repeated names joined with ``", "``, as httpx does)."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def __getitem__(self, name: str) -> str:
        wanted = name.lower().encode("latin-1")
        found = None
        for key, value in self.raw:
            if key.lower() == wanted:
                found = value if found is None else found + b", " + value
        if found is None:
            raise KeyError(name)
        return found.decode("latin-1")

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(key.decode("latin-1").lower() for key, _ in self.raw))

    def __len__(self) -> int:
        return len({key.lower() for key, _ in self.raw})


class UpstreamResponse:
    """A provider's answer once its headers arrived: read the body with :func:`iter_body`, then :meth:`aclose`."""

    __slots__ = ("_arrived", "_chunks", "_close", "encoded", "headers", "status_code")

    def __init__(
        self,
        status_code: int,
        headers: list[tuple[bytes, bytes]],
        chunks: Callable[[], AsyncIterator[bytes]],
        close: Callable[[], Awaitable[object]],
        arrived: Callable[[], bool] | None = None,
        encoded: bool = True,
    ) -> None:
        self.status_code = status_code
        self.headers = ResponseHeaders(headers)
        self._chunks = chunks
        self._close = close
        self._arrived = arrived
        self.encoded = encoded
        """Whether the headers may name a content coding (``False``: the transport saw no ``content-encoding``)."""

    def body_arrived(self) -> bool:
        """Whether the whole body is here already, so reading it cannot wait (``False``: not known)."""
        return self._arrived is not None and self._arrived()

    async def aclose(self) -> None:
        """Give the connection back (or drop it when the body was not read to its end)."""
        await self._close()


def _from_httpx(response: httpx.Response) -> UpstreamResponse:
    def chunks() -> AsyncIterator[bytes]:
        if response.is_stream_consumed:  # built with its content in hand (e.g. by an httpx.MockTransport handler)
            return _once(response.content)
        return response.aiter_raw()

    headers = response.headers.raw
    if response.is_stream_consumed:  # httpx decoded that content already
        headers = [(k, v) for k, v in headers if k.lower() != b"content-encoding"]
    return UpstreamResponse(response.status_code, headers, chunks, response.aclose)


async def _once(content: bytes) -> AsyncIterator[bytes]:
    if content:
        yield content


async def _send_direct(transport: Any, request: httpx.Request | DirectRequest) -> UpstreamResponse:
    """``request`` through the aiohttp session of our own transport, exactly as that transport would
    send it, without httpx's client and response layers."""
    session = transport.client
    if not isinstance(session, aiohttp.ClientSession):
        session = transport.client = transport.get_client()
    if isinstance(request, DirectRequest):
        url = direct_url(request.url)
        raw_headers = request.headers
        timeout = aiohttp_timeout_of(request.timeout)
    else:
        url = exact_url(request.url)
        raw_headers = request.headers.raw
        timeout = aiohttp_timeout(request.extensions.get("timeout"))
    response = await session.request(
        request.method,
        url,
        # aiohttp writes header text as UTF-8: decoding the bytes as UTF-8 sends them unchanged, as
        # signed (latin-1 turned a UTF-8 value into other bytes and broke Bedrock's SigV4 signature).
        headers=[(key.decode("latin-1"), value.decode("utf-8")) for key, value in raw_headers],
        data=request.content or None,
        allow_redirects=False,
        auto_decompress=False,
        compress=False,
        timeout=timeout,
    ).__aenter__()
    return UpstreamResponse(
        response.status,
        list(response.raw_headers),
        response.content.iter_any,
        lambda: response.__aexit__(None, None, None),
        response.content.is_eof,  # the payload parser saw the body's end: the rest is in the buffer
        "Content-Encoding" in response.headers,  # aiohttp's parsed headers: no scan of ours needed
    )


async def _send(client: httpx.AsyncClient, request: httpx.Request | DirectRequest) -> UpstreamResponse:
    direct = client.direct if type(client) is _UpstreamClient else None
    if direct is not None:
        return await _send_direct(direct, request)
    assert not isinstance(request, DirectRequest), "a DirectRequest needs the client it was made for"
    return _from_httpx(await client.send(request, stream=True))


async def send_upstream(
    client: httpx.AsyncClient,
    request: httpx.Request | DirectRequest,
    *,
    provider: str,
    deadline_s: float | None = None,
) -> UpstreamResponse:
    """Send and return once the response headers arrived; the body is read with :func:`iter_body`.

    Raises :class:`UpstreamPoolFull` when the client's connection pool had no free connection in time
    (a client of the caller's own with smaller limits), an :class:`UpstreamError` when the provider failed.

    ``deadline_s`` bounds the wait for the headers whatever the transport (httpx's own timeouts are
    enforced by the transport, and a custom or mock one may not).
    """
    try:
        if deadline_s is None:
            response = await _send(client, request)
        else:
            async with asyncio.timeout(deadline_s):
                response = await _send(client, request)
    except _TRANSPORT_ERRORS as exc:  # before TimeoutError: aiohttp's own timeouts are both
        if isinstance(_origin(exc), httpx.PoolTimeout):  # waiting for our own pool is not the provider's fault
            raise UpstreamPoolFull(f"no free connection to provider {provider!r} in time", provider=provider) from exc
        phase = _timeout_phase(exc)
        if phase is not None:
            what = "connect" if phase == "connect" else "first byte"
            raise UpstreamTimeout(f"provider {provider!r} timed out ({what})", provider=provider) from exc
        raise UpstreamConnectError(
            f"provider {provider!r} could not be reached: {type(_origin(exc)).__name__}", provider=provider
        ) from exc
    except TimeoutError as exc:
        raise UpstreamTimeout(f"provider {provider!r} timed out (request deadline)", provider=provider) from exc
    if not 100 <= response.status_code <= 599:  # RFC 9110 section 15: no client or server could pass it on
        await response.aclose()
        raise UpstreamProtocolError(
            f"provider {provider!r} answered with status {response.status_code}, outside 100-599", provider=provider
        )
    for name, value in response.headers.raw if response.encoded else ():
        if name.lower() == b"content-encoding":
            if value.strip().lower() in DECODABLE:
                _decode_content(response, provider)
            break
    return response


def _decode_content(response: UpstreamResponse, provider: str) -> None:
    """Make ``response`` the identity answer the gateway asked for (see ``_content_coding``)."""
    raw = [(k, v) for k, v in response.headers.raw if k.lower() not in (b"content-encoding", b"content-length")]
    chunks = response._chunks
    response.headers = ResponseHeaders(raw)
    response._chunks = lambda: inflate(chunks(), provider=provider)


async def iter_body(response: UpstreamResponse, *, provider: str) -> AsyncIterator[bytes]:
    """The raw body bytes as they arrive (never decoded or re-chunked)."""
    try:
        async for chunk in response._chunks():
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
