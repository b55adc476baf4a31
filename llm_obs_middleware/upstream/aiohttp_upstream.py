"""The default :class:`~llm_obs_middleware.upstream.client.Upstream`: one ``aiohttp.ClientSession``.

Sends the URL as already encoded (yarl would otherwise re-quote ``%3A`` in a path to ``:``, and a
request signed over ``/model/anthropic.claude-...-v1%3A0/converse`` would reach the provider under
another path), exactly the given headers (no ``User-Agent``, ``Accept`` or ``Accept-Encoding`` of its
own), keeps no cookie (``DummyCookieJar``: a cookie set for one client never reaches the upstream for
another) and turns aiohttp's errors into ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import httpx
import yarl

from llm_obs_middleware.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from llm_obs_middleware.upstream.client import Headers, UpstreamResponse, opened

__all__ = ["AiohttpUpstream"]

_CACHE_SIZE = 1024
_urls: dict[str, yarl.URL] = {}
_timeouts: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}
# aiohttp adds these when a request lacks them; the gateway sends what it was given, as httpx does.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding")


class AiohttpUpstream:
    """Requests over one pooled ``aiohttp.ClientSession`` (created on first use, in the running loop)."""

    name = "aiohttp"

    def __init__(self, *, max_connections: int = 4096, keepalive_expiry: float = 30.0) -> None:
        self.max_connections: int | None = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections or 0,
            keepalive_timeout=self._keepalive_expiry,
            ssl=httpx.create_ssl_context(trust_env=False),  # the CA bundle httpx trusts, as before
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_NO_AUTO_HEADERS,
            auto_decompress=False,
            trust_env=False,
        )
        return self._session

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
        session = self._session or self._open()
        request = session.request(
            method,
            _exact_url(url),
            # aiohttp writes header text as UTF-8: decoding the bytes as UTF-8 sends them unchanged, as
            # signed (latin-1 turned a UTF-8 value into other bytes and broke Bedrock's SigV4 signature).
            headers=[(key.decode("latin-1"), value.decode("utf-8")) for key, value in headers],
            data=body or None,
            allow_redirects=False,
            compress=False,
            timeout=_client_timeout(timeouts),
        )
        try:
            if deadline_s is None:
                response = await request.__aenter__()
            else:
                async with asyncio.timeout(deadline_s):
                    response = await request.__aenter__()
        except aiohttp.ClientError as exc:  # before TimeoutError: aiohttp's own timeouts are both
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise UpstreamTimeout(f"provider {provider!r} timed out (connect)", provider=provider) from exc
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout(f"provider {provider!r} timed out (first byte)", provider=provider) from exc
            raise UpstreamConnectError(
                f"provider {provider!r} could not be reached: {type(exc).__name__}", provider=provider
            ) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(f"provider {provider!r} timed out (request deadline)", provider=provider) from exc
        return await opened(
            response.status,
            list(response.raw_headers),
            _body(response, provider),
            lambda: response.__aexit__(None, None, None),
            coding=response.headers.get("Content-Encoding"),
            provider=provider,
            arrived=response.content.is_eof,  # the payload parser saw the body's end: the rest is buffered
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _body(response: aiohttp.ClientResponse, provider: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except aiohttp.ClientError as exc:
        if isinstance(exc, TimeoutError):  # aiohttp's socket read timeout
            raise UpstreamTimeout(
                f"provider {provider!r} stopped sending mid-response", provider=provider, status=response.status
            ) from exc
        raise UpstreamError(
            f"provider {provider!r} closed the connection mid-response", provider=provider, status=response.status
        ) from exc


def _exact_url(url: str) -> yarl.URL:
    """``url`` as httpx encodes it, for aiohttp to send unchanged (cached: URLs vary by model at most)."""
    parsed = _urls.get(url)
    if parsed is None:
        if len(_urls) >= _CACHE_SIZE:
            _urls.clear()  # a bound, not an eviction policy
        parsed = _urls[url] = yarl.URL(str(httpx.URL(url)), encoded=True)
    return parsed


def _client_timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
    """httpx's timeouts as aiohttp's: connect and read per socket, pool as the connect phase (cached)."""
    key = (timeout.connect, timeout.read, timeout.pool)
    found = _timeouts.get(key)
    if found is None:
        if len(_timeouts) >= _CACHE_SIZE:
            _timeouts.clear()
        found = _timeouts[key] = aiohttp.ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
    return found
