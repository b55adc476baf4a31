"""Where OTLP data goes: the config first, then the standard OTEL_EXPORTER_OTLP_* variables, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_obs_middleware.config.settings import OTLPConfig
from llm_obs_middleware.errors import ConfigurationError
from llm_obs_middleware.exporters.otlp.settings import resolve_settings

EMPTY = OTLPConfig()


def test_defaults_without_config_or_environment() -> None:
    settings = resolve_settings(EMPTY, environ={})
    assert (settings.protocol, settings.endpoint, settings.headers) == ("http", "http://localhost:4318/v1/traces", {})
    grpc = resolve_settings(OTLPConfig(protocol="grpc"), environ={})
    assert (grpc.endpoint, grpc.insecure) == ("http://localhost:4317", True)
    assert resolve_settings(EMPTY, "metrics", environ={}).endpoint == "http://localhost:4318/v1/metrics"


def test_general_endpoint_gets_the_signal_path_and_specific_one_is_exact() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert resolve_settings(EMPTY, environ=env).endpoint == "http://collector:4318/v1/traces"
    assert resolve_settings(EMPTY, "metrics", environ=env).endpoint == "http://collector:4318/v1/metrics"
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://traces:9999/custom"
    assert resolve_settings(EMPTY, environ=env).endpoint == "http://traces:9999/custom"
    # The metrics signal does not read the traces variable.
    assert resolve_settings(EMPTY, "metrics", environ=env).endpoint == "http://collector:4318/v1/metrics"


def test_config_wins_over_every_variable() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://env:1/v1/traces",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20env,x-env=1",
    }
    config = OTLPConfig(endpoint="http://config:4318", protocol="http", headers={"authorization": "Bearer config"})
    settings = resolve_settings(config, environ=env)
    assert settings.protocol == "http"
    assert settings.endpoint == "http://config:4318/v1/traces"
    # Headers merge: the variable's, then the config's on top.
    assert settings.headers == {"authorization": "Bearer config", "x-env": "1"}


def test_protocol_and_headers_from_the_environment_signal_specific_first() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-general=1",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-traces=2",
    }
    settings = resolve_settings(EMPTY, environ=env)
    assert settings.protocol == "grpc" and settings.endpoint == "http://localhost:4317"
    assert settings.headers == {"x-traces": "2"}  # the specific variable replaces the general one
    assert resolve_settings(EMPTY, "metrics", environ=env).protocol == "http"


def test_unsupported_protocol_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        resolve_settings(EMPTY, environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_insecure_and_certificate(tmp_path: Path) -> None:
    cert = tmp_path / "ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    grpc_tls = OTLPConfig(endpoint="https://collector:4317", protocol="grpc", certificate=str(cert))
    settings = resolve_settings(grpc_tls, environ={"OTEL_EXPORTER_OTLP_INSECURE": "true"})
    assert (settings.insecure, settings.certificate) == (False, str(cert))  # https means TLS
    from_env = resolve_settings(
        OTLPConfig(endpoint="http://collector:4317", protocol="grpc"),
        environ={"OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false", "OTEL_EXPORTER_OTLP_CERTIFICATE": str(cert)},
    )
    assert (from_env.insecure, from_env.certificate) == (False, str(cert))
    with pytest.raises(ConfigurationError, match=r"exporters.otlp.insecure: true contradicts"):
        resolve_settings(OTLPConfig(endpoint="https://c:4317", protocol="grpc", insecure=True), environ={})
    with pytest.raises(ConfigurationError, match=r"OTEL_EXPORTER_OTLP_CERTIFICATE: no certificate file at /nope"):
        resolve_settings(EMPTY, environ={"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nope"})
    with pytest.raises(ConfigurationError, match=r"exporters.otlp.certificate: no certificate file"):
        resolve_settings(OTLPConfig(certificate=str(tmp_path / "missing.pem")), environ={})


def test_metrics_interval_must_be_positive() -> None:
    from llm_obs_middleware import Config

    with pytest.raises(ConfigurationError, match=r"exporters.otlp.metrics_interval_s: must be positive"):
        Config.from_dict({"exporters": {"otlp": {"metrics": True, "metrics_interval_s": 0}}})


def test_compression_from_the_environment_signal_specific_first() -> None:
    assert resolve_settings(EMPTY, environ={}).compression is None
    env = {"OTEL_EXPORTER_OTLP_COMPRESSION": "deflate", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "GZIP"}
    assert resolve_settings(EMPTY, environ=env).compression == "gzip"
    assert resolve_settings(EMPTY, "metrics", environ=env).compression == "deflate"
    assert resolve_settings(EMPTY, environ={"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}).compression is None
    grpc = OTLPConfig(protocol="grpc")
    assert resolve_settings(grpc, environ={"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}).compression == "gzip"


def test_unsupported_compression_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION='zstd'"):
        resolve_settings(EMPTY, environ={"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "zstd"})
    # The stock gRPC exporter knows gzip only.
    with pytest.raises(ConfigurationError, match=r"supported over grpc are none, gzip"):
        resolve_settings(OTLPConfig(protocol="grpc"), environ={"OTEL_EXPORTER_OTLP_COMPRESSION": "deflate"})
