"""OTLP over TLS and from the standard environment, against the real loopback receiver.

The TLS receiver serves OTLP/gRPC with a self-signed certificate made for the test (with the
``cryptography`` package when installed, else the ``openssl`` command); the exporter must trust it
through ``exporters.otlp.certificate`` or ``OTEL_EXPORTER_OTLP_CERTIFICATE``, and an exporter that
does not is refused.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.config.settings import OTLPConfig
from llm_obs_middleware.errors import ExportError
from llm_obs_middleware.exporters import OTLPSink
from llm_obs_middleware.testing import FakeProviderConfig, FakeProviderServer, OTLPReceiver

from ..conftest import config_dict
from .conftest import RecordFactory

CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def _plain_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name in ("ENDPOINT", "HEADERS", "PROTOCOL", "CERTIFICATE", "INSECURE"):
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{name}", raising=False)
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_TRACES_{name}", raising=False)


def self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for ``localhost`` and ``127.0.0.1`` and its key, as PEM files."""
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.fail("neither the cryptography package nor the openssl command is available")
        command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        command += ["-keyout", str(key_file), "-out", str(cert_file), "-days", "1", "-subj", "/CN=localhost"]
        command += ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        subprocess.run(
            command,
            check=True,
            capture_output=True,
        )
        return str(cert_file), str(key_file)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, str]:
    return self_signed(tmp_path)


@pytest.fixture
def tls_receiver(tls_files: tuple[str, str]) -> Iterator[OTLPReceiver]:
    with OTLPReceiver("grpc", tls=tls_files) as receiver:
        yield receiver


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FakeProviderConfig(prompt_tokens=3, completion_tokens=2)) as server:
        yield server


async def run_chats(data: dict[str, Any], count: int = 2) -> None:
    gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
    await gateway.startup()
    try:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            for _ in range(count):
                assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    finally:
        await gateway.shutdown()


async def test_grpc_over_tls_with_the_configured_certificate(
    tls_receiver: OTLPReceiver, tls_files: tuple[str, str], fake: FakeProviderServer, tmp_path: Path
) -> None:
    assert tls_receiver.endpoint.startswith("https://")
    data = config_dict(fake.url, tmp_path)
    data["exporters"]["otlp"] = {
        "endpoint": tls_receiver.endpoint,
        "protocol": "grpc",
        "certificate": tls_files[0],
        "headers": {"x-tenant": "t1"},
        "server_spans": False,
    }
    await run_chats(data)
    spans = tls_receiver.wait_for(4)  # two LLM spans, each with its attempt span
    assert sorted(span["kind"] for span in spans) == ["CLIENT", "CLIENT", "INTERNAL", "INTERNAL"]
    assert all(headers.get("x-tenant") == "t1" for headers in tls_receiver.headers)


async def test_certificate_from_the_environment(
    tls_receiver: OTLPReceiver,
    tls_files: tuple[str, str],
    fake: FakeProviderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Everything from the standard variables: an empty otlp block only switches the exporter on.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tls_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", tls_files[0])
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20env-token")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
    data = config_dict(fake.url, tmp_path)
    data["exporters"]["otlp"] = {"server_spans": False}
    await run_chats(data, count=1)
    [span] = [span for span in tls_receiver.wait_for(2) if span["kind"] == "CLIENT"]  # and its attempt
    assert span["protocol"] == "grpc"
    assert span["resource"]["service.name"] == "from-env"
    assert span["resource"]["deployment.environment.name"] == "staging"
    assert tls_receiver.headers[0]["authorization"] == "Bearer env-token"


async def test_an_untrusted_certificate_is_refused(tls_receiver: OTLPReceiver, record_factory: RecordFactory) -> None:
    # No certificate: the system trust store does not know the self-signed one, so the export fails.
    config = OTLPConfig(endpoint=tls_receiver.endpoint, protocol="grpc", timeout=2)
    sink = OTLPSink(config)
    try:
        with pytest.raises(ExportError):
            await sink.export([record_factory()])
    finally:
        await sink.close()
    assert tls_receiver.spans == []


async def test_http_endpoint_and_service_name_from_the_environment(
    fake: FakeProviderServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OTLPReceiver("http") as receiver:
        # The general variable gets /v1/traces appended, as the OTLP specification says.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-team=blue")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        data = config_dict(fake.url, tmp_path, service_name="from-config")
        data["exporters"]["otlp"] = {"server_spans": False, "headers": {"x-config": "yes"}}
        await run_chats(data, count=1)
        [span] = [span for span in receiver.wait_for(2) if span["kind"] == "CLIENT"]
    assert span["protocol"] == "http"
    assert span["resource"]["service.name"] == "from-config"  # the config wins over OTEL_SERVICE_NAME
    assert receiver.headers[0]["x-team"] == "blue" and receiver.headers[0]["x-config"] == "yes"
