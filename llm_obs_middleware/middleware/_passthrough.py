"""Provider endpoints we do not observe (token counting, model lists...): forwarded with our credentials
when the provider's passthrough list allows them, and recorded."""

from __future__ import annotations

import random
import time

import httpx

from .._asgi import BodyTooLarge, ClientGone, error_json, read_body, route_path, send_json
from ..balancing import KeyState
from ..errors import UpstreamError, UpstreamPoolFull, UpstreamTimeout
from ..schema import Attempt
from ..state import Exchange, get_exchange
from ..types import Receive, Scope, Send
from ..upstream import send_upstream
from ._capacity import UpstreamSlots, send_overloaded
from ._forwarding import NOT_FORWARDED, HeaderFilter
from ._relay import relay
from ._targets import ProviderTarget

__all__ = ["NOT_FORWARDED", "proxy", "refuse_path"]


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
    """Forward an endpoint of the provider's API we do not observe (``path``: decoded, after
    ``/{provider}``), credentials replaced. Only what ``provider.passthrough`` allows goes upstream
    (404/405 otherwise), and every call is recorded: operation ``http``, method, path, status, latency."""
    exchange = get_exchange(scope)
    method: str = scope["method"]
    upstream_path = provider.adapter.passthrough_path(path)
    url = provider.url(upstream_path, scope.get("query_string", b"").decode("latin-1"))
    if url is None:
        _record_as_http(exchange, provider)
        await refuse_path(exchange, send)
        return
    allowed = provider.passthrough.allowed_methods(upstream_path)
    if method not in allowed:
        await _not_forwarded(send, method, route_path(scope), allowed)
        return
    _record_as_http(exchange, provider)
    try:
        body = await read_body(receive, max_request_bytes)
    except BodyTooLarge:
        message = f"request body exceeds the limit of {max_request_bytes} bytes"
        exchange.fail("rejected", "request_too_large")
        await send_json(send, 413, error_json(message, "invalid_request_error", code="request_too_large"))
        return
    except ClientGone:
        return
    key = provider.pool.pick(time.monotonic(), rng) or provider.pool.keys[0]
    headers = forward(scope["headers"])
    headers.extend(provider.headers)
    headers.extend(key.headers)
    request = client.build_request(method, url, headers=headers, content=body, timeout=provider.timeout)
    provider.adapter.sign(request, provider.config)
    if not slots.take() and not await slots.acquire():
        await send_overloaded(exchange, send, slots.size)
        return
    try:
        await _forward(client, request, provider, key, exchange, receive, send)
    except UpstreamPoolFull:
        await send_overloaded(exchange, send, slots.size)
    finally:
        slots.release()


async def _forward(
    client: httpx.AsyncClient,
    request: httpx.Request,
    provider: ProviderTarget,
    key: KeyState,
    exchange: Exchange,
    receive: Receive,
    send: Send,
) -> None:
    started = time.perf_counter()
    try:
        response = await send_upstream(client, request, provider=provider.name)
    except UpstreamError as exc:
        error_type = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_unreachable"
        exchange.attempts.append(_attempt(exchange, provider, key, started, None, error_type))
        exchange.fail("upstream_error", error_type, str(exc))
        await send_json(send, 504 if error_type == "upstream_timeout" else 502, error_json(str(exc), error_type))
        return
    exchange.attempts.append(_attempt(exchange, provider, key, started, response.status_code, None))
    try:
        content_type = response.headers.get("content-type", "").encode("latin-1")
        await relay(
            exchange,
            response,
            adapter=provider.adapter,
            provider=provider.name,
            streamed=provider.adapter.is_stream(content_type),
            hide_usage=False,
            deadline=started + provider.total_timeout,
            receive=receive,
            send=send,
        )
    finally:
        await response.aclose()


async def refuse_path(exchange: Exchange, send: Send) -> None:
    """Answer 400 to a request whose upstream path would leave the provider's base path (recorded)."""
    exchange.fail("rejected", "invalid_path", _OUTSIDE_BASE)
    await send_json(send, 400, error_json(_OUTSIDE_BASE, "invalid_request_error", code="invalid_path"))


_OUTSIDE_BASE = "the request path leaves the provider's base path (dot segments, however encoded, are refused)"


def _record_as_http(exchange: Exchange, provider: ProviderTarget) -> None:
    # Not an LLM exchange, but a call made with the provider's credentials: recorded all the same.
    exchange.is_llm = True
    exchange.api = exchange.operation = "http"
    exchange.provider = provider.gen_ai_name
    exchange.provider_kind = provider.kind
    exchange.route = provider.name
    exchange.rule = "passthrough"
    exchange.server_address = provider.host
    exchange.server_port = provider.port


def _attempt(
    exchange: Exchange, provider: ProviderTarget, key: KeyState, started: float, status: int | None, error: str | None
) -> Attempt:
    return Attempt(
        provider=provider.name,
        key_id=key.name,
        status=status,
        error_type=error,
        latency_s=time.perf_counter() - started,
        start_offset_s=max(0.0, started - exchange.start_ns * 1e-9),
    )


async def _not_forwarded(send: Send, method: str, path: str, allowed: frozenset[str]) -> None:
    """404 (or 405 naming the allowed methods) for what the provider's passthrough list leaves out."""
    if not allowed:
        message = f"no endpoint at {method} {path} (not in this provider's passthrough_endpoints)"
        await send_json(send, 404, error_json(message, "invalid_request_error", code="unknown_endpoint"))
        return
    methods = ", ".join(sorted(allowed))
    message = f"method {method} is not forwarded at {path}; allowed: {methods}"
    body = error_json(message, "invalid_request_error", code="method_not_allowed")
    await send_json(send, 405, body, [(b"allow", methods.encode())])
