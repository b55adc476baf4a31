"""``exporters.otlp.server_spans: instrumentation``: OpenTelemetry's ASGI middleware wraps the gateway, so
each HTTP request has the instrumentation's standard SERVER span (and ``http.server.*`` metrics), and the
LLM CLIENT span built from the record hangs beneath it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import FakeProviderServer, OTLPReceiver

from ..conftest import GatewayKit, config_dict, drive

MakeKit = Callable[..., Awaitable[GatewayKit]]

CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
CALLER_TRACE, CALLER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
INSTRUMENTATION_SCOPE = "opentelemetry.instrumentation.asgi"


async def test_the_instrumentations_server_span_is_the_parent_of_the_llm_span(make_kit: MakeKit) -> None:
    kit = await make_kit(exporters={"otlp": {"endpoint": "http://127.0.0.1:9", "server_spans": "instrumentation"}})
    headers = [(b"traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01".encode())]
    result = await drive(kit.gateway, "/v1/chat/completions", CHAT, headers=headers)
    assert result.status == 200
    assert (await drive(kit.gateway, "/healthz", b"", method="GET")).status == 200
    await kit.gateway.pipeline.flush()

    spans = kit.spans.get_finished_spans()
    [server] = [span for span in spans if span.kind == SpanKind.SERVER]
    [llm] = [span for span in spans if span.kind == SpanKind.CLIENT]
    assert server.instrumentation_scope is not None and server.instrumentation_scope.name == INSTRUMENTATION_SCOPE
    assert server.name == "POST /v1/chat/completions"
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert llm.parent is not None and llm.parent.span_id == server.context.span_id
    assert llm.context.trace_id == server.context.trace_id
    # The client sees the LLM span as the request's span, in the caller's trace.
    assert result.start is not None
    echoed = dict(result.start["headers"])[b"traceparent"].decode()
    assert echoed == f"00-{CALLER_TRACE}-{llm.context.span_id:016x}-01"


async def test_record_mode_builds_its_own_server_span(make_kit: MakeKit) -> None:
    kit = await make_kit(exporters={"otlp": {"endpoint": "http://127.0.0.1:9", "server_spans": "record"}})
    assert (await drive(kit.gateway, "/v1/chat/completions", CHAT)).status == 200
    await kit.gateway.pipeline.flush()
    spans = kit.spans.get_finished_spans()
    [server] = [span for span in spans if span.kind == SpanKind.SERVER]
    [llm] = [span for span in spans if span.kind == SpanKind.CLIENT]
    assert server.instrumentation_scope is not None and server.instrumentation_scope.name != INSTRUMENTATION_SCOPE
    assert llm.parent is not None and llm.parent.span_id == server.context.span_id


@pytest.mark.parametrize("off", ["off", False])
async def test_off_means_no_server_span(make_kit: MakeKit, off: str | bool) -> None:
    kit = await make_kit(exporters={"otlp": {"endpoint": "http://127.0.0.1:9", "server_spans": off}})
    assert (await drive(kit.gateway, "/v1/chat/completions", CHAT)).status == 200
    await kit.gateway.pipeline.flush()
    assert SpanKind.SERVER not in {span.kind for span in kit.spans.get_finished_spans()}


async def test_the_instrumentations_http_server_metrics_go_out_with_the_genai_metrics(tmp_path: Path) -> None:
    with FakeProviderServer() as fake, OTLPReceiver("http") as receiver:
        data = config_dict(fake.url, tmp_path)
        data["exporters"]["otlp"] = {"endpoint": receiver.endpoint, "metrics": True, "server_spans": "instrumentation"}
        gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
        await gateway.startup()
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw.test") as client:
            for _ in range(3):
                assert (await client.post("/v1/chat/completions", json=chat)).status_code == 200
        await gateway.shutdown()  # the last export happens at shutdown
        # The instrumentation's name for it depends on OTEL_SEMCONV_STABILITY_OPT_IN (old or stable HTTP names).
        durations = receiver.latest_metrics("http.server.duration") or receiver.latest_metrics(
            "http.server.request.duration"
        )
    assert sum(point["count"] for point in durations) == 3
