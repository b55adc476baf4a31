"""A real OTLP trace receiver on loopback, for tests and benchmarks: what a collector would get.

:class:`OTLPReceiver` serves the OTLP trace service over HTTP (``POST /v1/traces``, binary protobuf,
under uvicorn in a background thread) and/or over gRPC (``TraceService/Export`` with grpcio), decodes
every ``ExportTraceServiceRequest`` into plain :class:`ReceivedSpan` dicts and keeps them, with the
headers (HTTP) or metadata (gRPC) each export came with::

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
from collections.abc import Iterable, Mapping
from concurrent import futures
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeAlias, TypedDict

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from ..types import Receive, Scope, Send
from .server import BackgroundServer

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceServicer

__all__ = ["OTLPReceiver", "ReceivedSpan", "ReceivedValue"]

ReceivedValue: TypeAlias = "str | bool | int | float | bytes | list[ReceivedValue] | dict[str, ReceivedValue] | None"
"""An OTLP ``AnyValue`` as Python: arrays become lists, key-value lists dicts, an empty value ``None``."""

Protocol = Literal["http", "grpc"]

_TRACES_PATH: Final = "/v1/traces"
_PROTOBUF: Final = "application/x-protobuf"
# Span.SpanKind and Status.StatusCode numbers, named without their proto prefixes.
_KINDS: Final = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS_CODES: Final = {0: "UNSET", 1: "OK", 2: "ERROR"}


class ReceivedSpan(TypedDict):
    """One span as the receiver decoded it (ids are lowercase hex, times Unix nanoseconds)."""

    protocol: Protocol
    """How it arrived: ``http`` or ``grpc``."""
    name: str
    kind: str
    """``CLIENT``, ``SERVER``, ``INTERNAL``, ``PRODUCER``, ``CONSUMER`` or ``UNSPECIFIED``."""
    trace_id: str
    span_id: str
    parent_span_id: str
    """Empty for a root span."""
    start_unix_nano: int
    end_unix_nano: int
    attributes: dict[str, ReceivedValue]
    status_code: str
    """``UNSET``, ``OK`` or ``ERROR``."""
    status_message: str
    resource: dict[str, ReceivedValue]
    """Attributes of the span's resource (``service.name``, ``telemetry.sdk.*``...)."""
    scope: str
    """Name of the instrumentation scope."""


class OTLPReceiver:
    """An OTLP/HTTP and/or OTLP/gRPC trace receiver on a free loopback port.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Every export is answered
    with an empty (fully successful) ``ExportTraceServiceResponse``.

    Args:
        protocol: ``http``, ``grpc``, or ``both`` (then read :attr:`http_endpoint` and
            :attr:`grpc_endpoint`; :attr:`endpoint` is for a single protocol).
        host: interface to bind.
        grpc_workers: threads serving gRPC calls.
    """

    def __init__(
        self, protocol: Literal["http", "grpc", "both"] = "http", *, host: str = "127.0.0.1", grpc_workers: int = 4
    ) -> None:
        self.protocol = protocol
        self.host = host
        self._grpc_workers = grpc_workers
        self._changed = threading.Condition()
        self._spans: list[ReceivedSpan] = []
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

    def clear(self) -> None:
        """Forget the spans and headers received so far."""
        with self._changed:
            self._spans.clear()
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
        """URL of the OTLP/gRPC receiver, e.g. ``http://127.0.0.1:54322`` (plaintext)."""
        if self._grpc is None:
            raise RuntimeError("the OTLP/gRPC receiver is not running")
        return f"http://{_url_host(self.host)}:{self._grpc_port}"

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
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_trace_service(self), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port(f"{_url_host(self.host)}:{self._grpc_port}")
        if not port:
            raise RuntimeError(f"cannot bind an OTLP/gRPC port on {self.host}")
        server.start()
        self._grpc, self._grpc_port = server, int(port)

    def _collect(
        self, request: trace_service_pb2.ExportTraceServiceRequest, protocol: Protocol, headers: dict[str, str]
    ) -> None:
        spans: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(_decode(span, protocol, resource, scope_spans.scope.name))
        with self._changed:
            self._spans.extend(spans)
            self._headers.append(headers)
            self._changed.notify_all()


class _HTTPApp:
    """The OTLP/HTTP side, an ASGI app (a class, so uvicorn sees ASGI 3 rather than a bound method)."""

    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if scope["path"] != _TRACES_PATH:
            await _respond(send, 404, b"only /v1/traces is served", "text/plain")
            return
        if scope["method"] != "POST":
            await _respond(send, 405, b"POST only", "text/plain")
            return
        if headers.get("content-type", "").split(";")[0].strip().lower() != _PROTOBUF:
            await _respond(send, 415, b"send application/x-protobuf", "text/plain")
            return
        body = b"".join(chunks)
        try:
            encoding = headers.get("content-encoding", "identity").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
        except Exception as exc:  # gzip, zlib and protobuf each raise their own error type
            await _respond(send, 400, f"undecodable export: {exc}".encode(), "text/plain")
            return
        self._receiver._collect(request, "http", headers)
        await _respond(send, 200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString(), _PROTOBUF)


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


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _decode(span: Span, protocol: Protocol, resource: Mapping[str, ReceivedValue], scope: str) -> ReceivedSpan:
    return {
        "protocol": protocol,
        "name": span.name,
        "kind": _KINDS.get(int(span.kind), str(span.kind)),
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "start_unix_nano": span.start_time_unix_nano,
        "end_unix_nano": span.end_time_unix_nano,
        "attributes": _attributes(span.attributes),
        "status_code": _STATUS_CODES.get(int(span.status.code), str(span.status.code)),
        "status_message": span.status.message,
        "resource": dict(resource),
        "scope": scope,
    }


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, ReceivedValue]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> ReceivedValue:
    match value.WhichOneof("value"):
        case "string_value":
            return value.string_value
        case "bool_value":
            return value.bool_value
        case "int_value":
            return value.int_value
        case "double_value":
            return value.double_value
        case "bytes_value":
            return value.bytes_value
        case "array_value":
            return [_value(item) for item in value.array_value.values]
        case "kvlist_value":
            return _attributes(value.kvlist_value.values)
        case _:  # unset, or a profiles-only string-table index
            return None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
