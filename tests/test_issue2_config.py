"""The config shape of issue 2 works as written: loaded from a YAML file, it serves and exports.

Only runtime objects are swapped in (as the README allows): the upstream client reaches the fake
provider in-process instead of 127.0.0.1:9100, and spans go to an in-memory exporter instead of a
collector on 127.0.0.1:4318. The file itself is the issue's text, byte for byte.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import httpx
import openai
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import FakeProviderConfig, create_fake_provider

REPO = Path(__file__).resolve().parents[1]
ISSUE_YAML = """\
providers:
  openai:
    kind: openai
    base_url: http://127.0.0.1:9100/v1
    api_keys: ["${OPENAI_API_KEY}"]
models:
  gpt-4o-mini: {provider: openai}
  fast: {provider: openai, model: gpt-4o-mini}
exporters:
  prometheus: {enabled: true}
  otlp: {endpoint: http://127.0.0.1:4318, protocol: http}
  log_store: {url: sqlite:///llm_obs.db}
"""


def test_the_readme_documents_the_issue_shape() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    assert ISSUE_YAML in blocks


async def test_the_issue_config_as_written_serves_and_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # sqlite:///llm_obs.db is relative to the working directory
    path = tmp_path / "gateway.yaml"
    path.write_text(ISSUE_YAML)
    config = Config.from_file(path, environ={"OPENAI_API_KEY": "sk-from-env"})
    assert config.providers["openai"].base_url == "http://127.0.0.1:9100/v1"
    assert config.exporters.otlp is not None
    assert (config.exporters.otlp.endpoint, config.exporters.otlp.protocol) == ("http://127.0.0.1:4318", "http")

    fake = create_fake_provider(FakeProviderConfig(prompt_tokens=10, completion_tokens=3))
    spans, registry = InMemorySpanExporter(), CollectorRegistry()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        gateway = create_gateway(config, client=upstream, span_exporter=spans, registry=registry)
        await gateway.startup()
        try:
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw")
            client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="client-key", http_client=http, max_retries=0)
            for model in ("gpt-4o-mini", "fast"):
                reply = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
                assert reply.model == "gpt-4o-mini"
            await gateway.pipeline.flush()
            logs = (await http.get("/logs")).json()["data"]
            metrics = (await http.get("/metrics")).text
            await client.close()
        finally:
            await gateway.shutdown()

    # The ${OPENAI_API_KEY} key went upstream, and the alias "fast" was sent as its model.
    assert [request.headers["authorization"] for request in fake.requests] == ["Bearer sk-from-env"] * 2
    assert [request.json()["model"] for request in fake.requests] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert [record["requested_model"] for record in logs] == ["fast", "gpt-4o-mini"]  # newest first
    assert 'llm_obs_requests_total{model="gpt-4o-mini",operation="chat",provider="openai",status_class="2xx"} 2.0' in (
        metrics
    )
    assert len([span for span in spans.get_finished_spans() if span.kind == SpanKind.CLIENT]) == 2
    with sqlite3.connect(tmp_path / "llm_obs.db") as db:  # the file the config names, where it names it
        stored = [json.loads(row[0]) for row in db.execute("SELECT record FROM llm_records")]
    assert {record["request_id"] for record in stored} == {record["request_id"] for record in logs}
