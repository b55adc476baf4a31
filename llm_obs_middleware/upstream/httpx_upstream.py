"""httpx behind the :class:`~llm_obs_middleware.upstream.client.Upstream` protocol, two ways.

:class:`HttpxUpstream` hands a bare ``httpx.Request`` to an httpx transport of the gateway's own
(``upstream_transport: httpx``; tests pass an ``httpx.MockTransport``): no client layer, so no default
headers, cookies, redirects or auth, and none of their CPU per request. :class:`ClientUpstream` sends
through an ``httpx.AsyncClient`` of the caller's own (the ``client=`` option) so its defaults, auth and
event hooks apply, with its cookie jar told to store nothing a provider sets.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
from collections.abc import AsyncIterator, Awaitable

import httpx

from llm_obs_middleware.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamPoolFull,
    UpstreamTimeout,
)
from llm_obs_middleware.upstream.client import Headers, UpstreamResponse, opened

__all__ = ["ClientUpstream", "HttpxUpstream"]

_CACHE_SIZE = 1024
_urls: dict[str, httpx.URL] = {}


class HttpxUpstream:
    """Requests through an httpx transport used directly (it owns the pool; :meth:`aclose` closes it)."""

    name = "httpx"

    def __init__(self, transport: httpx.AsyncBaseTransport, *, max_connections: int | None = None) -> None:
        self.transport = transport
        self.max_connections = max_connections

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
        parsed = _urls.get(url)
        if parsed is None:
            if len(_urls) >= _CACHE_SIZE:
                _urls.clear()  # URLs vary by model at most: a bound, not an eviction policy
            parsed = _urls[url] = httpx.URL(url)
        extensions = {"timeout": timeouts.as_dict()}
        request = httpx.Request(method, parsed, headers=headers, content=body, extensions=extensions)
        response = await _sent(self.transport.handle_async_request(request), provider, deadline_s)
        return await _opened(response, provider)

    async def aclose(self) -> None:
        await self.transport.aclose()


class _StoreNothing(http.cookiejar.DefaultCookiePolicy):
    """Cookies the caller put in the jar are still sent; none a provider sets is kept."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


class ClientUpstream:
    """Requests through an ``httpx.AsyncClient`` of the caller's own (who closes it).

    Its cookie jar gets a policy that stores no cookie from a response: a gateway serves many clients,
    and an upstream cookie set for one must never be sent upstream for another.
    """

    name = "client"
    max_connections: int | None = None  # httpx keeps a client's pool size private

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        client.cookies.jar.set_policy(_StoreNothing())

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
        request = self.client.build_request(method, url, headers=headers, content=body, timeout=timeouts)
        response = await _sent(self.client.send(request, stream=True), provider, deadline_s)
        return await _opened(response, provider)

    async def aclose(self) -> None:
        return None  # the caller's client: the caller closes it


async def _sent(sending: Awaitable[httpx.Response], provider: str, deadline_s: float | None) -> httpx.Response:
    """The response of ``sending``, httpx's errors turned into ours."""
    try:
        if deadline_s is None:
            return await sending
        async with asyncio.timeout(deadline_s):  # a custom or mock transport may enforce no timeout
            return await sending
    except httpx.PoolTimeout as exc:  # waiting for our own pool is not the provider's fault
        raise UpstreamPoolFull(f"no free connection to provider {provider!r} in time", provider=provider) from exc
    except httpx.TimeoutException as exc:
        what = "connect" if isinstance(exc, httpx.ConnectTimeout) else "first byte"
        raise UpstreamTimeout(f"provider {provider!r} timed out ({what})", provider=provider) from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectError(
            f"provider {provider!r} could not be reached: {type(exc).__name__}", provider=provider
        ) from exc
    except TimeoutError as exc:
        raise UpstreamTimeout(f"provider {provider!r} timed out (request deadline)", provider=provider) from exc


async def _opened(response: httpx.Response, provider: str) -> UpstreamResponse:
    if response.is_stream_consumed:  # built with its content in hand (an httpx.MockTransport handler's)
        headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-encoding"]  # decoded already
        return await opened(
            response.status_code, headers, _once(response.content), response.aclose, coding=None, provider=provider
        )
    return await opened(
        response.status_code,
        response.headers.raw,
        _body(response, provider),
        response.aclose,
        coding=response.headers.get("content-encoding"),
        provider=provider,
    )


async def _body(response: httpx.Response, provider: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(
            f"provider {provider!r} stopped sending mid-response", provider=provider, status=response.status_code
        ) from exc
    except httpx.TransportError as exc:
        raise UpstreamError(
            f"provider {provider!r} closed the connection mid-response", provider=provider, status=response.status_code
        ) from exc


async def _once(content: bytes) -> AsyncIterator[bytes]:
    if content:
        yield content
