"""The standalone gateway: the stack at the root path plus ``/healthz``, ``/metrics`` and ``/logs``.

``create_gateway(config)`` returns an ASGI app to run with uvicorn, the ``llm-obs serve`` command, or
mount under a sub-path (``Mount("/ai", app=gateway)``; pass ``lifespan=gateway.lifespan`` to the
parent app so records are flushed at shutdown). ``llm_obs_middleware.gateway:app`` reads its config
from the file named by ``LLM_OBS_CONFIG`` when the server starts.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from llm_obs_middleware.config.checks import config_warnings
from llm_obs_middleware.config.exporters import GATEWAY_LOG_STORE_URL
from llm_obs_middleware.config.settings import Config
from llm_obs_middleware.errors import ConfigurationError
from llm_obs_middleware.exporters.factory import Exporters, build_exporters
from llm_obs_middleware.gateway.admin import Endpoint, guard
from llm_obs_middleware.middleware.stack import LLMObservability

if TYPE_CHECKING:
    import httpx
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from prometheus_client import CollectorRegistry

    from llm_obs_middleware.asgi.aliases import ASGIApp, Receive, Scope, Send
    from llm_obs_middleware.pricing.base import PriceSource

__all__ = ["Gateway", "app", "create_gateway"]

logger = logging.getLogger("llm_obs_middleware.gateway")


class Gateway:
    """The gateway ASGI app. Handles lifespan itself: starts the export pipeline and loads prices
    at startup, flushes every record at shutdown."""

    def __init__(
        self,
        config: Config,
        *,
        client: httpx.AsyncClient | None = None,
        registry: CollectorRegistry | None = None,
        tracer_provider: TracerProvider | None = None,
        span_exporter: SpanExporter | None = None,
        price_source: PriceSource | None = None,
    ) -> None:
        if config.route_prefix:
            raise ConfigurationError("route_prefix: the gateway routes at its root; mount it under a path instead")
        self.config = config
        for warning in config_warnings(config):
            logger.warning("config: %s", warning)
        self.exporters = build_exporters(
            config,
            registry=registry,
            tracer_provider=tracer_provider,
            span_exporter=span_exporter,
            price_source=price_source,
            default_log_store_url=GATEWAY_LOG_STORE_URL,  # the gateway keeps a request log unless told not to
        )
        admin = functools.partial(guard, config)
        # Health and metrics are open unless protect_metrics; the log routes always go through the guard.
        open_or_admin = admin if config.protect_metrics else _unchanged
        routes: list[BaseRoute] = [
            Route("/healthz", open_or_admin(self._healthz), methods=["GET"]),
            Route("/health/deployments", open_or_admin(self._deployments), methods=["GET"]),
        ]
        if self.exporters.prometheus is not None:
            routes.append(Route("/metrics", open_or_admin(self._metrics), methods=["GET"]))
        if self.exporters.log_store is not None:
            from llm_obs_middleware.exporters.logstore.api import log_routes

            routes.extend(log_routes(self.exporters.log_store, wrap=admin))
        otlp = config.exporters.otlp
        tracing = self.exporters.tracer_provider is not None
        mode = otlp.server_span_mode if otlp is not None else "record"
        # "record": one SERVER span per LLM request with the LLM span beneath it, both built from the record in
        # the export worker; "instrumentation": OpenTelemetry's ASGI middleware makes the standard one on the
        # request path (~1 ms of CPU per request measured, most of the gateway's tracing cost).
        self.stack = LLMObservability(
            Starlette(routes=routes),
            config=config,
            client=client,
            exporters=self.exporters,
            server_spans=tracing and mode == "record",
        )
        self._app: ASGIApp = self.stack
        if tracing and mode == "instrumentation":
            self._app = _instrumented(self.stack, self.exporters)
        self._froze = False

    @property
    def pipeline(self) -> Any:
        return self.exporters.pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._app(scope, receive, send)

    async def startup(self) -> None:
        """Start exporting and load the price data now, so the first request does not pay for it."""
        await self.exporters.pipeline.start()
        preload = getattr(self.exporters.price_source, "preload", None)
        if preload is not None:
            await asyncio.to_thread(preload)
        if self.config.gc_freeze and not self._froze:
            _freeze_startup_objects()
            self._froze = True

    async def shutdown(self) -> None:
        """Flush queued records, close the sinks and the upstream client."""
        try:
            await self.stack.aclose()
        finally:
            if self._froze:
                self._froze = False
                _thaw_startup_objects()

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """Lifespan for a parent app that mounts the gateway (``Starlette(lifespan=gateway.lifespan)``)."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _healthz(self, request: Request) -> Response:
        pipeline = self.exporters.pipeline
        stats = pipeline.snapshot()
        sinks = {
            name: {
                "queued": queued,
                "exported": stats.exported[name],
                "failed": stats.failed[name],
                "dropped": stats.sink_dropped[name],
                "rejected": stats.rejected[name],
                "spooled": stats.spooled[name],
            }
            for name, queued in stats.sink_depth.items()
        }
        return JSONResponse({"status": "ok", "export_queue_depth": pipeline.depth, "export_sinks": sinks})

    async def _deployments(self, request: Request) -> Response:
        return JSONResponse(self.stack.router.health())

    async def _metrics(self, request: Request) -> Response:
        assert self.exporters.prometheus is not None
        body, content_type = self.exporters.prometheus.render()
        return Response(body, media_type=content_type)


_running_frozen = 0
"""Gateways of this process started with ``gc_freeze`` and not shut down yet."""


def _freeze_startup_objects() -> None:
    # Full collections traverse every tracked object; the tens of thousands made at start-up live as long as
    # the process, so scanning them again and again under load is pure cost (and a pause per collection).
    global _running_frozen
    gc.freeze()
    _running_frozen += 1


def _thaw_startup_objects() -> None:
    global _running_frozen
    _running_frozen -= 1
    if _running_frozen == 0:
        gc.unfreeze()  # collectable again (a process that starts gateways over and over leaks nothing)


def create_gateway(
    config: Config,
    *,
    client: httpx.AsyncClient | None = None,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
    span_exporter: SpanExporter | None = None,
    price_source: PriceSource | None = None,
) -> Gateway:
    """Build the gateway app from a config; runtime objects override the defaults (see ``Gateway``)."""
    return Gateway(
        config,
        client=client,
        registry=registry,
        tracer_provider=tracer_provider,
        span_exporter=span_exporter,
        price_source=price_source,
    )


_ADMIN_PATHS = "/healthz$,/health/deployments$,/metrics$,/logs,/sessions"
"""Routes ``server_spans: instrumentation`` does not trace (as ``record`` does not): scrapes and probes."""


def _instrumented(stack: ASGIApp, exporters: Exporters) -> ASGIApp:
    """The stack inside OpenTelemetry's ASGI middleware: a standard HTTP SERVER span per request (the active
    span the trace-context middleware makes the LLM span's parent) and the ``http.server.*`` metrics."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    app: ASGIApp = OpenTelemetryMiddleware(
        stack,
        excluded_urls=_ADMIN_PATHS,
        tracer_provider=exporters.tracer_provider,
        meter_provider=exporters.meter_provider,
        exclude_spans=["receive", "send"],  # one span per request, not one per body chunk
    )
    return app


def _unchanged(endpoint: Endpoint) -> Endpoint:
    return endpoint


class _GatewayFromEnv:
    """``uvicorn llm_obs_middleware.gateway:app``: built from ``LLM_OBS_CONFIG`` at server start.

    Nothing happens at import (no env reads); a bad config fails the startup with a message naming the field.
    """

    def __init__(self) -> None:
        self._gateway: Gateway | None = None

    def _get(self) -> Gateway:
        if self._gateway is None:
            self._gateway = create_gateway(Config.from_env())
        return self._gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self._gateway is None:
            try:
                self._get()
            except ConfigurationError as exc:
                await receive()
                sys.stderr.write(f"llm-obs: {exc}\n")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
        await self._get()(scope, receive, send)


app = _GatewayFromEnv()
