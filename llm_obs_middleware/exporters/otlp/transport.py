"""Sending an encoded ``ExportTraceServiceRequest`` to the collector: OTLP/HTTP (httpx) or OTLP/gRPC.

Both take the resolved settings (:mod:`._otlp_settings`): endpoint, headers, timeout, TLS certificate
or plaintext, compression. They make one attempt per call and raise :class:`~..errors.ExportError`
when the collector did not take the spans; the export pipeline retries the batch (the stock exporters'
own retry loops would hold a worker thread for up to their whole timeout instead). Calls are
blocking: the sink runs them in a thread, one at a time.

What the spec says may be retried raises :class:`~..errors.RetryableExportError`: no answer at all,
HTTP 429/502/503/504, gRPC UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED, OUT_OF_RANGE,
DATA_LOSS, and RESOURCE_EXHAUSTED when the server sent a ``RetryInfo``. Every other refusal raises
:class:`~..errors.PermanentExportError`: 400/413 and gRPC INVALID_ARGUMENT may be one bad span (the
pipeline splits the batch to find it), the rest (401, 404, UNIMPLEMENTED...) refuse any batch.

Error messages name the endpoint (without any user info) and the status, never a header value.
https://opentelemetry.io/docs/specs/otlp/#otlphttp and https://opentelemetry.io/docs/specs/otlp/#otlpgrpc
"""

from __future__ import annotations

import gzip
import ssl
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

import httpx

from llm_obs_middleware.errors import PermanentExportError, RetryableExportError

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from llm_obs_middleware.exporters.otlp.settings import OTLPSettings

__all__ = ["GRPCTraceTransport", "HTTPTraceTransport", "TraceTransport", "build_trace_transport"]

# https://opentelemetry.io/docs/specs/otlp/#failures-1 (HTTP) and #failures (gRPC)
_RETRYABLE_STATUS: Final = frozenset({429, 502, 503, 504})
_CONTENT_STATUS: Final = frozenset({400, 413, 422})
"""Refusals that may be caused by one record or by the batch's size: worth splitting the batch."""
_RETRYABLE_CODES: Final = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "OUT_OF_RANGE", "DATA_LOSS"}
)
_CONTENT_CODES: Final = frozenset({"INVALID_ARGUMENT"})
_RETRY_INFO: Final = b"google.rpc.RetryInfo"
"""In a ``grpc-status-details-bin`` trailer: the server asks to retry (RESOURCE_EXHAUSTED is then retryable)."""


def _user_agent() -> str:
    from llm_obs_middleware import __version__  # here: the package is fully imported by the time a transport is built

    return f"llm-obs-middleware/{__version__}"


class TraceTransport(Protocol):
    """Delivers one export request; raises :class:`~..errors.ExportError` (retryable or permanent) when it was
    not taken."""

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
            raise RetryableExportError(f"OTLP/HTTP export to {self._where} failed: {type(exc).__name__}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        message = f"OTLP/HTTP export to {self._where} answered {status}"
        if status in _RETRYABLE_STATUS:
            raise RetryableExportError(message)
        raise PermanentExportError(message, whole_batch=status not in _CONTENT_STATUS)

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
            message = f"OTLP/gRPC export to {self._where} failed: {name}"
            if code is None or name in _RETRYABLE_CODES or (name == "RESOURCE_EXHAUSTED" and _asks_retry(exc)):
                raise RetryableExportError(message) from exc
            raise PermanentExportError(message, whole_batch=name not in _CONTENT_CODES) from exc

    def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()


def _asks_retry(exc: Any) -> bool:
    """The call's trailers carry a ``google.rpc.RetryInfo`` detail."""
    trailers = exc.trailing_metadata() if callable(getattr(exc, "trailing_metadata", None)) else None
    return any(
        key == "grpc-status-details-bin" and isinstance(value, bytes) and _RETRY_INFO in value
        for key, value in trailers or ()
    )
