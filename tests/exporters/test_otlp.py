"""OTLPSink: spans built from records, checked through an InMemorySpanExporter."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llm_obs_middleware.config.settings import OTLPConfig
from llm_obs_middleware.exporters.otlp.settings import build_span_exporter, resolve_settings
from llm_obs_middleware.exporters.otlp.traces import OTLPSink
from llm_obs_middleware.records.schema import Cost, Message, RequestParams, Timing, ToolCall, Usage

from .conftest import START_NS, RecordFactory

CONFIG = OTLPConfig(endpoint="http://127.0.0.1:4318")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
PARENT_ID = "53995c3f42cd8ad8"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def sink(exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> OTLPSink:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    return OTLPSink(CONFIG, service_name="gateway-test", span_exporter=exporter)


async def export_one(
    sink: OTLPSink, exporter: InMemorySpanExporter, record_factory: RecordFactory, **kw: object
) -> ReadableSpan:
    await sink.export([record_factory(**kw)])
    (span,) = exporter.get_finished_spans()
    return span


async def test_span_ids_times_and_parent(
    sink: OTLPSink, exporter: InMemorySpanExporter, record_factory: RecordFactory
) -> None:
    timing = Timing(
        start_unix_nano=START_NS, end_unix_nano=START_NS + 1_250_000_000, duration_s=1.25, time_to_first_token_s=0.2
    )
    span = await export_one(
        sink, exporter, record_factory, trace_id=TRACE_ID, span_id=SPAN_ID, parent_span_id=PARENT_ID, timing=timing
    )
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.context is not None
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert span.context.span_id == int(SPAN_ID, 16)
    assert span.parent is not None
    assert span.parent.span_id == int(PARENT_ID, 16)
    assert span.parent.trace_id == int(TRACE_ID, 16)
    assert span.parent.is_remote
    assert span.start_time == START_NS
    assert span.end_time == START_NS + 1_250_000_000
    assert span.status.status_code is StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "gateway-test"
    assert span.attributes is not None
    assert span.attributes["llm_obs.time_to_first_token_s"] == 0.2


async def test_root_span_keeps_the_record_trace_id(
    sink: OTLPSink, exporter: InMemorySpanExporter, record_factory: RecordFactory
) -> None:
    span = await export_one(sink, exporter, record_factory, trace_id=TRACE_ID, span_id=SPAN_ID)
    assert span.parent is None
    assert span.context is not None
    assert (span.context.trace_id, span.context.span_id) == (int(TRACE_ID, 16), int(SPAN_ID, 16))


async def test_ids_do_not_leak_between_records(
    sink: OTLPSink, exporter: InMemorySpanExporter, record_factory: RecordFactory
) -> None:
    await sink.export([record_factory(n=1), record_factory(n=2, trace_id="not-hex", span_id="zz")])
    first, second = exporter.get_finished_spans()
    assert first.context is not None and second.context is not None
    assert (first.context.trace_id, first.context.span_id) == (1, 1)
    # Invalid ids are replaced by random valid ones rather than reusing anything.
    assert second.context.is_valid
    assert second.context.trace_id not in (0, 1)
    assert second.context.span_id not in (0, 1)


async def test_genai_attributes(sink: OTLPSink, exporter: InMemorySpanExporter, record_factory: RecordFactory) -> None:
    span = await export_one(
        sink,
        exporter,
        record_factory,
        response_id="chatcmpl-1",
        finish_reasons=["stop", "length"],
        session_id="sess-1",
        server_address="api.openai.com",
        server_port=443,
        route="default",
        retries=1,
        streamed=True,
        virtual_key="sk-virtual-secret",
        user="alice",
        metadata={"x-tenant-id": "acme"},
        params=RequestParams(temperature=0.2, top_p=0.9, max_tokens=64),
        usage=Usage(input_tokens=100, output_tokens=20, cache_read_tokens=40, cache_write_tokens=5, reasoning_tokens=7),
        cost=Cost(total_usd=0.0123),
    )
    assert span.attributes is not None
    attrs = dict(span.attributes)
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ("stop", "length"),
        "gen_ai.conversation.id": "sess-1",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read.input_tokens": 40,
        "gen_ai.usage.cache_creation.input_tokens": 5,
        "gen_ai.usage.reasoning.output_tokens": 7,
        "server.address": "api.openai.com",
        "server.port": 443,
        "llm_obs.request_id": "req-1",
        "llm_obs.status_code": 200,
        "llm_obs.outcome": "completed",
        "llm_obs.streamed": True,
        "llm_obs.retries": 1,
        "llm_obs.route": "default",
        "llm_obs.cost.usd": 0.0123,
        "llm_obs.metadata.x-tenant-id": "acme",
    }
    assert "sk-virtual-secret" not in repr(attrs)


async def test_error_status(sink: OTLPSink, exporter: InMemorySpanExporter, record_factory: RecordFactory) -> None:
    await sink.export(
        [
            record_factory(n=1, status=502, outcome="upstream_error", error_type="UpstreamConnectError"),
            record_factory(n=2, status=429, error_message="rate limited"),
            record_factory(n=3, status=0, outcome="app_error"),
        ]
    )
    spans = exporter.get_finished_spans()
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR] * 3
    assert [s.attributes["error.type"] if s.attributes else None for s in spans] == [
        "UpstreamConnectError",
        "429",
        "app_error",
    ]
    assert spans[1].status.description == "rate limited"


async def test_captured_content(sink: OTLPSink, exporter: InMemorySpanExporter, record_factory: RecordFactory) -> None:
    messages = [
        Message(role="user", content="hi"),
        Message(role="assistant", tool_calls=[ToolCall(name="f", id="c1", arguments='{"a":1}')]),
        Message(role="tool", content="42", tool_call_id="c1"),
    ]
    span = await export_one(
        sink, exporter, record_factory, input_messages=messages, output_text="hello", finish_reason="stop"
    )
    assert span.attributes is not None
    assert json.loads(str(span.attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": '{"a":1}'}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "42"}]},
    ]
    assert json.loads(str(span.attributes["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "hello"}], "finish_reason": "stop"}
    ]
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)


async def test_configured_service_name_wins_over_the_environment(
    exporter: InMemorySpanExporter, record_factory: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment.environment.name=prod,team=a")
    config = OTLPConfig(endpoint="http://collector:4318", resource_attributes={"team": "b"})
    sink = OTLPSink(config, service_name="from-config", span_exporter=exporter)
    span = await export_one(sink, exporter, record_factory)
    attributes = span.resource.attributes
    assert attributes["service.name"] == "from-config"
    assert attributes["deployment.environment.name"] == "prod"  # the environment fills what the config leaves
    assert attributes["team"] == "b"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_SERVICE_NAME": "from-env", "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"}, "from-env"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"}, "from-attrs"),
        ({}, "llm-obs"),
    ],
)
async def test_service_name_without_config_comes_from_the_environment(
    env: dict[str, str],
    expected: str,
    exporter: InMemorySpanExporter,
    record_factory: RecordFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sink = OTLPSink(CONFIG, span_exporter=exporter)
    span = await export_one(sink, exporter, record_factory)
    assert span.resource.attributes["service.name"] == expected


async def test_user_tracer_provider_is_flushed_not_shut_down(record_factory: RecordFactory) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OTLPSink(CONFIG, service_name="x", tracer_provider=provider)
    await sink.start()
    await sink.export([record_factory(trace_id=TRACE_ID, span_id=SPAN_ID)])
    await sink.close()
    (span,) = exporter.get_finished_spans()
    assert span.context is not None and span.context.span_id == int(SPAN_ID, 16)
    # The provider still works for its owner: its other tracers keep random ids.
    with provider.get_tracer("app").start_as_current_span("app-span") as own:
        assert own.get_span_context().span_id != int(SPAN_ID, 16)
    provider.shutdown()


async def test_close_shuts_down_own_provider(
    sink: OTLPSink, exporter: InMemorySpanExporter, record_factory: RecordFactory
) -> None:
    await sink.close()
    await sink.export([record_factory()])
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otlp.example.com/custom/v1/traces", "https://otlp.example.com/custom/v1/traces"),
    ],
)
def test_http_exporter_endpoint(endpoint: str, expected: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    config = OTLPConfig(endpoint=endpoint, headers={"authorization": "Bearer t"}, timeout=3.0)
    exporter = build_span_exporter(resolve_settings(config, environ={}))
    assert isinstance(exporter, OTLPSpanExporter)
    assert exporter._endpoint == expected
    exporter.shutdown()  # type: ignore[no-untyped-call]


def test_grpc_exporter() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = build_span_exporter(resolve_settings(OTLPConfig(endpoint="http://collector:4317", protocol="grpc")))
    assert isinstance(exporter, OTLPSpanExporter)
    exporter.shutdown()


async def test_default_batch_exporter_starts_and_closes() -> None:
    # No span is exported, so nothing is sent; this checks the wiring of the default (batch) path.
    sink = OTLPSink(CONFIG, service_name="x")
    await sink.start()
    await sink.close()
