"""Lifespan is handled in one place: the stack (or the gateway) starts and flushes exporters; each
middleware alone passes the lifespan scope through untouched."""

from __future__ import annotations

from typing import Any

import httpx

from llm_obs_middleware import (
    AccountingMiddleware,
    Config,
    ExportMiddleware,
    ExportPipeline,
    LLMObservability,
    RouterMiddleware,
    TraceContextMiddleware,
)
from llm_obs_middleware.testing import create_fake_provider

from ..conftest import config_dict, drive
from .test_standalone_middlewares import CHAT, ListSink


class LifespanApp:
    """Answers lifespan like an app with startup/shutdown, remembering the receive it was given."""

    def __init__(self) -> None:
        self.receives: list[Any] = []
        self.sent: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        self.receives.append(receive)
        while True:
            message = await receive()
            reply = message["type"] + ".complete"
            self.sent.append(reply)
            await send({"type": reply})
            if message["type"] == "lifespan.shutdown":
                return


async def run_lifespan(app: Any) -> tuple[list[str], Any]:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent, receive


async def test_each_middleware_alone_passes_lifespan_through_untouched() -> None:
    config = Config.from_dict(config_dict())
    pipeline = ExportPipeline([ListSink()])
    for wrap in (
        lambda app: ExportMiddleware(app, pipeline=pipeline),
        lambda app: AccountingMiddleware(app, config=config),
        lambda app: TraceContextMiddleware(app, config=config),
        lambda app: RouterMiddleware(app, config=config),
    ):
        inner = LifespanApp()
        sent, receive = await run_lifespan(wrap(inner))
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert inner.receives == [receive], "the server's own receive, not a wrapper"
    assert pipeline.stats.submitted == 0 and not pipeline.dispatched, "the pipeline was neither started nor closed"


async def test_the_stack_flushes_at_lifespan_shutdown_and_keeps_a_client_it_was_given() -> None:
    sink = ListSink()
    fake = create_fake_provider()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        stack = LLMObservability(LifespanApp(), config=Config.from_dict(config_dict()), client=upstream)
        stack.exporters.pipeline.sinks.append(sink)
        assert (await drive(stack, "/v1/chat/completions", CHAT)).status == 200
        sent, _ = await run_lifespan(stack)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert len(sink.records) == 1, "shutdown flushed the record"
        assert not upstream.is_closed, "a client the caller owns stays open"
