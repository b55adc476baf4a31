"""Hands every finished LLM exchange to the export pipeline, without awaiting any I/O."""

from __future__ import annotations

import time

from llm_obs_middleware.asgi.aliases import ASGIApp, Message, Receive, Scope, Send
from llm_obs_middleware.asgi.state import get_exchange
from llm_obs_middleware.exporters.pipeline.export_pipeline import ExportPipeline

__all__ = ["ExportMiddleware"]


class ExportMiddleware:
    """Turns each finished LLM exchange into a record for the export pipeline.

    Observes the response status, when the last body chunk left, client disconnects and app
    exceptions (re-raised unchanged, still recorded). Changes nothing, and passes lifespan through
    untouched: the pipeline starts with the first record; whoever owns it flushes it at shutdown
    (``await pipeline.close()``; ``LLMObservability`` and the gateway do it on lifespan shutdown).

    Args:
        app: the ASGI app to wrap.
        pipeline: where records go (see :class:`ExportPipeline`).
    """

    def __init__(self, app: ASGIApp, *, pipeline: ExportPipeline) -> None:
        self.app = app
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = get_exchange(scope)
        finished = False

        async def observed_send(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            elif not message.get("more_body", False):
                finished = True
                exchange.end_ns = time.perf_counter_ns()
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except BaseException as exc:
            if exchange.is_llm:
                # fail() keeps the first reason, so an inner layer's own diagnosis wins.
                exchange.fail("app_error", type(exc).__name__, str(exc)[:500] or None)
                if not exchange.status:
                    exchange.status = 500  # what the server answers for an unhandled exception
            raise
        finally:
            if exchange.is_llm:
                if not exchange.end_ns:
                    exchange.end_ns = time.perf_counter_ns()
                if not finished and exchange.outcome == "completed":
                    exchange.fail("client_disconnected", "client_disconnected")
                self.pipeline.submit(exchange)
