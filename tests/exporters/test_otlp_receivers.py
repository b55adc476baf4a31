"""Traces really reach a collector: the gateway's OTLP exporter against real receivers on loopback.

Nothing is mocked: the gateway (in-process, through ``httpx.ASGITransport``) calls a fake provider
served by uvicorn, and exports with the stock OTLP exporters, over HTTP and over gRPC, to an
:class:`OTLPReceiver` that decodes what arrives on the socket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.testing import FakeProviderConfig, FakeProviderServer, OTLPReceiver, ReceivedSpan

from ..conftest import UPSTREAM_KEY, config_dict

Protocol = Literal["http", "grpc"]

FAKE = FakeProviderConfig(prompt_tokens=21, completion_tokens=7, chunks=4)
SERVICE = "gateway-under-test"
CLIENT_KEY = "client-key-not-for-upstream"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _plain_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment would override the configured service name (and could redirect exports).
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


@pytest.fixture(params=["http", "grpc"])
def receiver(request: pytest.FixtureRequest) -> Iterator[OTLPReceiver]:
    with OTLPReceiver(request.param) as running:
        yield running


@asynccontextmanager
async def running_gateway(
    receiver: OTLPReceiver, fake: FakeProviderServer, tmp_path: Path, **otlp: Any
) -> AsyncIterator[Gateway]:
    """A gateway exporting to ``receiver``; shut down on exit (a second shutdown is a no-op)."""
    data = config_dict(fake.url, tmp_path, service_name=SERVICE)
    data["exporters"]["otlp"] = {"endpoint": receiver.endpoint, "protocol": receiver.protocol, "timeout": 5, **otlp}
    gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
    await gateway.startup()
    try:
        yield gateway
    finally:
        await gateway.shutdown()


def sdk(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://gateway.test/v1",
        api_key=CLIENT_KEY,
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)),
        max_retries=0,
    )


async def logged_records(gateway: Gateway) -> list[dict[str, Any]]:
    await gateway.pipeline.flush()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway.test") as client:
        response = await client.get("/logs")
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["data"]
    return records


def by_request_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {str(span["attributes"]["llm_obs.request_id"]): span for span in spans}


async def test_plain_and_streamed_chats_reach_the_collector(
    receiver: OTLPReceiver, fake: FakeProviderServer, tmp_path: Path
) -> None:
    async with running_gateway(receiver, fake, tmp_path) as gateway:
        async with sdk(gateway) as client:
            completion = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            chunks = [chunk async for chunk in stream]
        assert completion.usage is not None and completion.usage.prompt_tokens == 21
        assert chunks
        records = await logged_records(gateway)
        await gateway.shutdown()  # flushes the span processor: everything is exported when it returns

    # Two LLM (CLIENT) spans each with its one attempt (INTERNAL), and the gateway's SERVER span of each
    # (admin routes such as the GET /logs are not traced).
    received = receiver.wait_for(6)
    assert len(received) == 6
    attempts = [span for span in received if span["kind"] == "INTERNAL"]
    llm_ids = {span["span_id"] for span in received if span["kind"] == "CLIENT"}
    assert len(attempts) == 2 and {span["parent_span_id"] for span in attempts} == llm_ids
    assert all(span["attributes"]["http.response.status_code"] == 200 for span in attempts)
    assert {span["protocol"] for span in received} == {receiver.protocol}
    servers = {span["span_id"]: span for span in received if span["kind"] == "SERVER"}
    spans = [span for span in received if span["kind"] == "CLIENT"]
    assert len(spans) == 2
    assert len(records) == 2
    exported = by_request_id(spans)
    assert set(exported) == {record["request_id"] for record in records}
    for record in records:
        span = exported[record["request_id"]]
        attrs = span["attributes"]
        assert span["name"] == "chat gpt-4o-mini"
        assert span["kind"] == "CLIENT"
        assert span["status_code"] == "UNSET"
        assert span["scope"] == "llm_obs_middleware"
        assert span["resource"]["service.name"] == SERVICE
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "openai"
        assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
        assert attrs["gen_ai.response.model"] == "gpt-4o-mini"
        assert attrs["gen_ai.usage.input_tokens"] == FAKE.prompt_tokens
        assert attrs["gen_ai.usage.output_tokens"] == FAKE.completion_tokens
        assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
        cost = attrs["llm_obs.cost.usd"]
        assert isinstance(cost, float) and cost > 0
        assert cost == pytest.approx(record["cost"]["total_usd"])
        assert attrs["llm_obs.streamed"] is record["streamed"]
        # The ids the log store holds (and the client was told) are the exported span's.
        assert span["trace_id"] == record["trace_id"]
        assert span["span_id"] == record["span_id"]
        # No incoming traceparent: the LLM span hangs under the gateway's SERVER span, a root.
        server = servers[span["parent_span_id"]]
        assert (server["name"], server["trace_id"], server["parent_span_id"]) == (
            "POST /v1/chat/completions",
            span["trace_id"],
            "",
        )
        assert server["attributes"]["http.request.method"] == "POST"
        assert server["attributes"]["http.response.status_code"] == 200
        assert server["span_id"] == record["server_span_id"]
        assert 0 < span["start_unix_nano"] <= span["end_unix_nano"]
    assert {attrs["llm_obs.streamed"] for attrs in (s["attributes"] for s in spans)} == {True, False}


async def test_incoming_traceparent_becomes_the_exported_parent(
    receiver: OTLPReceiver, fake: FakeProviderServer, tmp_path: Path
) -> None:
    async with running_gateway(receiver, fake, tmp_path) as gateway:
        async with sdk(gateway) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
            )
        echoed = raw.headers["traceparent"]
        await gateway.shutdown()

    received = receiver.wait_for(2)
    [span] = [s for s in received if s["kind"] == "CLIENT"]
    [server] = [s for s in received if s["kind"] == "SERVER"]
    assert span["trace_id"] == server["trace_id"] == TRACE_ID
    # The caller's span -> the gateway's SERVER span -> the LLM span.
    assert server["parent_span_id"] == PARENT_ID
    assert span["parent_span_id"] == server["span_id"]
    assert span["span_id"] not in ("", PARENT_ID)
    # The traceparent echoed to the client and the one sent upstream both point at this very span.
    assert echoed == f"00-{TRACE_ID}-{span['span_id']}-01"
    assert fake.app.requests[-1].headers["traceparent"] == f"00-{TRACE_ID}-{span['span_id']}-01"


async def test_configured_headers_arrive_and_no_key_is_exported(
    receiver: OTLPReceiver, fake: FakeProviderServer, tmp_path: Path
) -> None:
    otlp_headers = {"authorization": "Bearer t", "x-tenant": "acme"}
    async with running_gateway(receiver, fake, tmp_path, headers=otlp_headers) as gateway:
        async with sdk(gateway) as client:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            [_ async for _ in stream]
        await gateway.shutdown()

    spans = receiver.wait_for(2)
    exports = receiver.headers
    assert exports
    for headers in exports:  # HTTP request headers, or gRPC invocation metadata
        assert headers["authorization"] == "Bearer t"
        assert headers["x-tenant"] == "acme"
        if receiver.protocol == "http":
            assert headers["content-type"] == "application/x-protobuf"
    # The provider key went upstream, and nowhere near the collector; nor did the client's key.
    assert fake.app.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    exported = json.dumps([[span["attributes"], span["resource"]] for span in spans], default=repr)
    for secret in (UPSTREAM_KEY, CLIENT_KEY):
        assert secret not in exported
        assert secret not in repr(exports)


# -- the receiver on its own ----------------------------------------------------------------------


def test_receiver_serves_both_protocols_at_once_gzipped() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        Compression as GRPCCompression,
        OTLPSpanExporter as GRPCExporter,
    )
    from opentelemetry.exporter.otlp.proto.http import Compression as HTTPCompression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    with OTLPReceiver("both") as receiver:
        with pytest.raises(RuntimeError, match="both"):
            _ = receiver.endpoint
        provider = TracerProvider(resource=Resource({"service.name": "both"}))
        http = HTTPExporter(endpoint=receiver.http_endpoint + "/v1/traces", compression=HTTPCompression.Gzip)
        grpc = GRPCExporter(endpoint=receiver.grpc_endpoint, compression=GRPCCompression.Gzip)
        provider.add_span_processor(SimpleSpanProcessor(http))
        provider.add_span_processor(SimpleSpanProcessor(grpc))
        with provider.get_tracer("t").start_as_current_span("op", attributes={"n": 1, "tags": ["a", "b"]}):
            pass
        provider.shutdown()
        spans = receiver.wait_for(2)
    assert sorted(span["protocol"] for span in spans) == ["grpc", "http"]
    for span in spans:
        assert span["name"] == "op"
        assert span["kind"] == "INTERNAL"
        assert span["attributes"] == {"n": 1, "tags": ["a", "b"]}
        assert span["resource"]["service.name"] == "both"
    assert spans[0]["trace_id"] == spans[1]["trace_id"]
    assert any(headers.get("content-encoding") == "gzip" for headers in receiver.headers)  # the HTTP export


def test_receiver_http_rejects_what_is_not_an_otlp_protobuf_export() -> None:
    with OTLPReceiver("http") as receiver, httpx.Client(base_url=receiver.endpoint) as client:
        assert client.post("/v1/traces", content=b"{}", headers={"content-type": "application/json"}).status_code == 415
        assert (
            client.post("/v1/logs", content=b"", headers={"content-type": "application/x-protobuf"}).status_code == 404
        )
        bad_metrics = client.post("/v1/metrics", content=b"\xff", headers={"content-type": "application/x-protobuf"})
        assert bad_metrics.status_code == 400
        assert client.get("/v1/traces").status_code == 405
        bad = client.post("/v1/traces", content=b"\xff\xff", headers={"content-type": "application/x-protobuf"})
        assert bad.status_code == 400
        empty = client.post("/v1/traces", content=b"", headers={"content-type": "application/x-protobuf"})
        assert empty.status_code == 200
        assert empty.headers["content-type"] == "application/x-protobuf"
        with pytest.raises(TimeoutError, match="received 0 of 1 spans"):
            receiver.wait_for(1, timeout=0.05)
        assert len(receiver.headers) == 1  # the empty export
        receiver.clear()
        assert receiver.headers == [] and receiver.spans == []
