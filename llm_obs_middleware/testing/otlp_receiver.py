"""A real OTLP trace and metrics receiver on loopback, for tests and benchmarks: what a collector would get.

:class:`OTLPReceiver` serves the OTLP trace service over HTTP (``POST /v1/traces``, binary protobuf,
under uvicorn in a background thread) and/or over gRPC (``TraceService/Export`` with grpcio), decodes
every ``ExportTraceServiceRequest`` into plain :class:`ReceivedSpan` dicts and keeps them, with the
headers (HTTP) or metadata (gRPC) each export came with. Metric exports (``POST /v1/metrics``,
``MetricsService/Export``) are decoded into :class:`ReceivedMetricPoint` dicts the same way, and the
gRPC side can serve TLS (``tls=(cert_file, key_file)``)::

    with OTLPReceiver("grpc") as receiver:
        sink_config = OTLPConfig(endpoint=receiver.endpoint, protocol="grpc")
        ...
        [span] = receiver.wait_for(1)
        assert span["attributes"]["gen_ai.provider.name"] == "openai"

Nothing is mocked: exporters talk to it over a socket, exactly as to a collector. :meth:`OTLPReceiver.stop`
then :meth:`OTLPReceiver.start` is a collector outage: the receiver comes back on the same port(s)
and keeps what it had received. The HTTP side
accepts ``gzip``/``deflate`` bodies and answers ``415`` to anything but ``application/x-protobuf``
(OTLP/JSON encodes ids differently and is not decoded here).
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from concurrent import futures
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
from llm_obs_middleware.testing._otlp_decode import (
    Protocol,
    ReceivedMetricPoint,
    ReceivedSpan,
    ReceivedValue,
    decode_attributes,
    decode_span,
    metric_points,
)
from llm_obs_middleware.testing.server import BackgroundServer

if TYPE_CHECKING:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceServicer
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceServicer

__all__ = ["OTLPReceiver", "ReceivedMetricPoint", "ReceivedSpan", "ReceivedValue"]

_TRACES_PATH: Final = "/v1/traces"
_METRICS_PATH: Final = "/v1/metrics"
_PROTOBUF: Final = "application/x-protobuf"


class OTLPReceiver:
    """An OTLP/HTTP and/or OTLP/gRPC trace receiver on a free loopback port.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Every export is answered
    with an empty (fully successful) ``ExportTraceServiceResponse``.

    Args:
        protocol: ``http``, ``grpc``, or ``both`` (then read :attr:`http_endpoint` and
            :attr:`grpc_endpoint`; :attr:`endpoint` is for a single protocol).
        host: interface to bind.
        grpc_workers: threads serving gRPC calls.
        tls: ``(certificate_file, private_key_file)`` (PEM): the gRPC side then serves TLS only, and
            :attr:`grpc_endpoint` is an ``https://`` URL (clients must trust the certificate).
    """

    def __init__(
        self,
        protocol: Literal["http", "grpc", "both"] = "http",
        *,
        host: str = "127.0.0.1",
        grpc_workers: int = 4,
        tls: tuple[str, str] | None = None,
    ) -> None:
        if tls is not None and protocol == "http":
            raise ValueError("tls is served on the gRPC side: use protocol='grpc' or 'both'")
        self.protocol = protocol
        self.host = host
        self.tls = tls
        self._grpc_workers = grpc_workers
        self._changed = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._metrics: list[ReceivedMetricPoint] = []
        self._headers: list[dict[str, str]] = []
        self._http: BackgroundServer | None = None
        self._grpc: Any = None  # grpc.Server
        self._executor: futures.ThreadPoolExecutor | None = None
        self._http_port = 0
        self._grpc_port = 0

    # -- what arrived -------------------------------------------------------------------------------

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order (a copy)."""
        with self._changed:
            return list(self._spans)

    @property
    def headers(self) -> list[dict[str, str]]:
        """The request headers (HTTP) or invocation metadata (gRPC) of each export, lowercase keys."""
        with self._changed:
            return [dict(headers) for headers in self._headers]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedSpan]:
        """Block until at least ``count`` spans arrived and return them all; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._spans) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"received {len(self._spans)} of {count} spans within {timeout}s")
                self._changed.wait(remaining)
            return list(self._spans)

    @property
    def metrics(self) -> list[ReceivedMetricPoint]:
        """Every metric data point received so far (each export repeats cumulative points), in order."""
        with self._changed:
            return list(self._metrics)

    def latest_metrics(self, name: str, timeout: float = 5.0) -> list[ReceivedMetricPoint]:
        """The points of metric ``name`` from the most recent export that carried it (waiting for one)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(point["name"] == name for point in self._metrics):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {name} data point within {timeout}s")
                self._changed.wait(remaining)
            points = [point for point in self._metrics if point["name"] == name]
        last = max(point["time_unix_nano"] for point in points)
        return [point for point in points if point["time_unix_nano"] == last]

    def clear(self) -> None:
        """Forget the spans, metrics and headers received so far."""
        with self._changed:
            self._spans.clear()
            self._metrics.clear()
            self._headers.clear()

    # -- where to send ------------------------------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        """Base URL of the OTLP/HTTP receiver, e.g. ``http://127.0.0.1:54321`` (traces go to ``/v1/traces``)."""
        if self._http is None:
            raise RuntimeError("the OTLP/HTTP receiver is not running")
        return self._http.url

    @property
    def grpc_endpoint(self) -> str:
        """URL of the OTLP/gRPC receiver, e.g. ``http://127.0.0.1:54322`` (``https://`` with TLS)."""
        if self._grpc is None:
            raise RuntimeError("the OTLP/gRPC receiver is not running")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{_url_host(self.host)}:{self._grpc_port}"

    @property
    def endpoint(self) -> str:
        """The endpoint of the one protocol served (an exporter's ``endpoint``)."""
        if self.protocol == "both":
            raise RuntimeError("serving both protocols: use http_endpoint or grpc_endpoint")
        return self.http_endpoint if self.protocol == "http" else self.grpc_endpoint

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the port(s) and start serving; returns once exports can be accepted.

        The first start picks free ports; a start after :meth:`stop` binds the same ones again.
        """
        if self._http is not None or self._grpc is not None:
            raise RuntimeError("receiver already started")
        try:
            if self.protocol in ("http", "both"):
                server = BackgroundServer(_HTTPApp(self), host=self.host, port=self._http_port, lifespan="off")
                self._http = server.start()
                self._http_port = server.port
            if self.protocol in ("grpc", "both"):
                self._start_grpc()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers (in-flight gRPC calls get a second to finish)."""
        server, self._grpc = self._grpc, None
        executor, self._executor = self._executor, None
        http, self._http = self._http, None
        try:
            if server is not None:
                server.stop(grace=1.0).wait(5.0)
            if executor is not None:
                executor.shutdown(wait=True)
        finally:
            if http is not None:
                http.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the two transports -------------------------------------------------------------------------

    def _start_grpc(self) -> None:
        # Imported here: grpcio is only needed for gRPC, and the demo and CLI import this package.
        import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        self._executor = futures.ThreadPoolExecutor(self._grpc_workers, thread_name_prefix="otlp-grpc")
        server = grpc.server(self._executor)
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_trace_service(self), server)  # type: ignore[no-untyped-call]
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_metrics_service(self), server)  # type: ignore[no-untyped-call]
        address = f"{_url_host(self.host)}:{self._grpc_port}"
        if self.tls is None:
            port = server.add_insecure_port(address)
        else:
            cert_file, key_file = self.tls
            with open(cert_file, "rb") as cert, open(key_file, "rb") as key:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            port = server.add_secure_port(address, credentials)
        if not port:
            raise RuntimeError(f"cannot bind an OTLP/gRPC port on {self.host}")
        server.start()
        self._grpc, self._grpc_port = server, int(port)

    def _collect(
        self, request: trace_service_pb2.ExportTraceServiceRequest, protocol: Protocol, headers: dict[str, str]
    ) -> None:
        spans: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = decode_attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(decode_span(span, protocol, resource, scope_spans.scope.name))
        with self._changed:
            self._spans.extend(spans)
            self._headers.append(headers)
            self._changed.notify_all()

    def _collect_metrics(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, protocol: Protocol, headers: dict[str, str]
    ) -> None:
        points: list[ReceivedMetricPoint] = []
        for resource_metrics in request.resource_metrics:
            resource = decode_attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points.extend(metric_points(metric, protocol, resource, scope_metrics.scope.name))
        with self._changed:
            self._metrics.extend(points)
            self._headers.append(headers)
            self._changed.notify_all()


class _HTTPApp:
    """The OTLP/HTTP side, an ASGI app (a class, so uvicorn sees ASGI 3 rather than a bound method)."""

    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        if body is None:
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        refusal = _refusal(scope, headers)
        if refusal is not None:
            await _respond(send, *refusal, "text/plain")
            return
        try:
            encoding = headers.get("content-encoding", "identity").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if scope["path"] == _METRICS_PATH:
                metrics = metrics_service_pb2.ExportMetricsServiceRequest()
                metrics.ParseFromString(body)
            else:
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
        except Exception as exc:  # gzip, zlib and protobuf each raise their own error type
            await _respond(send, 400, f"undecodable export: {exc}".encode(), "text/plain")
            return
        if scope["path"] == _METRICS_PATH:
            self._receiver._collect_metrics(metrics, "http", headers)
            reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        else:
            self._receiver._collect(request, "http", headers)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        await _respond(send, 200, reply, _PROTOBUF)


async def _read_body(receive: Receive) -> bytes | None:
    """The request body; ``None`` if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _refusal(scope: Scope, headers: dict[str, str]) -> tuple[int, bytes] | None:
    """The status and reason a collector would refuse this request with (path, method, content type)."""
    if scope["path"] not in (_TRACES_PATH, _METRICS_PATH):
        return 404, b"only /v1/traces and /v1/metrics are served"
    if scope["method"] != "POST":
        return 405, b"POST only"
    if headers.get("content-type", "").split(";")[0].strip().lower() != _PROTOBUF:
        return 415, b"send application/x-protobuf"
    return None


def _trace_service(receiver: OTLPReceiver) -> TraceServiceServicer:
    """The generated ``TraceServiceServicer`` with an ``Export`` that hands the spans to ``receiver``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceServicer

    class TraceService(TraceServiceServicer):
        def Export(
            self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
        ) -> trace_service_pb2.ExportTraceServiceResponse:
            metadata: dict[str, str] = {}
            for key, value in context.invocation_metadata():
                metadata[key] = value if isinstance(value, str) else value.hex()  # binary ("-bin") metadata
            receiver._collect(request, "grpc", metadata)
            return trace_service_pb2.ExportTraceServiceResponse()

    return TraceService()


def _metrics_service(receiver: OTLPReceiver) -> MetricsServiceServicer:
    """The generated ``MetricsServiceServicer`` with an ``Export`` that hands the points to ``receiver``."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceServicer

    class MetricsService(MetricsServiceServicer):
        def Export(
            self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
        ) -> metrics_service_pb2.ExportMetricsServiceResponse:
            metadata = {
                key: value if isinstance(value, str) else value.hex() for key, value in context.invocation_metadata()
            }
            receiver._collect_metrics(request, "grpc", metadata)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    return MetricsService()


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
