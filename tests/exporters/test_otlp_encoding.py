"""The sink's OTLP encoder makes exactly the request the stock encoder (``encode_spans``) makes.

Equality is protobuf message equality (every field, presence of sub-messages, order of repeated
fields), after a round trip through the serialized bytes the transports send.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from llm_obs_middleware.config.settings import OTLPConfig
from llm_obs_middleware.exporters.otlp.encoding import SpanEncoder
from llm_obs_middleware.exporters.otlp.traces import REPEATING_ATTRIBUTES, OTLPSink
from llm_obs_middleware.records.schema import Attempt, Cost, LLMRecord, Message, RequestParams, Timing, ToolCall, Usage

from .conftest import START_NS, make_record

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SERVER_ID = "b7ad6b7169203331"


def assert_same_request(encoder: SpanEncoder, spans: Sequence[ReadableSpan]) -> bytes:
    data: bytes = encoder.encode(spans).SerializeToString()
    expected = encode_spans(spans)
    assert ExportTraceServiceRequest.FromString(data) == expected
    return data


def records() -> list[LLMRecord]:
    """Every kind of record the gateway makes: plain, streamed, errors, translated, retried, with SERVER spans."""
    usage = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=40, cache_write_tokens=5, reasoning_tokens=7)
    cost = Cost(total_usd=0.0123, input_usd=0.01, cache_read_usd=0.0003, output_usd=0.002)
    attempts = [
        Attempt(provider="openai", model="gpt-4o-mini", key_id="openai#0", status=429, latency_s=0.1),
        Attempt(provider="azure", model="gpt-4o-mini", error_type="UpstreamTimeout", latency_s=2.0, fallback_index=1),
        Attempt(
            provider="anthropic",
            model="claude-3-5-haiku",
            key_id="anthropic#1",
            status=200,
            latency_s=0.4,
            deployment="fast/anthropic/claude-3-5-haiku",
            fallback_index=2,
            start_offset_s=2.1,
            api="anthropic.messages",
        ),
    ]
    return [
        make_record(n=1, usage=usage, cost=cost, finish_reasons=["stop"], server_address="api.openai.com"),
        make_record(
            n=2,
            streamed=True,
            timing=Timing(
                start_unix_nano=START_NS, end_unix_nano=START_NS + 9 * 10**8, duration_s=0.9, time_to_first_token_s=0.2
            ),
            usage=Usage(input_tokens=12, output_tokens=345),
            finish_reasons=["stop", "length"],
            server_address="api.openai.com",
            server_port=443,
            server_span_id=SERVER_ID,
        ),
        make_record(n=3, status=502, outcome="upstream_error", error_type="UpstreamConnectError", error_message="down"),
        make_record(n=4, status=429, error_message="rate limited", retries=2, attempts=attempts[:1]),
        make_record(n=5, status=0, outcome="app_error", server_span_id=SERVER_ID, method="POST", path="/v1/x"),
        make_record(
            n=6,
            trace_id=TRACE_ID,
            parent_span_id=PARENT_ID,
            server_span_id=SERVER_ID,
            api="openai.chat_completions",
            served_api="anthropic.messages",
            provider="anthropic",
            requested_model="fast",
            response_model="claude-3-5-haiku",
            route="fast",
            retries=2,
            attempts=attempts,
            usage=usage,
            cost=Cost(total_usd=0.5, output_usd=0.5),
            estimated=True,
            session_id="sess-1",
            metadata={"x-tenant-id": "acme"},
            params=RequestParams(temperature=0.0, top_p=0.9, max_tokens=64, stop=["END"], n=2, seed=7),
            input_messages=[
                Message(role="user", content="hi"),
                Message(role="assistant", tool_calls=[ToolCall(name="f", id="c1", arguments='{"a":1}')]),
                Message(role="tool", content="42", tool_call_id="c1"),
            ],
            output_text="hello",
            finish_reason="stop",
        ),
        make_record(n=7, operation="embeddings", requested_model="text-embedding-3-small", response_model=None),
    ]


async def sink_spans(openinference: bool = False) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    config = OTLPConfig(endpoint="http://127.0.0.1:1", openinference=openinference)
    sink = OTLPSink(config, service_name="encoding-test", span_exporter=memory)
    await sink.export(records())
    await sink.export(records())  # the same values again: now from the encoder's cache
    spans = list(memory.get_finished_spans())
    await sink.close()
    return spans


@pytest.mark.parametrize("openinference", [False, True])
async def test_the_sinks_spans_encode_as_the_stock_encoder_does(openinference: bool) -> None:
    spans = await sink_spans(openinference)
    kinds = {span.kind for span in spans}
    assert kinds == {SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL}
    encoder = SpanEncoder(REPEATING_ATTRIBUTES)
    first = assert_same_request(encoder, spans)
    assert assert_same_request(encoder, spans) == first  # with every repeating value cached
    for span in spans:  # one span per request, as a batch of one record's spans would be sent
        assert_same_request(encoder, [span])
    # A tiny cache, emptied again and again, changes nothing.
    assert_same_request(SpanEncoder(REPEATING_ATTRIBUTES, cache_size=2), spans)
    # Nothing cached at all: every attribute set in place.
    assert_same_request(SpanEncoder(()), spans)


async def test_encoding_in_the_export_thread_pauses_without_changing_the_request() -> None:
    spans = (await sink_spans()) * 5
    pauses: list[int] = []
    paused = SpanEncoder(REPEATING_ATTRIBUTES).encode(spans, pause=lambda: pauses.append(1), pause_every=4)
    assert len(pauses) == len(spans) // 4  # the sink hands the GIL to the event loop that often
    assert paused == SpanEncoder(REPEATING_ATTRIBUTES).encode(spans) == encode_spans(spans)


# -- any span, whatever it holds ------------------------------------------------------------------

RESOURCE = Resource({"service.name": "a", "n": 1})
SCOPE = InstrumentationScope("lib", "1.2", "https://schema", {"scope.attr": True})


def span(
    name: str = "op",
    attributes: dict[str, Any] | None = None,
    *,
    span_id: int = 1,
    resource: Resource = RESOURCE,
    scope: InstrumentationScope | None = SCOPE,
    **kw: Any,
) -> ReadableSpan:
    return ReadableSpan(
        name=name,
        context=SpanContext(7, span_id, is_remote=False, trace_flags=TraceFlags(1), trace_state=kw.pop("state", None)),
        resource=resource,
        attributes=attributes,
        instrumentation_scope=scope,
        start_time=10,
        end_time=20,
        **kw,
    )


def test_values_that_compare_equal_but_encode_differently_are_never_confused() -> None:
    # True == 1 == 1.0 and 0.0 == -0.0 in Python (and as dict keys); (1,) == (True,).
    values: list[Any] = [True, 1, 1.0, 0.0, -0.0, False, 0, (1,), (True,), (1.0,), ("1",), "1", 2**63, -(2**63)]
    values.append(("a", ["unhashable"]))
    encoder = SpanEncoder({"k"})
    spans = [span(attributes={"k": value, "other": value}, span_id=i + 1) for i, value in enumerate(values)]
    assert_same_request(encoder, spans)
    assert_same_request(encoder, list(reversed(spans)))


def test_every_attribute_type_and_span_field() -> None:
    remote = SpanContext(7, 99, is_remote=True, trace_flags=TraceFlags(1))
    local = SpanContext(7, 98, is_remote=False, trace_flags=TraceFlags(1))
    attributes: dict[str, Any] = {
        "s": "x",
        "i": -5,
        "f": 2.5,
        "b": False,
        "bytes": b"\x00\x01",
        "strs": ("a", "b"),
        "ints": [1, 2],
        "mixed": ("a", 1, 2.0, True),
        "map": {"nested": {"deep": [1, "2"]}, 3: None},
        "none": None,
        "huge": 2**64,  # beyond int64: left out, as the stock encoder does
        "object": object(),  # not encodable: left out
    }
    spans = [
        span(
            "full",
            attributes,
            parent=remote,
            kind=SpanKind.PRODUCER,
            status=Status(StatusCode.ERROR, "boom"),
            events=[Event("e1", {"a": 1}, timestamp=15), Event("e2", timestamp=16)],
            links=[Link(local, {"l": "x"}), Link(remote)],
            state=TraceState([("vendor", "v1"), ("other", "o")]),
        ),
        span("child", {"s": "x"}, span_id=2, parent=local, kind=SpanKind.CONSUMER, status=Status(StatusCode.OK)),
        span("bare", None, span_id=3, scope=None),
    ]
    for repeating in ((), set(attributes)):
        assert_same_request(SpanEncoder(repeating), spans)


def test_spans_are_grouped_by_resource_and_scope_in_order_of_first_appearance() -> None:
    other_resource = Resource({"service.name": "b"}, schema_url="https://r")
    equal_resource = Resource({"service.name": "a", "n": 1})  # equal to RESOURCE, another object
    other_scope = InstrumentationScope("other")
    spans = [
        span(span_id=1),
        span(span_id=2, resource=other_resource),
        span(span_id=3, scope=other_scope),
        span(span_id=4, resource=equal_resource),
        span(span_id=5, resource=other_resource, scope=None),
        span(span_id=6),
    ]
    data = assert_same_request(SpanEncoder({"k"}), spans)
    request = ExportTraceServiceRequest.FromString(data)
    assert len(request.resource_spans) == 2
    assert [len(rs.scope_spans) for rs in request.resource_spans] == [2, 2]


def test_an_empty_batch() -> None:
    assert_same_request(SpanEncoder(REPEATING_ATTRIBUTES), [])


def test_spans_of_the_sdk_tracer_with_dropped_attributes_events_and_links() -> None:
    limits = SpanLimits(max_span_attributes=2, max_events=1, max_links=1)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    remote = SpanContext(7, 99, is_remote=True, trace_flags=TraceFlags(1))
    tracer = provider.get_tracer("lib", "1.0", attributes={"scope.attr": "x"})
    with tracer.start_as_current_span("parent", attributes={"a": 1, "b": "2", "c": 3.0}, links=[Link(remote)] * 2) as s:
        s.add_event("one", {"k": "v"})
        s.add_event("two")
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "failed"))
    provider.shutdown()
    spans = memory.get_finished_spans()
    assert [span.dropped_attributes for span in spans] == [0, 1]  # the child first: it ends first
    assert spans[1].dropped_events == spans[1].dropped_links == 1
    assert_same_request(SpanEncoder({"a", "b"}), spans)
