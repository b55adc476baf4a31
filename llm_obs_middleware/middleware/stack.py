"""``LLMObservability``: the whole stack, mounted in the right order with one call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from llm_obs_middleware.config.settings import Config
from llm_obs_middleware.exporters.factory import Exporters, build_exporters
from llm_obs_middleware.middleware.accounting import AccountingMiddleware
from llm_obs_middleware.middleware.export import ExportMiddleware
from llm_obs_middleware.middleware.tracecontext import TraceContextMiddleware
from llm_obs_middleware.routing.middleware import RouterMiddleware
from llm_obs_middleware.upstream.client import upstream_of

if TYPE_CHECKING:
    import httpx
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from prometheus_client import CollectorRegistry

    from llm_obs_middleware.asgi.aliases import ASGIApp, Message, Receive, Scope, Send
    from llm_obs_middleware.pricing.base import PriceSource

__all__ = ["LLMObservability"]


class LLMObservability:
    """Trace context, export, accounting and routing around an ASGI app, outermost first.

    Requests under ``config.route_prefix`` go to providers; the app's own LLM-shaped endpoints
    (e.g. its ``/v1/chat/completions``) are observed the same way without routing; everything else
    reaches the app untouched. Use with ``app.add_middleware(LLMObservability, config=...)``.

    Args:
        app: the ASGI app to wrap.
        config: the stack configuration.
        client: an ``httpx.AsyncClient`` of your own for every upstream request (its defaults, auth and
            event hooks apply; the caller closes it; its cookie jar stores no cookie a provider sets).
            Default: the gateway's own pooled client (aiohttp with the ``fast`` extra, else httpx).
        registry: Prometheus registry for the metrics (default: a private one).
        tracer_provider: OpenTelemetry SDK provider for LLM spans (default: one built from ``exporters.otlp``).
        span_exporter: export spans here instead (tests: ``InMemorySpanExporter``).
        price_source: prices records (default: genai-prices data).
        exporters: prebuilt pipeline and sinks (the gateway shares them with its routes).
        server_spans: export an HTTP SERVER span above each LLM span (built from the record, like it).

    Every option after ``config`` is a documented keyword-only runtime object (STYLE.md section 4:
    runtime objects are constructor keywords, never config fields, so ``add_middleware`` type-checks
    them), hence more than the eight parameters the linter allows elsewhere.
    """

    def __init__(  # noqa: PLR0913 (public constructor: keyword-only runtime objects, see the docstring)
        self,
        app: ASGIApp,
        *,
        config: Config,
        client: httpx.AsyncClient | None = None,
        registry: CollectorRegistry | None = None,
        tracer_provider: TracerProvider | None = None,
        span_exporter: SpanExporter | None = None,
        price_source: PriceSource | None = None,
        exporters: Exporters | None = None,
        server_spans: bool = False,
    ) -> None:
        self.config = config
        self.upstream = upstream_of(client, config)
        self._owns_client = client is None
        self.exporters = exporters or build_exporters(
            config,
            registry=registry,
            tracer_provider=tracer_provider,
            span_exporter=span_exporter,
            price_source=price_source,
        )
        self.router = RouterMiddleware(app, config=config, client=self.upstream)
        if self.exporters.prometheus is not None:
            self.exporters.prometheus.bind_routing(self.router.health)
        inner: Any = self.router
        inner = AccountingMiddleware(inner, config=config)
        # Governance (budgets, virtual keys) will sit here, between export and accounting.
        inner = ExportMiddleware(inner, pipeline=self.exporters.pipeline)
        self.app: ASGIApp = TraceContextMiddleware(inner, config=config, server_spans=server_spans)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        await self.app(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        """The one place of the stack that acts on lifespan (the middlewares inside pass it through):
        exporters start at startup and are flushed at shutdown, with the upstream client we built."""

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.exporters.pipeline.start()
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
            return message

        return lifespan_receive

    async def aclose(self) -> None:
        """Flush every queued record, close the sinks and the upstream client we built."""
        await self.exporters.pipeline.close()
        if self._owns_client:
            await self.upstream.aclose()

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """For apps where lifespan does not reach the stack (``Mount``): start now, flush on exit."""
        await self.exporters.pipeline.start()
        try:
            yield
        finally:
            await self.aclose()
