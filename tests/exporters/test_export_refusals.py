"""Poison records: a sink that refuses some records for good drops those (counted, logged) and takes the rest.

Against real servers: PostgreSQL refusing a NUL in a model name, and an OTLP/HTTP collector on
loopback answering 400 (never retried, the batch is split to find the span it refuses) and 503
(retried until it takes the spans).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, ExportPipeline, create_gateway
from llm_obs_middleware.config.settings import OTLPConfig, QueueConfig
from llm_obs_middleware.errors import PermanentExportError, RetryableExportError
from llm_obs_middleware.exporters import OTLPSink
from llm_obs_middleware.testing import create_fake_provider

from ..conftest import config_dict
from .conftest import RecordFactory, require_psycopg
from .test_pipeline import FAST, GatedSink, finished_exchange

POISON = "poison-model"


@pytest.fixture(autouse=True)
def _plain_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name in ("ENDPOINT", "HEADERS", "PROTOCOL", "CERTIFICATE", "INSECURE", "COMPRESSION"):
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{name}", raising=False)
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_TRACES_{name}", raising=False)


class RefusingSink(GatedSink):
    """Refuses (for good) any batch holding a record of the poison model, as a database refusing a value would."""

    def __init__(self, *, whole_batch: bool = False) -> None:
        super().__init__("refusing", open_gate=True)
        self.whole_batch = whole_batch
        self.calls = 0

    async def export(self, records: Any) -> None:
        self.calls += 1
        if any(record.requested_model == POISON for record in records):
            raise PermanentExportError("the sink refused a value", whole_batch=self.whole_batch)
        await super().export(records)


def poisoned_exchanges(count: int, poisoned: set[int]) -> list[Any]:
    exchanges = [finished_exchange(n) for n in range(count)]
    for n in poisoned:
        exchanges[n].requested_model = POISON
    return exchanges


async def test_a_refused_batch_is_split_and_only_the_refused_records_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = RefusingSink()
    pipeline = ExportPipeline([sink], queue=QueueConfig(**{**FAST, "batch_size": 64}))
    with caplog.at_level(logging.ERROR, logger="llm_obs_middleware.export"):
        for exchange in poisoned_exchanges(64, {5, 40}):
            pipeline.submit(exchange)
        await asyncio.wait_for(pipeline.flush(), 10)
        await pipeline.close()
    assert sorted(sink.models) == sorted(f"m{n}" for n in range(64) if n not in {5, 40})
    assert pipeline.stats.rejected == {"refusing": 2}
    assert pipeline.stats.exported == {"refusing": 62}
    assert pipeline.stats.failed == {"refusing": 0}  # a refusal is not retried
    assert sink.calls <= 2 * 2 * 6 + 1  # halving: about two paths of log2(64) levels, not a call per record
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2  # one line per dropped record
    assert all(POISON not in line for line in refusals)  # naming the request by trace id, not its content


async def test_a_refusal_of_any_batch_drops_it_without_splitting() -> None:
    sink = RefusingSink(whole_batch=True)
    pipeline = ExportPipeline([sink], queue=QueueConfig(**{**FAST, "batch_size": 64}))
    for exchange in poisoned_exchanges(64, {0}):
        pipeline.submit(exchange)
    await asyncio.wait_for(pipeline.flush(), 10)
    await pipeline.close()
    assert pipeline.stats.rejected == {"refusing": 64}
    assert sink.calls == 1


async def test_postgres_refusing_a_nul_in_a_model_name_loses_only_that_record(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    psycopg = require_psycopg()
    data = config_dict()
    data["exporters"]["log_store"] = {"url": postgres_url}
    data["exporters"]["prometheus"] = {"enabled": True}
    data["default_provider"] = "openai"  # the NUL-named model reaches the provider, and a record
    registry = CollectorRegistry()
    fake = create_fake_provider()
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        gateway = create_gateway(Config.from_dict(data), client=upstream, registry=registry)
        await gateway.startup()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
                with caplog.at_level(logging.ERROR, logger="llm_obs_middleware.export"):
                    for model in ["gpt-4o-mini", "gpt-4o-mini\x00secret-suffix", "gpt-4o-mini", "gpt-4o-mini"]:
                        await client.post("/v1/chat/completions", json={"model": model, **chat})
                    # Before the fix the store raised on every attempt of the batch: this never returned.
                    await asyncio.wait_for(gateway.pipeline.flush(), 30)
                    # The sink is not wedged: what comes next is stored too.
                    await client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", **chat})
                    await asyncio.wait_for(gateway.pipeline.flush(), 30)
        finally:
            await gateway.shutdown()
    with psycopg.connect(postgres_url) as conn:
        models = [row[0] for row in conn.execute("SELECT requested_model FROM llm_records")]
    assert models == ["gpt-4o-mini"] * 4
    rejected = registry.get_sample_value("llm_obs_export_records_total", {"sink": "log_store", "result": "rejected"})
    assert rejected == 1
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "log_store" in line and "DataError" in line and "secret-suffix" not in line


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint answering 503 to the first ``busy`` requests, then 400 to any request holding a
    span of the poison model (an attribute value it will never take), else 200."""

    busy: list[int]
    received: list[ExportTraceServiceRequest]
    statuses: list[int]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.busy[0] > 0:
            self.busy[0] -= 1
            status = 503
        elif POISON.encode() in body:
            status = 400
        else:
            status = 200
            self.received.append(ExportTraceServiceRequest.FromString(body))
        self.statuses.append(status)
        self.send_response(status)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@pytest.fixture
def collector() -> Iterator[type[_Collector]]:
    handler = type("Handler", (_Collector,), {"busy": [2], "received": [], "statuses": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_otlp_503_is_retried_and_400_drops_only_the_refused_span(collector: Any) -> None:
    sink = OTLPSink(OTLPConfig(endpoint=collector.url, timeout=2))
    pipeline = ExportPipeline([sink], queue=QueueConfig(**{**FAST, "batch_size": 16}))
    for exchange in poisoned_exchanges(16, {9}):
        pipeline.submit(exchange)
    await asyncio.wait_for(pipeline.flush(), 20)
    await pipeline.close()
    models = sorted(
        attribute.value.string_value
        for request in collector.received
        for span in request.resource_spans[0].scope_spans[0].spans
        for attribute in span.attributes
        if attribute.key == "gen_ai.request.model"
    )
    assert models == sorted(f"m{n}" for n in range(16) if n != 9)
    assert collector.statuses[:2] == [503, 503]  # retried...
    assert 400 in collector.statuses  # ...and the refusal split, not retried
    assert pipeline.stats.rejected == {"otlp": 1}
    assert pipeline.stats.failed == {"otlp": 32}  # the two 503 attempts of the whole batch


@pytest.mark.parametrize(
    ("status", "error", "whole_batch"),
    [
        (503, RetryableExportError, None),
        (429, RetryableExportError, None),
        (400, PermanentExportError, False),
        (404, PermanentExportError, True),
        (500, PermanentExportError, True),  # the spec retries 502/503/504 only
    ],
)
async def test_otlp_http_status_classification(
    collector: Any, record_factory: RecordFactory, status: int, error: type[Exception], whole_batch: bool | None
) -> None:
    collector.busy[0] = 0
    sink = OTLPSink(OTLPConfig(endpoint=collector.url, timeout=2))
    collector.do_POST = _answer(status)
    try:
        with pytest.raises(error) as raised:
            await sink.export([record_factory()])
    finally:
        await sink.close()
    if whole_batch is not None:
        assert isinstance(raised.value, PermanentExportError) and raised.value.whole_batch is whole_batch


def _answer(status: int) -> Any:
    def do_POST(self: BaseHTTPRequestHandler) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    return do_POST


@pytest.fixture
def grpc_collector() -> Iterator[tuple[str, list[tuple[Any, bool]]]]:
    """An OTLP/gRPC endpoint that fails every export with the next (status code, with RetryInfo) given."""
    from concurrent import futures

    import grpc  # type: ignore[import-untyped]
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    answers: list[tuple[Any, bool]] = []

    class Refusing(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            code, retry_info = answers.pop(0)
            if retry_info:
                detail = any_pb2.Any()
                detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1)))
                status = status_pb2.Status(code=code.value[0], message="slow down", details=[detail])
                context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
            context.abort(code, "refused")

    executor = futures.ThreadPoolExecutor(2)
    server = grpc.server(executor)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Refusing(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", answers
    finally:
        server.stop(0).wait(5)
        executor.shutdown(wait=True)


@pytest.mark.parametrize(
    ("code", "retry_info", "error", "whole_batch"),
    [
        ("UNAVAILABLE", False, RetryableExportError, None),
        ("DEADLINE_EXCEEDED", False, RetryableExportError, None),
        ("RESOURCE_EXHAUSTED", True, RetryableExportError, None),  # the server asks to retry later
        ("RESOURCE_EXHAUSTED", False, PermanentExportError, True),  # a quota: retrying cannot help
        ("INVALID_ARGUMENT", False, PermanentExportError, False),
        ("UNAUTHENTICATED", False, PermanentExportError, True),
    ],
)
async def test_otlp_grpc_status_classification(
    grpc_collector: tuple[str, list[tuple[Any, bool]]],
    record_factory: RecordFactory,
    code: str,
    retry_info: bool,
    error: type[Exception],
    whole_batch: bool | None,
) -> None:
    import grpc

    endpoint, answers = grpc_collector
    answers.append((getattr(grpc.StatusCode, code), retry_info))
    sink = OTLPSink(OTLPConfig(endpoint=endpoint, protocol="grpc", timeout=5))
    try:
        with pytest.raises(error) as raised:
            await sink.export([record_factory()])
    finally:
        await sink.close()
    assert code in str(raised.value)
    if whole_batch is not None:
        assert isinstance(raised.value, PermanentExportError) and raised.value.whole_batch is whole_batch
