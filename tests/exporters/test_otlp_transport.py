"""The sink's own OTLP transports against the real loopback receiver: compression, refusals, restarts."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llm_obs_middleware.config.settings import OTLPConfig
from llm_obs_middleware.errors import ExportError
from llm_obs_middleware.exporters import OTLPSink
from llm_obs_middleware.testing import OTLPReceiver

from .conftest import RecordFactory
from .test_otlp_tls_env import self_signed

SECRET = "Bearer do-not-log-me"


@pytest.fixture(autouse=True)
def _plain_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name in ("ENDPOINT", "HEADERS", "PROTOCOL", "CERTIFICATE", "INSECURE", "COMPRESSION"):
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{name}", raising=False)
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_TRACES_{name}", raising=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("protocol", "variable", "compression"),
    [
        ("http", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ("http", "OTEL_EXPORTER_OTLP_COMPRESSION", "deflate"),
        ("grpc", "OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
    ],
)
async def test_compressed_exports_arrive(
    protocol: Literal["http", "grpc"],
    variable: str,
    compression: str,
    record_factory: RecordFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, compression)
    with OTLPReceiver(protocol) as receiver:
        sink = OTLPSink(OTLPConfig(endpoint=receiver.endpoint, protocol=protocol, headers={"x-tenant": "t1"}))
        try:
            await sink.export([record_factory(n=1), record_factory(n=2, status=500, outcome="upstream_error")])
        finally:
            await sink.close()
        spans = receiver.wait_for(2)
        headers = receiver.headers
    assert sorted(str(span["attributes"]["llm_obs.request_id"]) for span in spans) == ["req-1", "req-2"]
    assert [span["status_code"] for span in spans] == ["UNSET", "ERROR"]
    assert headers[0]["x-tenant"] == "t1"
    if protocol == "http":  # the receiver decompressed the body it was told was compressed
        assert headers[0]["content-encoding"] == compression
        assert headers[0]["content-type"] == "application/x-protobuf"


async def test_a_refusal_raises_export_error_naming_the_status_not_the_headers(record_factory: RecordFactory) -> None:
    with OTLPReceiver("http") as receiver:
        # The receiver serves /v1/traces only: another path is answered 404.
        endpoint = receiver.endpoint.replace("http://", "http://user:pa55word@") + "/v1/elsewhere"
        sink = OTLPSink(OTLPConfig(endpoint=endpoint, headers={"authorization": SECRET}))
        try:
            with pytest.raises(ExportError, match="answered 404") as refused:
                await sink.export([record_factory()])
        finally:
            await sink.close()
    assert receiver.spans == []
    message = str(refused.value)
    assert "/v1/elsewhere" in message
    assert SECRET not in message and "pa55word" not in message


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_no_collector_raises_export_error(
    protocol: Literal["http", "grpc"], record_factory: RecordFactory
) -> None:
    config = OTLPConfig(
        endpoint=f"http://127.0.0.1:{closed_port()}", protocol=protocol, headers={"authorization": SECRET}, timeout=2
    )
    sink = OTLPSink(config)
    try:
        with pytest.raises(ExportError) as failed:
            await sink.export([record_factory()])
    finally:
        await sink.close()
    assert SECRET not in str(failed.value)
    assert ("UNAVAILABLE" if protocol == "grpc" else "ConnectError") in str(failed.value)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_the_export_after_a_collector_restart_goes_through(
    protocol: Literal["http", "grpc"], record_factory: RecordFactory
) -> None:
    receiver = OTLPReceiver(protocol).start()
    sink = OTLPSink(OTLPConfig(endpoint=receiver.endpoint, protocol=protocol, timeout=2))
    try:
        await sink.export([record_factory(n=1)])
        receiver.stop()
        with pytest.raises(ExportError):
            await sink.export([record_factory(n=2)])
        receiver.start()  # the same port again
        await sink.export([record_factory(n=2)])
        spans = receiver.wait_for(2)
    finally:
        await sink.close()
        receiver.stop()
    assert [span["attributes"]["llm_obs.request_id"] for span in spans] == ["req-1", "req-2"]


class _TraceHandler(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append(ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@pytest.fixture
def https_collector(tmp_path: Path) -> Iterator[tuple[str, str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP trace endpoint over TLS with a self-signed certificate: (url, certificate, received)."""
    cert_file, key_file = self_signed(tmp_path)
    received: list[ExportTraceServiceRequest] = []
    handler = type("Handler", (_TraceHandler,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/v1/traces", cert_file, received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_http_over_tls_trusts_the_configured_certificate_only(
    https_collector: tuple[str, str, list[ExportTraceServiceRequest]], record_factory: RecordFactory
) -> None:
    url, certificate, received = https_collector
    untrusted = OTLPSink(OTLPConfig(endpoint=url, timeout=2))
    try:
        with pytest.raises(ExportError, match="ConnectError"):  # the system trust store does not know it
            await untrusted.export([record_factory(n=1)])
    finally:
        await untrusted.close()
    assert received == []
    trusting = OTLPSink(OTLPConfig(endpoint=url, certificate=certificate, timeout=2))
    try:
        await trusting.export([record_factory(n=2)])
    finally:
        await trusting.close()
    [request] = received
    [span] = request.resource_spans[0].scope_spans[0].spans
    assert span.name == "chat gpt-4o-mini"
