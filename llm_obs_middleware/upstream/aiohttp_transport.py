"""aiohttp behind the httpx API (``httpx-aiohttp``), sending the URL byte for byte.

httpx-aiohttp hands aiohttp the URL as a string, which yarl then re-quotes: ``%3A`` in a path becomes
``:``. A request signed before sending (AWS SigV4 over ``/model/anthropic.claude-...-v1%3A0/converse``)
then reaches the provider under another path and its signature fails. This transport passes the URL
as already encoded; everything else (timeouts, error mapping, the response stream) is httpx-aiohttp's.
"""

from __future__ import annotations

import httpx
import yarl
from aiohttp import ClientSession, ClientTimeout
from httpx_aiohttp.transport import AiohttpResponseStream, AiohttpTransport, map_aiohttp_exceptions

__all__ = ["ExactURLAiohttpTransport", "aiohttp_timeout", "aiohttp_timeout_of", "direct_url", "exact_url"]


class ExactURLAiohttpTransport(AiohttpTransport):
    """:class:`AiohttpTransport` that sends ``request.url`` exactly as httpx encoded it."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        with map_aiohttp_exceptions():
            data: bytes | httpx.AsyncByteStream | None
            try:
                data = request.content or None
            except httpx.RequestNotRead:
                data = request.stream  # type: ignore[assignment]
                request.headers.pop("transfer-encoding", None)  # aiohttp frames the body itself
            response = await self.client.request(
                method=request.method,
                url=exact_url(request.url),
                headers=request.headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=aiohttp_timeout(timeout),
                server_hostname=request.extensions.get("sni_hostname"),
            ).__aenter__()
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=AiohttpResponseStream(response),
            request=request,
            extensions=extensions,
        )


_URL_CACHE_SIZE = 1024
_exact_urls: dict[str, yarl.URL] = {}
_direct_urls: dict[str, yarl.URL] = {}  # by the URL text as built, which httpx may encode differently
_TIMEOUT_CACHE_SIZE = 256
_timeouts: dict[tuple[float | None, ...], ClientTimeout] = {}


def exact_url(url: httpx.URL) -> yarl.URL:
    """``url`` for aiohttp exactly as httpx encoded it (cached: URLs vary by provider and model at most)."""
    text = str(url)
    parsed = _exact_urls.get(text)
    if parsed is None:
        if len(_exact_urls) >= _URL_CACHE_SIZE:
            _exact_urls.clear()  # a bound, not an eviction policy
        parsed = _exact_urls[text] = yarl.URL(text, encoded=True)
    return parsed


def direct_url(url: str) -> yarl.URL:
    """``url`` for aiohttp as httpx would encode and send it (cached, as :func:`exact_url`)."""
    parsed = _direct_urls.get(url)
    if parsed is None:
        if len(_direct_urls) >= _URL_CACHE_SIZE:
            _direct_urls.clear()
        parsed = _direct_urls[url] = exact_url(httpx.URL(url))
    return parsed


def aiohttp_timeout(timeout: dict[str, float | None] | None) -> ClientTimeout:
    """httpx's timeout extension as aiohttp's: connect and read per socket, pool as the connect phase."""
    timeout = timeout or {}
    return _cached_timeout((timeout.get("connect"), timeout.get("read"), timeout.get("pool")))


def aiohttp_timeout_of(timeout: httpx.Timeout) -> ClientTimeout:
    """:func:`aiohttp_timeout` of an ``httpx.Timeout``."""
    return _cached_timeout((timeout.connect, timeout.read, timeout.pool))


def _cached_timeout(key: tuple[float | None, float | None, float | None]) -> ClientTimeout:
    found = _timeouts.get(key)
    if found is None:
        if len(_timeouts) >= _TIMEOUT_CACHE_SIZE:
            _timeouts.clear()
        found = _timeouts[key] = ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
    return found
