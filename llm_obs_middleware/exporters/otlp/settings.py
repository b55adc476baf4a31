"""Where OTLP data goes: the ``exporters.otlp`` block, completed by the standard environment variables.

Each setting is taken from the first of, in order:

1. the ``exporters.otlp`` config field (``endpoint``, ``protocol``, ``headers``, ``insecure``,
   ``certificate``);
2. the signal-specific variable: ``OTEL_EXPORTER_OTLP_TRACES_*`` (``..._METRICS_*`` for metrics);
3. the general variable ``OTEL_EXPORTER_OTLP_*``;
4. the OTLP default (``http``, ``http://localhost:4318`` or ``http://localhost:4317`` for gRPC).

Compression (``gzip``, or ``deflate`` over HTTP; ``none`` by default) comes from the variables only
(``OTEL_EXPORTER_OTLP_TRACES_COMPRESSION``, then ``OTEL_EXPORTER_OTLP_COMPRESSION``), as the stock
exporters read it.

Headers are merged rather than replaced: the variable's headers, then the config's (a header named
in both takes the config's value). As the OTLP exporter specification says, an HTTP endpoint from
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or a bare ``endpoint`` in the config) gets ``/v1/traces`` appended,
while a signal-specific one is used as it is.
https://opentelemetry.io/docs/specs/otel/protocol/exporter/

The resource: ``service_name`` from the config wins, then ``OTEL_SERVICE_NAME``, then ``service.name``
in ``OTEL_RESOURCE_ATTRIBUTES``, then ``llm-obs``; ``exporters.otlp.resource_attributes`` win over
``OTEL_RESOURCE_ATTRIBUTES`` key by key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple
from urllib.parse import urlsplit

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.util.re import parse_env_headers

from llm_obs_middleware.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter

    from llm_obs_middleware.config.settings import OTLPConfig

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "OTLPSettings",
    "build_metric_exporter",
    "build_resource",
    "build_span_exporter",
    "resolve_settings",
]

DEFAULT_SERVICE_NAME: Final = "llm-obs"
Signal = Literal["traces", "metrics"]
_PROTOCOLS: Final = {"grpc": "grpc", "http/protobuf": "http", "http": "http"}
_DEFAULT_ENDPOINTS: Final = {"http": "http://localhost:4318", "grpc": "http://localhost:4317"}


class OTLPSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The resolved settings of one signal's exporter (what is actually used)."""

    endpoint: str
    """The full URL: with the signal path for HTTP (``.../v1/traces``), ``scheme://host:port`` for gRPC."""
    protocol: Literal["http", "grpc"]
    headers: dict[str, str]
    timeout: float
    insecure: bool
    """gRPC only: a plaintext channel (``True``) or TLS."""
    certificate: str | None
    """PEM file of the CA (or self-signed certificate) the collector's certificate is checked against."""
    compression: Literal["gzip", "deflate"] | None = None
    """How request bodies are compressed (``None``: not at all)."""


def resolve_settings(
    config: OTLPConfig, signal: Signal = "traces", environ: Mapping[str, str] | None = None
) -> OTLPSettings:
    """The settings for ``signal``: the config first, then the environment, then the OTLP defaults.

    Raises:
        ConfigurationError: an unsupported protocol, contradictory TLS options, or a certificate file
            that does not exist (each named).
    """
    env = _OTLPEnvironment(os.environ if environ is None else environ, f"OTEL_EXPORTER_OTLP_{signal.upper()}_")
    protocol = _protocol(config, env)
    endpoint, exact = _endpoint(config.endpoint, protocol, env.variable("ENDPOINT"), env.specific)
    if protocol == "http" and not exact:
        endpoint = _with_signal_path(endpoint, signal)
    headers: dict[str, str] = {}
    if (found := env.variable("HEADERS")) is not None:
        headers.update(parse_env_headers(found[1], liberal=True))
    headers.update(config.headers)
    return OTLPSettings(
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        timeout=config.timeout,
        insecure=_insecure(config, protocol, urlsplit(endpoint).scheme, env),
        certificate=_certificate(config, env),
        compression=_compression(protocol, env),
    )


class _OTLPEnvironment(NamedTuple):
    """The ``OTEL_EXPORTER_OTLP_*`` variables of one signal."""

    env: Mapping[str, str]
    specific: str
    """The signal's own prefix (``OTEL_EXPORTER_OTLP_TRACES_``), which wins over the generic one."""

    def variable(self, name: str) -> tuple[str, str] | None:
        """``(variable, value)`` of the signal's own variable, else the generic one; ``None`` if neither is set."""
        for key in (self.specific + name, "OTEL_EXPORTER_OTLP_" + name):
            if value := self.env.get(key, "").strip():
                return key, value
        return None


def _protocol(config: OTLPConfig, env: _OTLPEnvironment) -> Literal["http", "grpc"]:
    """The configured protocol, else ``OTEL_EXPORTER_OTLP_*PROTOCOL``, else HTTP."""
    if config.protocol is not None:
        return config.protocol
    if (found := env.variable("PROTOCOL")) is None:
        return "http"
    key, value = found
    if value not in _PROTOCOLS:
        raise ConfigurationError(f"{key}={value!r}: supported are grpc and http/protobuf")
    return "grpc" if _PROTOCOLS[value] == "grpc" else "http"


def _insecure(config: OTLPConfig, protocol: str, scheme: str, env: _OTLPEnvironment) -> bool:
    """Plaintext or TLS: the config (checked against the endpoint's scheme), else the scheme, else the variable."""
    if config.insecure is not None:
        if config.insecure and scheme == "https":
            raise ConfigurationError(
                "exporters.otlp.insecure: true contradicts the https:// endpoint (use http:// for plaintext)"
            )
        if protocol == "http" and config.insecure is False and scheme == "http":
            raise ConfigurationError(
                "exporters.otlp.insecure: false needs an https:// endpoint over http (the scheme decides)"
            )
        return config.insecure
    if scheme == "https":
        return False
    if (found := env.variable("INSECURE")) is not None and protocol == "grpc":
        return found[1].lower() == "true"
    return scheme != "https"


def _certificate(config: OTLPConfig, env: _OTLPEnvironment) -> str | None:
    """The CA file from the config, else the variable; it must exist."""
    certificate = config.certificate
    source = "exporters.otlp.certificate"
    if certificate is None and (found := env.variable("CERTIFICATE")) is not None:
        source, certificate = found
    if certificate is not None and not Path(certificate).is_file():
        raise ConfigurationError(f"{source}: no certificate file at {certificate}")
    return certificate


def _compression(protocol: str, env: _OTLPEnvironment) -> Literal["gzip", "deflate"] | None:
    """The request compression named by ``OTEL_EXPORTER_OTLP_*COMPRESSION`` (``None``: none)."""
    if (found := env.variable("COMPRESSION")) is None:
        return None
    key, value = found
    supported = ("gzip",) if protocol == "grpc" else ("gzip", "deflate")
    if value.lower() in supported:
        return "gzip" if value.lower() == "gzip" else "deflate"
    if value.lower() != "none":
        raise ConfigurationError(f"{key}={value!r}: supported over {protocol} are none, {', '.join(supported)}")
    return None


def _endpoint(configured: str | None, protocol: str, found: tuple[str, str] | None, specific: str) -> tuple[str, bool]:
    """The endpoint and whether it is used exactly as given (a signal-specific variable)."""
    if configured is not None:
        return configured, False
    if found is not None:
        key, value = found
        return value, key.startswith(specific)
    return _DEFAULT_ENDPOINTS[protocol], False


def _with_signal_path(endpoint: str, signal: Signal) -> str:
    path = urlsplit(endpoint).path
    if path in ("", "/"):
        return endpoint.rstrip("/") + f"/v1/{signal}"
    for other in ("traces", "metrics"):
        # A config endpoint naming the traces path also tells where the metrics go (and back).
        if path.endswith(f"/v1/{other}"):
            return endpoint[: -len(other)] + signal
    return endpoint


def build_span_exporter(settings: OTLPSettings) -> SpanExporter:
    """The stock OTLP span exporter (HTTP/protobuf or gRPC) for ``settings``."""
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCExporter

        return GRPCExporter(
            endpoint=settings.endpoint,
            insecure=settings.insecure,
            credentials=_grpc_credentials(settings),
            headers=settings.headers,
            timeout=settings.timeout,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter

    return HTTPExporter(
        endpoint=settings.endpoint,
        headers=settings.headers,
        timeout=settings.timeout,
        certificate_file=settings.certificate,
    )


def build_metric_exporter(settings: OTLPSettings) -> MetricExporter:
    """The stock OTLP metric exporter for ``settings`` (histograms explicit-bucket, cumulative)."""
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GRPCExporter

        return GRPCExporter(
            endpoint=settings.endpoint,
            insecure=settings.insecure,
            credentials=_grpc_credentials(settings),
            headers=settings.headers,
            timeout=settings.timeout,
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HTTPExporter

    return HTTPExporter(
        endpoint=settings.endpoint,
        headers=settings.headers,
        timeout=settings.timeout,
        certificate_file=settings.certificate,
    )


def _grpc_credentials(settings: OTLPSettings) -> Any:
    """TLS credentials trusting ``certificate`` (``None``: the system roots, or plaintext when insecure)."""
    if settings.insecure or settings.certificate is None:
        return None
    import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

    return grpc.ssl_channel_credentials(root_certificates=Path(settings.certificate).read_bytes())


def build_resource(service_name: str | None, attributes: Mapping[str, str] | None = None) -> Resource:
    """The resource of exported telemetry (precedence in the module docstring)."""
    explicit: dict[str, str] = dict(attributes or {})
    if service_name:
        explicit["service.name"] = service_name
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME under the explicit attributes.
    resource = Resource.create(explicit)
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    return resource
