"""The export config shape of issue 6 loads exactly as written and builds every sink it names."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, Secret, create_gateway
from llm_obs_middleware.exporters.jsonl import JSONLSink
from llm_obs_middleware.exporters.logstore.postgres import PostgresLogStore
from llm_obs_middleware.exporters.otlp.traces import OTLPSink
from llm_obs_middleware.exporters.pipeline.redact import Redactor
from llm_obs_middleware.exporters.prometheus.exporter import PrometheusSink

from .conftest import require_psycopg

ISSUE_YAML = """
exporters:
  otlp: {endpoint: http://127.0.0.1:4317, protocol: grpc, headers: {authorization: "Bearer ${TOKEN}"}}
  prometheus: {enabled: true, pushgateway: http://127.0.0.1:9091, labels: [provider, model, operation, status_class]}
  log_store: {url: "postgresql://postgres@127.0.0.1:5432/llm_obs", retention_days: 30}
  jsonl: {path: ./llm_obs.jsonl}
capture_content: false          # one switch for every sink
redact: {fields: [messages], patterns: ["sk-[A-Za-z0-9]{20,}"]}
queue: {max_records: 10000, on_full: drop_oldest, spool_dir: ./llm_obs_spool}
admin_key: ${ADMIN_KEY}
"""


async def test_the_issue_config_loads_and_builds_every_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_psycopg()  # the config names a PostgreSQL log store
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "gateway.yaml"
    path.write_text(ISSUE_YAML)
    config = Config.from_file(path, environ={"TOKEN": "t0k3n", "ADMIN_KEY": "adm"})
    exporters = config.exporters
    assert exporters.otlp is not None and exporters.otlp.headers == {"authorization": "Bearer t0k3n"}
    assert exporters.prometheus.labels == ["provider", "model", "operation", "status_class"]
    assert exporters.log_store.retention_days == 30
    assert config.queue.spool_dir == "./llm_obs_spool" and config.queue.on_full == "drop_oldest"
    assert config.admin_key == Secret("adm")
    gateway = create_gateway(config, registry=CollectorRegistry())  # builds; connects only when started
    sinks = {sink.name: sink for sink in gateway.pipeline.sinks}
    assert isinstance(sinks["prometheus"], PrometheusSink)
    assert sinks["prometheus"].config.pushgateway == "http://127.0.0.1:9091"
    assert isinstance(sinks["otlp"], OTLPSink)
    assert isinstance(sinks["log_store"], PostgresLogStore)
    assert isinstance(sinks["jsonl"], JSONLSink)
    assert isinstance(gateway.pipeline.transform, Redactor)
    await gateway.shutdown()  # never started: closes the sinks without connecting anywhere
