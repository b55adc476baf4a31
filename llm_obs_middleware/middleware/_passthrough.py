"""Provider endpoints we do not observe (token counting, model lists...): forwarded with our credentials."""

from __future__ import annotations

import random
import time

import httpx

from .._asgi import BodyTooLarge, ClientGone, error_json, read_body, send_json
from ..errors import UpstreamError, UpstreamPoolFull, UpstreamTimeout
from ..state import Exchange, get_exchange
from ..types import Receive, Scope, Send
from ..upstream import send_upstream
from ._capacity import UpstreamSlots, send_overloaded
from ._forwarding import NOT_FORWARDED, HeaderFilter
from ._relay import relay
from ._targets import ProviderTarget

__all__ = ["NOT_FORWARDED", "proxy"]


async def proxy(
    client: httpx.AsyncClient,
    provider: ProviderTarget,
    path: str,
    scope: Scope,
    receive: Receive,
    send: Send,
    max_request_bytes: int,
    rng: random.Random,
    *,
    forward: HeaderFilter,
    slots: UpstreamSlots,
) -> None:
    """Forward a provider endpoint we do not observe, credentials replaced, nothing recorded."""
    exchange = get_exchange(scope)
    try:
        body = await read_body(receive, max_request_bytes)
    except BodyTooLarge:
        message = f"request body exceeds the limit of {max_request_bytes} bytes"
        await send_json(send, 413, error_json(message, "invalid_request_error", code="request_too_large"))
        return
    except ClientGone:
        return
    key = provider.pool.pick(time.monotonic(), rng) or provider.pool.keys[0]
    headers = forward(scope["headers"])
    headers.extend(provider.headers)
    headers.extend(key.headers)
    url = provider.base_url + path
    if scope.get("query_string"):
        url += "?" + scope["query_string"].decode("latin-1")
    request = client.build_request(scope["method"], url, headers=headers, content=body, timeout=provider.timeout)
    provider.adapter.sign(request, provider.config)
    if not await slots.acquire():
        await send_overloaded(None, send, slots.size)
        return
    try:
        await _forward(client, request, provider, exchange, receive, send)
    except UpstreamPoolFull:
        await send_overloaded(None, send, slots.size)
    finally:
        slots.release()


async def _forward(
    client: httpx.AsyncClient,
    request: httpx.Request,
    provider: ProviderTarget,
    exchange: Exchange,
    receive: Receive,
    send: Send,
) -> None:
    try:
        response = await send_upstream(client, request, provider=provider.name)
    except UpstreamError as exc:
        error_type = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_unreachable"
        await send_json(send, 504 if error_type == "upstream_timeout" else 502, error_json(str(exc), error_type))
        return
    try:
        content_type = response.headers.get("content-type", "").encode("latin-1")
        await relay(
            exchange,
            response,
            provider=provider.name,
            streamed=provider.adapter.is_stream(content_type),
            hide_usage=False,
            deadline=time.perf_counter() + provider.total_timeout,
            receive=receive,
            send=send,
        )
    finally:
        await response.aclose()
