"""The one upstream seam: the :class:`Upstream` protocol every request to a provider goes through.

A request is plain data (method, URL, header pairs, body bytes); the answer is an
:class:`UpstreamResponse` (status, headers as received, the body as an async byte iterator, ``aclose``).
Three implementations, picked once at start-up by :func:`build_upstream` / :func:`upstream_of`:

- ``aiohttp_upstream.AiohttpUpstream``: one ``aiohttp.ClientSession`` (the default with the ``fast``
  extra: about a third of httpx's CPU per request, docs/benchmarks.md);
- ``httpx_upstream.HttpxUpstream``: an httpx transport used directly (``upstream_transport: httpx``);
- ``httpx_upstream.ClientUpstream``: an ``httpx.AsyncClient`` of the caller's own (the ``client=`` option).

Every implementation sends the URL byte for byte (a SigV4 signature covers the path), keeps no cookie
(an upstream cookie set for one client must never reach the upstream for another), and raises only
our errors: :class:`UpstreamTimeout`, :class:`UpstreamConnectError`, :class:`UpstreamProtocolError`,
:class:`UpstreamPoolFull` (and :class:`UpstreamError` when the body stops mid-way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Literal, Protocol

import httpx

from llm_obs_middleware.errors import ConfigurationError, UpstreamProtocolError
from llm_obs_middleware.upstream.content_coding import DECODABLE, inflate

if TYPE_CHECKING:
    from llm_obs_middleware.config.settings import Config

__all__ = [
    "HOP_BY_HOP",
    "SERVER_SET",
    "Headers",
    "ResponseHeaders",
    "TransportName",
    "Upstream",
    "UpstreamResponse",
    "build_upstream",
    "opened",
    "signed",
    "upstream_of",
]

TransportName = Literal["auto", "aiohttp", "httpx"]
Headers = list[tuple[bytes, bytes]]

# Hop-by-hop headers (RFC 9110 section 7.6.1) never cross a proxy.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)
# The serving ASGI server writes its own: relaying the provider's too would send each of them twice.
SERVER_SET = frozenset({b"date", b"server"})
_DECODABLE_TEXT = frozenset(coding.decode() for coding in DECODABLE)


class ResponseHeaders(Mapping[str, str]):
    """A provider's response headers as received: ``raw`` pairs in order, and a case-insensitive mapping
    (repeated names joined with ``", "``, as httpx does)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Headers) -> None:
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
    """A provider's answer once its headers arrived: read the body with :meth:`chunks`, then :meth:`aclose`."""

    __slots__ = ("_arrived", "_body", "_close", "headers", "status_code")

    def __init__(
        self,
        status_code: int,
        headers: Headers,
        body: AsyncIterator[bytes],
        close: Callable[[], Awaitable[object]],
        arrived: Callable[[], bool] | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = ResponseHeaders(headers)
        self._body = body
        self._close = close
        self._arrived = arrived

    def body_arrived(self) -> bool:
        """Whether the whole body is here already, so reading it cannot wait (``False``: not known).

        A non-streamed answer on a fast link usually comes with its headers: its reading needs no timer.
        """
        return self._arrived is not None and self._arrived()

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, never re-chunked (read once). Raises :class:`UpstreamTimeout` when the
        provider stops sending, :class:`UpstreamError` when it closes the connection mid-body."""
        return self._body

    async def aclose(self) -> None:
        """Give the connection back (or drop it when the body was not read to its end)."""
        await self._close()


class Upstream(Protocol):
    """Sends one request to a provider and returns once the response headers arrived."""

    @property
    def name(self) -> str:
        """``aiohttp``, ``httpx`` or ``client`` (a client of the caller's own): for logs and tests."""
        ...

    @property
    def max_connections(self) -> int | None:
        """How many connections its pool holds at most (``None``: unknown, a client of the caller's own)."""
        ...

    async def send(
        self,
        method: str,
        url: str,
        headers: Headers,
        body: bytes,
        *,
        timeouts: httpx.Timeout,
        provider: str,
        deadline_s: float | None = None,
    ) -> UpstreamResponse:
        """Send ``body`` to ``url`` (already percent-encoded: sent byte for byte) with exactly ``headers``
        (plus ``host`` and ``content-length``). ``timeouts`` bound connecting and each read; ``deadline_s``
        (when given) bounds the whole wait for the headers.

        Raises :class:`UpstreamPoolFull` when no pooled connection came free in time (the gateway's
        capacity, not the provider's failure), else an :class:`UpstreamError` when the provider failed.
        """
        ...

    async def aclose(self) -> None:
        """Close the connections it owns (a client of the caller's own stays open: it is the caller's)."""
        ...


async def opened(
    status: int,
    headers: Headers,
    body: AsyncIterator[bytes],
    close: Callable[[], Awaitable[object]],
    *,
    coding: str | None,
    provider: str,
    arrived: Callable[[], bool] | None = None,
) -> UpstreamResponse:
    """The :class:`UpstreamResponse` of an answer whose headers arrived (``coding``: its
    ``content-encoding``): a status HTTP cannot carry is refused, a content coding we can undo is undone
    (the gateway asked for ``identity``: see ``content_coding``)."""
    if not 100 <= status <= 599:  # RFC 9110 section 15: no client or server could pass it on
        await close()
        raise UpstreamProtocolError(
            f"provider {provider!r} answered with status {status}, outside 100-599", provider=provider
        )
    if coding is not None and coding.strip().lower() in _DECODABLE_TEXT:
        headers = [(k, v) for k, v in headers if k.lower() not in (b"content-encoding", b"content-length")]
        body = inflate(body, provider=provider)
    return UpstreamResponse(status, headers, body, close, arrived)


def signed(
    method: str, url: str, headers: Headers, body: bytes, sign: Callable[[httpx.Request], None]
) -> tuple[str, str, Headers, bytes]:
    """``method, url, headers, body`` after ``sign`` (a provider adapter's ``sign``) rewrote them: the
    signature covers exactly what is then sent (``host`` and ``content-length`` included)."""
    request = httpx.Request(method, url, headers=headers, content=body)
    sign(request)
    return request.method, str(request.url), request.headers.raw, request.content


def build_upstream(
    *,
    transport_name: TransportName = "auto",
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 4096,
    max_keepalive_connections: int = 128,
    keepalive_expiry: float = 30.0,
) -> Upstream:
    """The gateway's own upstream: pooled, HTTP/1.1, no redirects, no env proxies, no cookies.

    ``transport`` (tests: ``httpx.MockTransport``) wins when given. Otherwise ``transport_name``:
    ``aiohttp`` (needs the ``fast`` extra), ``httpx``, or ``auto``: aiohttp when installed, else httpx.
    """
    from llm_obs_middleware.upstream.httpx_upstream import HttpxUpstream

    if transport is not None:
        return HttpxUpstream(transport, max_connections=max_connections)
    if transport_name != "httpx":
        try:
            from llm_obs_middleware.upstream.aiohttp_upstream import AiohttpUpstream
        except ImportError:  # the ``fast`` extra is not installed
            if transport_name == "aiohttp":
                raise ConfigurationError(
                    "upstream_transport: 'aiohttp' needs the fast extra (pip install 'llm-obs-middleware[fast]')"
                ) from None
        else:
            return AiohttpUpstream(max_connections=max_connections, keepalive_expiry=keepalive_expiry)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=keepalive_expiry,
    )
    return HttpxUpstream(httpx.AsyncHTTPTransport(limits=limits, trust_env=False), max_connections=max_connections)


def upstream_of(client: httpx.AsyncClient | Upstream | None, config: Config) -> Upstream:
    """The upstream for ``client`` (a caller's ``httpx.AsyncClient``, wrapped; an :class:`Upstream` as is),
    or the gateway's own built from ``config`` when ``client`` is ``None``."""
    if client is None:
        return build_upstream(transport_name=config.upstream_transport, max_connections=config.routing.max_connections)
    if isinstance(client, httpx.AsyncClient):
        from llm_obs_middleware.upstream.httpx_upstream import ClientUpstream

        return ClientUpstream(client)
    return client
