"""Canary: an upstream that echoes the provider key and the prompt in its error body (issue 13, finding 12).

Neither may reach any sink (log store, ``/logs``, JSONL, OTLP spans, ``/metrics``) with content
capture off; the client still gets the upstream's error answer as it came.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
from llm_obs_middleware.config.settings import RedactConfig
from llm_obs_middleware.exporters.pipeline.redact import Redactor, configured_secrets, redactor
from llm_obs_middleware.testing import OTLPReceiver
from llm_obs_middleware.testing.server import BackgroundServer

from ..conftest import UPSTREAM_KEY, config_dict
from .conftest import RecordFactory

PROMPT = "canary-prompt-walrus-5521"


async def echoing_upstream(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers every request with an OpenAI-shaped error quoting the key and the prompt it got."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    key = dict(scope["headers"]).get(b"authorization", b"").decode().removeprefix("Bearer ")
    request = json.loads(body)
    status = int(request["model"].rpartition("-")[2])
    prompt = request["messages"][0]["content"]
    error = {"message": f"Incorrect API key provided: {key}. You said: {prompt}", "type": f"bad_key_{key}"}
    answer = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def upstream() -> Iterator[BackgroundServer]:
    with BackgroundServer(echoing_upstream) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver("http") as running:
        yield running


async def test_echoed_key_and_prompt_reach_no_sink(
    tmp_path: Path, upstream: BackgroundServer, receiver: OTLPReceiver
) -> None:
    data = config_dict(upstream.url + "/v1", tmp_path=tmp_path, default_provider="openai")
    data["exporters"]["otlp"] = {"endpoint": receiver.endpoint, "timeout": 5}
    data["exporters"]["jsonl"] = {"path": str(tmp_path / "out.jsonl")}
    gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
    await gateway.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
            for status in (400, 500):
                body = {"model": f"echo-{status}", "messages": [{"role": "user", "content": PROMPT}]}
                reply = await client.post("/v1/chat/completions", json=body)
                # The client gets the upstream's own answer, echo included (it is the caller's prompt).
                assert reply.status_code == status
                assert PROMPT in reply.text
            await gateway.pipeline.flush()
            records = (await client.get("/logs")).json()["data"]
            logs = json.dumps(records)
            metrics = (await client.get("/metrics")).text
    finally:
        await gateway.shutdown()
    spans = receiver.wait_for(2)
    outputs = {"logs api": logs, "otlp": repr(spans), "metrics": metrics, **_files(tmp_path)}
    assert "echo-400" in outputs["jsonl"] and "echo-400" in outputs["otlp"]  # the sinks did get the records
    for sink, text in outputs.items():
        assert UPSTREAM_KEY not in text, sink
        assert PROMPT not in text, sink
    # Type and status are always kept; the upstream's message text only with capture on.
    by_model = {record["requested_model"]: record for record in records}
    assert by_model["echo-400"]["status"] == 400 and by_model["echo-400"]["error_type"] == "bad_key_[REDACTED]"
    assert by_model["echo-400"]["error_message"] is None
    assert by_model["echo-500"]["status"] == 500 and by_model["echo-500"]["error_message"] is None


def _files(folder: Path) -> dict[str, str]:
    database = b"".join(path.read_bytes() for path in sorted(folder.glob("log.db*")))  # the file and its WAL
    return {"sqlite file": database.decode("utf-8", "replace"), "jsonl": (folder / "out.jsonl").read_text()}


async def test_capture_keeps_the_message_but_masks_the_key(tmp_path: Path, upstream: BackgroundServer) -> None:
    data = config_dict(upstream.url + "/v1", tmp_path=tmp_path, default_provider="openai", capture_content=True)
    gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
    await gateway.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
            body = {"model": "echo-400", "messages": [{"role": "user", "content": PROMPT}]}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 400
            await gateway.pipeline.flush()
            (record,) = (await client.get("/logs")).json()["data"]
    finally:
        await gateway.shutdown()
    assert record["error_message"] == f"Incorrect API key provided: [REDACTED]. You said: {PROMPT}"


def test_configured_secrets_are_masked_in_every_field(record_factory: RecordFactory) -> None:
    config = Config.from_dict(
        {
            "providers": {
                "a": {"kind": "openai", "base_url": "http://a", "api_keys": ["sk-first-key-1", {"key": "sk-second-2"}]},
                "b": {"kind": "azure_openai", "base_url": "http://b", "headers": {"api-key": "azure-key-3"}},
            },
            "admin_key": "admin-key-4",
        }
    )
    secrets = configured_secrets(config)
    assert set(secrets) == {"sk-first-key-1", "sk-second-2", "azure-key-3", "admin-key-4"}
    record = record_factory(
        requested_model="sk-first-key-1",
        metadata={"t": "x sk-second-2 y"},
        error_type="azure-key-3",
        error_message='quote " admin-key-4',
    )
    transform = redactor(RedactConfig(), secrets)
    assert isinstance(transform, Redactor)
    masked = transform(record)
    text = repr(masked)
    assert all(secret not in text for secret in secrets)
    assert masked.metadata == {"t": "x [REDACTED] y"} and masked.error_message == 'quote " [REDACTED]'
    untouched = record_factory()
    assert transform(untouched) is untouched  # nothing to mask: no copy
    assert redactor(RedactConfig(), ["short"]) is None  # too short to be a credential
