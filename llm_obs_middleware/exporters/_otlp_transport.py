"""Sending an encoded ``ExportTraceServiceRequest`` to the collector: OTLP/HTTP (httpx) or OTLP/gRPC.

Both take the resolved settings (:mod:`._otlp_settings`): endpoint, headers, timeout, TLS certificate
or plaintext, compression. They make one attempt per call and raise :class:`~..errors.ExportError`
when the collector did not take the spans; the export pipeline retries the batch (the stock exporters'
own retry loops would hold a worker thread for up to their whole timeout instead). Calls are
blocking: the sink runs them in a thread, one at a time.

Error messages name the endpoint (without any user info) and the status, never a header value.
https://opentelemetry.io/docs/specs/otlp/#otlphttp and https://opentelemetry.io/docs/specs/otlp/#otlpgrpc
"""

from __future__ import annotations

import gzip
import ssl
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx

from ..errors import ExportError

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from ._otlp_settings import OTLPSettings

__all__ = ["GRPCTraceTransport", "HTTPTraceTransport", "TraceTransport", "build_trace_transport"]


def _user_agent() -> str:
    from .. import __version__  # here: the package is fully imported by the time a transport is built

    return f"llm-obs-middleware/{__version__}"


class TraceTransport(Protocol):
    """Delivers one export request; raises :class:`~..errors.ExportError` when it was not taken."""

    def send(self, request: ExportTraceServiceRequest) -> None: ...

    def close(self) -> None: ...


def build_trace_transport(settings: OTLPSettings) -> TraceTransport:
    """The transport of ``settings.protocol``."""
    if settings.protocol == "grpc":
        return GRPCTraceTransport(settings)
    return HTTPTraceTransport(settings)


def _safe_url(url: str) -> str:
    """``url`` without user info (the rest names the collector in errors and logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class HTTPTraceTransport:
    """OTLP/HTTP with binary protobuf: ``POST`` to the endpoint (``.../v1/traces``), any 2xx is success."""

    def __init__(self, settings: OTLPSettings) -> None:
        self._url = settings.endpoint
        self._where = _safe_url(settings.endpoint)
        self._compression = settings.compression
        headers = {"content-type": "application/x-protobuf", "user-agent": _user_agent()}
        if settings.compression is not None:
            headers["content-encoding"] = settings.compression
        headers.update(settings.headers)  # the configured headers win, as with the stock exporter
        verify: ssl.SSLContext | bool = True
        if settings.certificate is not None:
            verify = ssl.create_default_context(cafile=settings.certificate)
        self._client = httpx.Client(headers=headers, timeout=settings.timeout, verify=verify)

    def send(self, request: ExportTraceServiceRequest) -> None:
        body = request.SerializeToString()
        if self._compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        elif self._compression == "deflate":
            body = zlib.compress(body)
        try:
            response = self._client.post(self._url, content=body)
        except httpx.HTTPError as exc:  # connection refused, TLS failure, timeout...
            raise ExportError(f"OTLP/HTTP export to {self._where} failed: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            raise ExportError(f"OTLP/HTTP export to {self._where} answered {response.status_code}")

    def close(self) -> None:
        self._client.close()


class GRPCTraceTransport:
    """OTLP/gRPC through the generated ``TraceServiceStub``, on a channel built from the settings."""

    def __init__(self, settings: OTLPSettings) -> None:
        import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

        self._grpc = grpc
        parts = urlsplit(settings.endpoint)
        self._target = parts.netloc.rpartition("@")[2] or settings.endpoint  # host:port, as the stock exporter
        self._where = _safe_url(settings.endpoint)
        self._credentials: Any = None
        if not settings.insecure:
            roots = Path(settings.certificate).read_bytes() if settings.certificate is not None else None
            self._credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        self._compression = grpc.Compression.Gzip if settings.compression == "gzip" else None
        # gRPC metadata keys are lowercase.
        self._metadata = tuple((name.lower(), value) for name, value in settings.headers.items())
        self._timeout = settings.timeout
        self._channel: Any = None
        self._stub: Any = None

    def _connect(self) -> Any:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

        options = [("grpc.primary_user_agent", _user_agent())]
        grpc = self._grpc
        if self._credentials is None:
            channel = grpc.insecure_channel(self._target, options=options, compression=self._compression)
        else:
            channel = grpc.secure_channel(
                self._target, self._credentials, options=options, compression=self._compression
            )
        self._channel = channel
        self._stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        return self._stub

    def send(self, request: ExportTraceServiceRequest) -> None:
        stub = self._stub or self._connect()
        try:
            stub.Export(request, metadata=self._metadata, timeout=self._timeout)
        except self._grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            if code == self._grpc.StatusCode.UNAVAILABLE:
                # A fresh channel on the next export: the old one would wait out its reconnect backoff
                # (up to minutes) after a collector restart. The stock exporter does the same.
                self.close()
            name = code.name if code is not None else type(exc).__name__
            raise ExportError(f"OTLP/gRPC export to {self._where} failed: {name}") from exc

    def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()
