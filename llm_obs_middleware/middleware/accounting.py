"""Recognises LLM exchanges, decodes the request and observes the response as it streams through."""

from __future__ import annotations

import logging
import time

from llm_obs_middleware.asgi.aliases import ASGIApp, Message, Receive, Scope, Send
from llm_obs_middleware.asgi.messages import replay_receive
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.config.settings import Config
from llm_obs_middleware.providers.base import Endpoint, ProviderAdapter
from llm_obs_middleware.providers.registry import RequestMatch, llm_path, recognise
from llm_obs_middleware.providers.request_body import open_request

__all__ = ["AccountingMiddleware"]

logger = logging.getLogger("llm_obs_middleware.accounting")


class AccountingMiddleware:
    """Learns tokens, finish reasons, tool calls, TTFT and inter-token latency of LLM exchanges.

    Recognises LLM endpoints by path (under ``route_prefix`` when set, or the app's own
    ``/v1/chat/completions`` and the like). Buffers only the request body (up to
    ``max_request_bytes``, 413 beyond) and replays it downstream; every response message is
    forwarded at once, unchanged, while a provider observer reads it. Parse errors never alter a
    response. Other paths pass through untouched.

    Args:
        app: the ASGI app to wrap.
        config: the stack config (``route_prefix``, ``max_request_bytes``, ``capture_content``).
    """

    def __init__(self, app: ASGIApp, *, config: Config | None = None) -> None:
        config = config or Config()
        self.app = app
        self.prefix = config.route_prefix
        self.max_request_bytes = config.max_request_bytes
        self.capture_content = config.capture_content
        self.provider_kinds = {name: provider.kind for name, provider in config.providers.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        matched = recognise(scope, llm_path(scope, self.prefix)[0], self.provider_kinds)
        if matched is None:
            await self.app(scope, receive, send)
            return
        exchange = await open_request(
            scope, matched, receive, send, max_bytes=self.max_request_bytes, capture_content=self.capture_content
        )
        if exchange is None:
            return
        body = exchange.body
        assert body is not None
        try:
            await self.app(scope, replay_receive(body, receive), _observing_send(exchange, matched, send))
        finally:
            if exchange.observer is not None and exchange.response is None:
                _finish_cut_short(exchange)


def _observing_send(exchange: Exchange, matched: RequestMatch, send: Send) -> Send:
    """``send``, with every response message fed to the provider's observer on its way (unchanged)."""
    adapter, endpoint = matched.adapter, matched.endpoint
    # False once the router said the answer is a translation: it feeds the native bytes itself.
    client_bytes = True

    async def observed_send(message: Message) -> None:
        nonlocal client_bytes
        try:
            if message["type"] == "http.response.start":
                client_bytes = _open_observer(exchange, adapter, endpoint, message)
            else:
                now = time.perf_counter_ns()
                if not exchange.first_byte_ns:
                    exchange.first_byte_ns = now
                observer = exchange.observer
                if observer is not None:
                    chunk = message.get("body", b"")
                    if chunk:
                        exchange.chunks += 1
                        if client_bytes:
                            observer.feed(chunk, now)
                    if not message.get("more_body", False):
                        exchange.response = observer.finish()
                        exchange.observer = None
        except Exception:  # telemetry fails open: the response goes on unchanged
            logger.exception("observing the response of %s failed", exchange.api)
            exchange.observer = None
        await send(message)

    return observed_send


def _open_observer(exchange: Exchange, adapter: ProviderAdapter, endpoint: Endpoint, start: Message) -> bool:
    """Set up the observer of the response ``start`` begins; ``True`` when it reads the bytes the client
    gets, ``False`` when the router feeds it the native ones (a translated answer, see
    ``Exchange.observe_native``)."""
    headers = start.get("headers", ())
    # Kept by reference for the adapter's observer and the record (error type, request id).
    exchange.response_headers = headers
    exchange.header_extras = adapter.response_header_extras
    streamed = False
    for name, value in headers:
        if name == b"content-type":
            streamed = adapter.is_stream(value)
            break
    exchange.streamed = streamed
    native = exchange.native_observer
    if native is None:
        exchange.observer = adapter.observer(endpoint, exchange, streamed=streamed, status=start["status"])
        return True
    exchange.response_headers = exchange.native_headers
    exchange.header_extras = exchange.native_header_extras
    exchange.observer = native(start["status"])
    return False


def _finish_cut_short(exchange: Exchange) -> None:
    """The app ended (or raised) before the response did: record what was seen until then."""
    observer = exchange.observer
    assert observer is not None
    exchange.observer = None
    try:
        exchange.response = observer.finish()
    except Exception:
        logger.exception("finishing the observer of %s failed", exchange.api)
