"""Routes LLM requests under the route prefix to the configured provider, streaming the answer back."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import httpx
import msgspec

from .._asgi import BodyTooLarge, ClientGone, error_json, read_body, route_path, send_json
from .._sse import SSEEventSplitter
from ..config import Config, ProviderConfig
from ..errors import UpstreamError, UpstreamTimeout
from ..providers.base import ProviderAdapter
from ..providers.registry import PROVIDER_NAMES, RequestMatch, adapter_for_kind, match_request, native_provider
from ..schema import Attempt
from ..state import Exchange, get_exchange
from ..types import ASGIApp, Receive, Scope, Send
from ..upstream import HOP_BY_HOP, build_client, iter_body, send_upstream
from ._request import load_request

__all__ = ["RouterMiddleware"]

# Client headers never forwarded: credentials meant for us, hop-by-hop, and ones we set ourselves.
_NOT_FORWARDED = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"authorization",
    b"api-key",
    b"x-api-key",
    b"cookie",
    b"accept-encoding",
    b"traceparent",
    b"tracestate",
}
_NOT_RETURNED = HOP_BY_HOP | {b"content-length"}
_encode = msgspec.json.Encoder().encode


class _Provider:
    """A configured provider with everything precomputed for the request path."""

    __slots__ = (
        "adapter",
        "base_url",
        "config",
        "gen_ai_name",
        "headers",
        "host",
        "key_id",
        "kind",
        "name",
        "port",
        "timeout",
        "total_timeout",
    )

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config
        self.kind = config.kind
        self.adapter: ProviderAdapter = adapter_for_kind(config.kind)
        self.gen_ai_name = PROVIDER_NAMES[config.kind]
        self.base_url = config.base_url.rstrip("/")
        url = urlsplit(self.base_url)
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.headers: list[tuple[bytes, bytes]] = [
            (key.lower().encode(), value.encode()) for key, value in config.headers.items()
        ]
        self.headers.append((b"accept-encoding", b"identity"))  # we observe the bytes we forward
        if config.api_keys:
            self.headers.extend(self.adapter.auth_headers(config.api_keys[0].get_secret_value()))
            self.key_id = f"{name}#0"  # a stable id, never the key itself
        else:
            self.key_id = ""
        timeout = config.timeout
        self.timeout = httpx.Timeout(
            connect=timeout.connect, read=timeout.read, write=timeout.read, pool=timeout.connect
        )
        self.total_timeout = timeout.total


class RouterMiddleware:
    """Forwards LLM requests under ``route_prefix`` to providers; everything else reaches ``app``.

    Maps the requested model to a provider and upstream model, replaces the client's credentials
    with the provider key, propagates ``traceparent`` (our LLM span as parent), streams the response
    back chunk by chunk, and passes upstream errors back faithfully (status, body, ``Retry-After``).
    Unknown model: 404; malformed JSON: 400; oversized body: 413; upstream unreachable: 502;
    upstream timeout: 504. For streamed chat it asks upstream for usage and hides that extra chunk
    unless the client asked for it.

    Args:
        app: the ASGI app for every other path.
        config: providers, models and ``route_prefix``.
        client: the shared upstream client (default: one built by :func:`upstream.build_client`).
    """

    def __init__(self, app: ASGIApp, *, config: Config, client: httpx.AsyncClient | None = None) -> None:
        self.app = app
        self.prefix = config.route_prefix
        self.max_request_bytes = config.max_request_bytes
        self.capture_content = config.capture_content
        self.client = client or build_client()
        self.providers = {name: _Provider(name, provider) for name, provider in config.providers.items()}
        self.provider_kinds = {name: provider.kind for name, provider in config.providers.items()}
        self.routes = {
            alias: (self.providers[route.provider], route.model or alias) for alias, route in config.models.items()
        }
        self.default = self.providers[config.default_provider] if config.default_provider else None
        self.known_models = ", ".join(sorted(self.routes)) or "none"
        self.models_body = _encode(
            {
                "object": "list",
                "data": [
                    {"id": alias, "object": "model", "owned_by": p.name}
                    for alias, (p, _) in sorted(self.routes.items())
                ],
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        prefix = self.prefix
        if prefix:
            if not (path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("/", "")):
                await self.app(scope, receive, send)
                return
            path = path[len(prefix) :] or "/"
        matched = match_request(scope["method"], path, self.provider_kinds)
        if matched is None:
            native = native_provider(path, self.provider_kinds)
            if native is not None:  # a provider endpoint we do not observe (e.g. token counting): proxy it
                await self._proxy(self.providers[native[0]], native[1], scope, receive, send)
            elif scope["method"] == "GET" and path in ("/v1/models", "/models"):
                await send_json(send, 200, self.models_body)
            elif prefix:
                message = f"no LLM endpoint at {scope['method']} {route_path(scope)}"
                await send_json(send, 404, error_json(message, "invalid_request_error", code="unknown_endpoint"))
            else:
                await self.app(scope, receive, send)
            return
        exchange = get_exchange(scope)
        if not exchange.is_llm:  # used without AccountingMiddleware
            exchange.is_llm = True
            exchange.api = matched.endpoint.api
            exchange.operation = matched.endpoint.operation
        await self._route(exchange, matched, scope, receive, send)

    async def _route(self, ex: Exchange, matched: RequestMatch, scope: Scope, receive: Receive, send: Send) -> None:
        adapter, endpoint = matched.adapter, matched.endpoint
        if ex.body is None:  # used without AccountingMiddleware
            loaded = await load_request(
                ex,
                adapter,
                endpoint,
                receive,
                send,
                max_bytes=self.max_request_bytes,
                capture_content=self.capture_content,
            )
            if not loaded:
                return
        body = ex.body
        assert body is not None
        request = ex.request
        if request is None:
            ex.fail("rejected", "invalid_request")
            message = ex.request_error or "request body is not valid JSON"
            await send_json(send, 400, error_json(message, "invalid_request_error", code="invalid_json"))
            return
        model = adapter.path_model(endpoint, matched.path) or request.model
        if not model:
            ex.fail("rejected", "invalid_request")
            await send_json(send, 400, error_json("'model' is required", "invalid_request_error", param="model"))
            return
        ex.requested_model = model
        if matched.provider is not None:
            # Native route: the client named the provider; an alias of that provider still applies.
            provider = self.providers[matched.provider]
            alias = self.routes.get(model)
            if alias is not None and alias[0] is provider:
                upstream_model, ex.rule = alias[1], model
            else:
                upstream_model, ex.rule = model, "native"
            path = adapter.upstream_path(endpoint, matched.path, upstream_model)
        else:
            route = self.routes.get(model)
            if route is None:
                if self.default is None:
                    ex.fail("rejected", "model_not_found")
                    message = f"model {model!r} is not configured; configured models: {self.known_models}"
                    await send_json(
                        send, 404, error_json(message, "invalid_request_error", code="model_not_found", param="model")
                    )
                    return
                route = (self.default, model)
                ex.rule = "default_provider"
            else:
                ex.rule = model
            provider, upstream_model = route
            if not provider.adapter.openai_compatible:
                ex.fail("rejected", "unsupported_translation")
                message = (
                    f"model {model!r} is served by provider {provider.name!r} ({provider.kind}), which does not "
                    f"speak the OpenAI API; call it natively under /{provider.name}/"
                )
                await send_json(send, 501, error_json(message, "invalid_request_error", code="unsupported_translation"))
                return
            path = endpoint.upstream_path
        ex.provider = provider.gen_ai_name
        ex.provider_kind = provider.kind
        ex.route = provider.name
        ex.served_model = upstream_model
        ex.server_address = provider.host
        ex.server_port = provider.port
        prepared = provider.adapter.prepare_body(endpoint, request, body, upstream_model)

        headers = [(k, v) for k, v in scope["headers"] if k not in _NOT_FORWARDED]
        headers.extend(provider.headers)
        headers.append((b"traceparent", f"00-{ex.trace_id}-{ex.span_id}-{ex.trace_flags}".encode()))
        if ex.tracestate:
            headers.append((b"tracestate", ex.tracestate.encode()))
        url = provider.base_url + path
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        upstream_request = self.client.build_request(
            scope["method"], url, headers=headers, content=prepared.body, timeout=provider.timeout
        )
        provider.adapter.sign(upstream_request, provider.config)
        started = time.perf_counter()
        try:
            response = await send_upstream(self.client, upstream_request, provider=provider.name)
        except UpstreamError as exc:
            timed_out = isinstance(exc, UpstreamTimeout)
            error_type = "upstream_timeout" if timed_out else "upstream_unreachable"
            ex.attempts.append(
                Attempt(
                    provider=provider.name,
                    model=upstream_model,
                    key_id=provider.key_id or None,
                    error_type=error_type,
                    latency_s=time.perf_counter() - started,
                )
            )
            ex.fail("upstream_error", error_type, str(exc))
            await send_json(send, 504 if timed_out else 502, error_json(str(exc), error_type, code=error_type))
            return
        ex.attempts.append(
            Attempt(
                provider=provider.name,
                model=upstream_model,
                key_id=provider.key_id or None,
                status=response.status_code,
                latency_s=time.perf_counter() - started,
            )
        )
        try:
            await self._relay(ex, provider, response, prepared.hide_usage_chunk, receive, send)
        finally:
            await response.aclose()

    async def _relay(
        self,
        ex: Exchange,
        provider: _Provider,
        response: httpx.Response,
        hide_usage: bool,
        receive: Receive,
        send: Send,
    ) -> None:
        status = response.status_code
        if status >= 400:
            ex.outcome = "upstream_error"
        streamed = response.headers.get("content-type", "").startswith("text/event-stream")
        skip = _NOT_RETURNED if streamed else HOP_BY_HOP
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in skip]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if not streamed:
            async for chunk in iter_body(response, provider=provider.name):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await self._relay_stream(ex, provider, response, hide_usage and status < 400, receive, send)

    async def _relay_stream(
        self,
        ex: Exchange,
        provider: _Provider,
        response: httpx.Response,
        hide_usage: bool,
        receive: Receive,
        send: Send,
    ) -> None:
        # uvicorn drops sends after a disconnect silently, so watch receive() and cancel ourselves.
        task = asyncio.current_task()
        assert task is not None
        state = {"gone": False, "done": False}

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                continue
            if not state["done"]:
                state["gone"] = True
                task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch_disconnect())
        deadline = time.perf_counter() + provider.total_timeout
        splitter = _UsageChunkFilter(ex) if hide_usage else None
        try:
            try:
                async for chunk in iter_body(response, provider=provider.name):
                    if splitter is not None:
                        chunk = splitter.feed(chunk)
                        if not chunk:
                            continue
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if time.perf_counter() > deadline:
                        raise UpstreamTimeout(
                            f"provider {provider.name!r} exceeded the total timeout of {provider.total_timeout:g}s",
                            provider=provider.name,
                        )
                tail = splitter.close() if splitter is not None else b""
                state["done"] = True
                await send({"type": "http.response.body", "body": tail, "more_body": False})
            except UpstreamError as exc:
                error_type = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_disconnected"
                ex.fail("upstream_error", error_type, str(exc))
                # The status is gone already: tell the client in-band, the way OpenAI reports stream errors.
                event = b"data: " + error_json(str(exc), error_type, code=error_type) + b"\n\n"
                state["done"] = True
                await send({"type": "http.response.body", "body": event, "more_body": False})
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            task.uncancel()
            ex.fail("client_disconnected", "client_disconnected")
        finally:
            state["done"] = True
            watcher.cancel()

    async def _proxy(self, provider: _Provider, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward a provider endpoint we do not observe, credentials replaced, nothing recorded."""
        exchange = get_exchange(scope)
        try:
            body = await read_body(receive, self.max_request_bytes)
        except BodyTooLarge:
            message = f"request body exceeds the limit of {self.max_request_bytes} bytes"
            await send_json(send, 413, error_json(message, "invalid_request_error", code="request_too_large"))
            return
        except ClientGone:
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in _NOT_FORWARDED]
        headers.extend(provider.headers)
        url = provider.base_url + path
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        upstream_request = self.client.build_request(
            scope["method"], url, headers=headers, content=body, timeout=provider.timeout
        )
        provider.adapter.sign(upstream_request, provider.config)
        try:
            response = await send_upstream(self.client, upstream_request, provider=provider.name)
        except UpstreamError as exc:
            error_type = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_unreachable"
            await send_json(send, 504 if error_type == "upstream_timeout" else 502, error_json(str(exc), error_type))
            return
        try:
            await self._relay(exchange, provider, response, False, receive, send)
        finally:
            await response.aclose()


class _UsageChunkFilter:
    """Drops the usage-only chunk we asked for (the client did not), after letting accounting see it."""

    __slots__ = ("_exchange", "_splitter")

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        # Forward whole events only, so the usage event can be cut out whatever the chunking.
        self._splitter = SSEEventSplitter()

    def feed(self, chunk: bytes) -> bytes:
        events = self._splitter.feed(chunk)
        kept = []
        for event in events:
            if b'"choices":[]' in event and b'"usage"' in event:
                observer = self._exchange.observer
                if observer is not None:
                    observer.feed(event, time.perf_counter_ns())
            else:
                kept.append(event)
        return kept[0] if len(kept) == 1 else b"".join(kept)

    def close(self) -> bytes:
        return self._splitter.close()
