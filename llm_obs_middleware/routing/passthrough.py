"""Provider endpoints we do not observe (token counting, model lists...): forwarded with our credentials
when the provider's passthrough list allows them, and recorded."""

from __future__ import annotations

import time

from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
from llm_obs_middleware.asgi.messages import BodyTooLarge, ClientGone, error_json, read_body, route_path, send_json
from llm_obs_middleware.asgi.state import Exchange, get_exchange
from llm_obs_middleware.errors import UpstreamError, UpstreamPoolFull, UpstreamTimeout
from llm_obs_middleware.records.schema import Attempt
from llm_obs_middleware.routing.balancing import KeyState
from llm_obs_middleware.routing.capacity import send_overloaded
from llm_obs_middleware.routing.forwarding import NOT_FORWARDED, Outbound
from llm_obs_middleware.routing.relay import relay
from llm_obs_middleware.routing.targets import ProviderTarget
from llm_obs_middleware.upstream.client import Headers, Upstream, signed

__all__ = ["NOT_FORWARDED", "proxy", "refuse_path"]


async def proxy(
    outbound: Outbound,
    provider: ProviderTarget,
    path: str,
    scope: Scope,
    receive: Receive,
    send: Send,
    max_request_bytes: int,
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
    key = provider.pool.pick(time.monotonic(), outbound.rng) or provider.pool.keys[0]
    headers = outbound.forward(scope["headers"])
    headers.extend(provider.headers)
    headers.extend(key.headers)
    if provider.signs:
        method, url, headers, body = signed(
            method, url, headers, body, lambda request: provider.adapter.sign(request, provider.config)
        )
    slots = outbound.slots
    if not slots.take() and not await slots.acquire():
        await send_overloaded(exchange, send, slots.size)
        return
    try:
        await _forward(outbound.upstream, (method, url, headers, body), provider, key, exchange, receive, send)
    except UpstreamPoolFull:
        await send_overloaded(exchange, send, slots.size)
    finally:
        slots.release()


async def _forward(
    upstream: Upstream,
    request: tuple[str, str, Headers, bytes],
    provider: ProviderTarget,
    key: KeyState,
    exchange: Exchange,
    receive: Receive,
    send: Send,
) -> None:
    started = time.perf_counter()
    try:
        response = await upstream.send(*request, timeouts=provider.timeout, provider=provider.name)
    except UpstreamError as exc:
        error_type = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_unreachable"
        exchange.attempts.append(_attempt(exchange, provider, key, started, None, error_type))
        exchange.fail("upstream_error", error_type, str(exc))
        await send_json(send, 504 if error_type == "upstream_timeout" else 502, error_json(str(exc), error_type))
        return
    exchange.attempts.append(_attempt(exchange, provider, key, started, response.status_code, None))
    try:
        await relay(
            exchange,
            response,
            adapter=provider.adapter,
            provider=provider.name,
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
