"""Each middleware alone, OpenTelemetry's ASGI middleware outside ours, concurrency, app exceptions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from llm_obs_middleware import (
    AccountingMiddleware,
    Config,
    ExportMiddleware,
    ExportPipeline,
    LLMRecord,
    RouterMiddleware,
    TraceContextMiddleware,
)
from llm_obs_middleware.testing import create_fake_provider

from ..conftest import config_dict, drive

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
OWN_COMPLETION = {
    "id": "chatcmpl-own",
    "model": "house-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
}


class ListSink:
    """Collects exported records (a real Sink, in memory)."""

    name = "list"

    def __init__(self) -> None:
        self.records: list[LLMRecord] = []

    async def start(self) -> None:
        return None

    async def export(self, records: Any) -> None:
        self.records.extend(records)

    async def close(self) -> None:
        return None


async def own_endpoint(request: Request) -> JSONResponse:
    body = await request.json()
    if body.get("model") == "explode":
        raise RuntimeError("the app failed")
    return JSONResponse(OWN_COMPLETION)


async def own_stream(request: Request) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        yield b'data: {"id":"c1","model":"house","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        yield b'data: {"id":"c1","model":"house","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        yield b'"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}\n\ndata: [DONE]\n\n'

    return StreamingResponse(events(), media_type="text/event-stream")


def app_with_own_endpoints() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/chat/completions", own_endpoint, methods=["POST"]),
            Route("/stream/v1/chat/completions", own_stream, methods=["POST"]),
        ]
    )


async def test_router_alone_routes_to_the_provider() -> None:
    fake = create_fake_provider()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        config = Config.from_dict(config_dict())
        router = RouterMiddleware(app_with_own_endpoints(), config=config, client=upstream)
        result = await drive(router, "/v1/chat/completions", CHAT)
    assert result.status == 200
    assert json.loads(result.body)["model"] == "gpt-4o-mini"
    assert fake.requests[-1].path == "/v1/chat/completions"


async def test_accounting_and_export_observe_the_apps_own_endpoint() -> None:
    sink = ListSink()
    pipeline = ExportPipeline([sink])
    app = ExportMiddleware(AccountingMiddleware(app_with_own_endpoints()), pipeline=pipeline)
    result = await drive(app, "/v1/chat/completions", CHAT)
    assert json.loads(result.body) == OWN_COMPLETION, "the response is forwarded unchanged"
    await pipeline.close()
    [record] = sink.records
    assert (record.requested_model, record.response_model, record.status) == ("gpt-4o-mini", "house-model", 200)
    assert record.usage is not None and (record.usage.input_tokens, record.usage.output_tokens) == (9, 4)
    assert record.route is None


async def test_app_streaming_endpoint_under_a_prefix_is_observed() -> None:
    sink = ListSink()
    pipeline = ExportPipeline([sink])
    config = Config(route_prefix="/stream")
    app = ExportMiddleware(AccountingMiddleware(app_with_own_endpoints(), config=config), pipeline=pipeline)
    result = await drive(app, "/stream/v1/chat/completions", CHAT)
    assert result.body.endswith(b"data: [DONE]\n\n")
    await pipeline.close()
    [record] = sink.records
    assert record.streamed and record.usage is not None and record.usage.output_tokens == 1
    assert record.finish_reason == "stop" and record.timing.time_to_first_token_s is not None


async def test_app_exception_is_re_raised_and_still_recorded() -> None:
    sink = ListSink()
    pipeline = ExportPipeline([sink])
    app = ExportMiddleware(AccountingMiddleware(app_with_own_endpoints()), pipeline=pipeline)
    with pytest.raises(RuntimeError, match="the app failed"):
        await drive(app, "/v1/chat/completions", b'{"model":"explode","messages":[]}')
    await pipeline.close()
    [record] = sink.records
    assert (record.outcome, record.error_type, record.status) == ("app_error", "RuntimeError", 500)


async def test_trace_context_alone_leaves_non_llm_responses_untouched() -> None:
    async def plain(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"hello"})

    result = await drive(TraceContextMiddleware(plain), "/anything", b"", method="GET")
    assert (result.status, result.headers, result.body) == (201, {b"x-a": b"1"}, b"hello")


async def test_opentelemetry_server_span_outside_is_the_parent_of_the_llm_span(tmp_path: Path) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    fake = create_fake_provider()
    from llm_obs_middleware import LLMObservability

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        stack = LLMObservability(
            app_with_own_endpoints(),
            config=Config.from_dict(config_dict(tmp_path=tmp_path, route_prefix="/llm")),
            client=upstream,
            tracer_provider=provider,
        )
        app = OpenTelemetryMiddleware(stack, tracer_provider=provider, exclude_spans=["receive", "send"])
        result = await drive(app, "/llm/v1/chat/completions", CHAT)
        await stack.aclose()
    assert result.status == 200
    by_kind = {span.kind: span for span in spans.get_finished_spans()}
    server, llm = by_kind[SpanKind.SERVER], by_kind[SpanKind.CLIENT]
    assert llm.parent is not None and llm.parent.span_id == server.context.span_id
    assert llm.context.trace_id == server.context.trace_id
    # The upstream request carried our LLM span as its parent.
    flags = f"{server.context.trace_flags:02x}"
    assert (
        fake.requests[-1].headers["traceparent"] == f"00-{llm.context.trace_id:032x}-{llm.context.span_id:016x}-{flags}"
    )


async def test_interleaved_concurrent_streams_keep_their_own_records(tmp_path: Path) -> None:
    sink = ListSink()
    fake = create_fake_provider()
    from llm_obs_middleware import LLMObservability
    from llm_obs_middleware.exporters.factory import build_exporters

    config = Config.from_dict(config_dict(tmp_path=tmp_path))
    exporters = build_exporters(config)
    exporters.pipeline.sinks.append(sink)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        stack = LLMObservability(app_with_own_endpoints(), config=config, client=upstream, exporters=exporters)
        body = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
        results = await asyncio.gather(
            *(
                drive(
                    stack,
                    "/v1/chat/completions",
                    body,
                    headers=[(b"x-fake-chunks", str(n).encode()), (b"x-session-id", f"s{n}".encode())],
                )
                for n in range(1, 9)
            )
        )
        await stack.aclose()
    assert all(result.status == 200 for result in results)
    by_session = {record.session_id: record for record in sink.records}
    assert len(by_session) == 8
    for n in range(1, 9):
        usage = by_session[f"s{n}"].usage
        assert usage is not None and usage.output_tokens == n, f"session s{n} got another request's usage"
