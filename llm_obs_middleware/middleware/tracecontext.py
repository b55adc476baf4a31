"""W3C trace context, session, user and metadata extraction; echoes ids on LLM responses."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import unquote

from opentelemetry import trace

from llm_obs_middleware.asgi.aliases import ASGIApp, Message, Receive, Scope, Send
from llm_obs_middleware.asgi.state import Exchange, get_exchange
from llm_obs_middleware.config.settings import Config, TraceContextConfig
from llm_obs_middleware.providers.registry import llm_path, native_provider, recognise
from llm_obs_middleware.records.bounds import bounded

__all__ = ["TraceContextMiddleware", "parse_traceparent"]

# https://www.w3.org/TR/trace-context/#traceparent-header-field-values
_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_MAX_ID_LEN = 128


def parse_traceparent(value: bytes) -> tuple[str, str, str] | None:
    """``(trace_id, parent_id, flags)`` of a valid header, else ``None`` (invalid ones are ignored)."""
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest) or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id.decode(), parent_id.decode(), flags.decode()


def _clean_id(value: bytes) -> str | None:
    """A client-supplied id we can safely store and echo: short, printable ASCII."""
    if not value or len(value) > _MAX_ID_LEN or not value.isascii():
        return None
    text = value.decode()
    return text if text.isprintable() else None


def _baggage_session(value: bytes) -> str | None:
    for member in value.decode("latin-1").split(","):
        key, _, rest = member.partition("=")
        if key.strip() == "session.id":
            return _clean_id(unquote(rest.split(";", 1)[0].strip()).encode())
    return None


class TraceContextMiddleware:
    """Continues the caller's trace and names the request.

    Observes ``traceparent``/``tracestate``/``baggage`` (invalid values are ignored, never an error),
    the session id (``x-session-id`` or ``session.id`` baggage), the user header, ``x-request-id`` and the
    configured metadata headers. When an OpenTelemetry SERVER span is active (``OpenTelemetryMiddleware``
    outside this one) the LLM span becomes its child. Adds ``x-request-id`` and ``traceparent`` to LLM
    responses: those of a path the config's ``route_prefix`` and providers make an LLM endpoint (as
    accounting and the router recognise it) or a provider's own API under the router; other responses
    are not touched.

    Args:
        app: the ASGI app to wrap.
        config: the stack config (its ``trace_context`` block is used).
        trace_context: options, when used without a full ``Config``.
        server_spans: give each request a SERVER span id, so the exporter adds an HTTP SERVER span
            between the caller's span and the LLM span (the gateway does, when no such span is active).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: Config | None = None,
        trace_context: TraceContextConfig | None = None,
        server_spans: bool = False,
    ) -> None:
        self.app = app
        self.server_spans = server_spans
        options = trace_context or (config.trace_context if config else TraceContextConfig())
        self.echo = options.echo_headers
        self.session_header = options.session_header.lower().encode()
        self.user_header = options.user_header.lower().encode()
        self.metadata_headers = {name.lower().encode(): name.lower() for name in options.metadata_headers}
        self.prefix = config.route_prefix if config else ""
        self.provider_kinds = {name: provider.kind for name, provider in config.providers.items()} if config else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = get_exchange(scope)
        traceparent, tracestate = self._read_headers(exchange, scope["headers"])
        server_span = trace.get_current_span().get_span_context()
        if server_span.is_valid:
            exchange.trace_id = format(server_span.trace_id, "032x")
            exchange.parent_span_id = format(server_span.span_id, "016x")
            exchange.trace_flags = format(server_span.trace_flags, "02x")
        else:
            if traceparent is not None and (parsed := parse_traceparent(traceparent)) is not None:
                exchange.trace_id, exchange.parent_span_id, exchange.trace_flags = parsed
                if tracestate:
                    exchange.tracestate = tracestate.decode("latin-1")
            if self.server_spans:
                exchange.server_span_id = os.urandom(8).hex()
        if not self.echo:
            await self.app(scope, receive, send)
            return

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start" and self._serves_llm(scope):
                _add_ids(message, exchange)
            await send(message)

        await self.app(scope, receive, send_with_ids)

    def _read_headers(
        self, exchange: Exchange, headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[bytes | None, bytes | None]:
        """Session, user, client request id and metadata into ``exchange``; the raw ``traceparent`` and
        ``tracestate`` (used only when no SERVER span is active) returned."""
        traceparent = tracestate = None
        for name, value in headers:
            if name == b"traceparent":
                traceparent = value
            elif name == b"tracestate":
                tracestate = value
            elif name == self.session_header:
                exchange.session_id = _clean_id(value)
            elif name == self.user_header:
                exchange.user = _clean_id(value)
            elif name == b"x-request-id":
                exchange.client_request_id = _clean_id(value)
            elif name == b"baggage" and exchange.session_id is None:
                exchange.session_id = _baggage_session(value)
            elif name in self.metadata_headers:
                exchange.metadata[self.metadata_headers[name]] = bounded(value.decode("latin-1"))
        return traceparent, tracestate

    def _serves_llm(self, scope: Scope) -> bool:
        """Whether the response is an LLM exchange's: decided from the path and our config alone (the
        match is made once per request, by whichever layer asks first, see ``registry.recognise``)."""
        path, routed = llm_path(scope, self.prefix)
        if recognise(scope, path, self.provider_kinds) is not None:
            return True
        return routed and native_provider(path, self.provider_kinds) is not None


def _add_ids(start: Message, exchange: Exchange) -> None:
    """One ``x-request-id`` on the response ``start`` begins: the client's own if it sent one (its record
    has it as client_request_id), else ours (the record's id); the upstream's id stays available as
    ``x-upstream-request-id``. And our ``traceparent``."""
    start["headers"] = [
        *(
            (b"x-upstream-request-id" if name.lower() == b"x-request-id" else name, value)
            for name, value in start.get("headers", ())
        ),
        (b"x-request-id", (exchange.client_request_id or exchange.request_id).encode()),
        (b"traceparent", f"00-{exchange.trace_id}-{exchange.span_id}-{exchange.trace_flags}".encode()),
    ]
