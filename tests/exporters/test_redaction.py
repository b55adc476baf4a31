"""Content capture and redaction across every sink: a marker string is searched for in all their output."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, ConfigurationError, create_gateway
from llm_obs_middleware.config.settings import RedactConfig
from llm_obs_middleware.exporters.pipeline.redact import Redactor, redactor
from llm_obs_middleware.records.schema import Message, ToolCall
from llm_obs_middleware.testing import OTLPReceiver, create_fake_provider

from ..conftest import config_dict
from .conftest import RecordFactory

PROMPT_MARKER = "zebra-quartz-prompt-7781"
COMPLETION = "from the fake provider"  # what the fake provider answers with
SECRET = "sk-" + "A1b2C3d4E5f6G7h8J9k0L1m2"
KEY_PATTERN = "sk-[A-Za-z0-9]{20,}"


def test_redactor_drops_masks_and_caps(record_factory: RecordFactory) -> None:
    record = record_factory(
        input_messages=[
            Message(role="system", content=f"key {SECRET} here"),
            Message(role="assistant", tool_calls=[ToolCall(name="f", arguments=f'{{"k": "{SECRET}"}}')]),
        ],
        output_text=f"{SECRET} and a long tail of words",
        metadata={"x-tenant-id": f"acme {SECRET}"},
        user=f"u-{SECRET}",
        error_message=f"invalid key {SECRET}",
    )
    masked = Redactor(RedactConfig(patterns=[KEY_PATTERN, r"tail"], max_content_chars=20))(record)
    assert masked.input_messages is not None
    assert [m.content for m in masked.input_messages] == ["key [REDACTED] here", None]
    assert masked.input_messages[1].tool_calls[0].arguments == '{"k": "[REDACTED]"}'
    assert masked.output_text == "[REDACTED] and a lon"  # masked, then cut to 20 characters
    assert masked.metadata == {"x-tenant-id": "acme [REDACTED]"}
    assert masked.user == "u-[REDACTED]"
    assert masked.error_message == "invalid key [REDACTED]"
    dropped = Redactor(RedactConfig(fields=["messages", "output", "metadata", "user", "error_message"]))(record)
    assert (dropped.input_messages, dropped.output_text, dropped.metadata, dropped.user, dropped.error_message) == (
        None,
        None,
        {},
        None,
        None,
    )
    assert dropped.request_id == record.request_id and dropped.timing == record.timing
    untouched = record_factory()
    assert Redactor(RedactConfig(patterns=[KEY_PATTERN]))(untouched) is untouched  # nothing to change, no copy


def test_redactor_only_when_configured() -> None:
    assert redactor(RedactConfig()) is None
    assert isinstance(redactor(RedactConfig(fields=["user"])), Redactor)
    with pytest.raises(ConfigurationError, match=r"redact\.patterns: '\(unclosed'"):
        Config.from_dict({"redact": {"patterns": ["(unclosed"]}})
    config = Config.from_dict({"redact": {"fields": ["messages"], "patterns": [KEY_PATTERN]}})
    assert config.redact == RedactConfig(fields=["messages"], patterns=[KEY_PATTERN])


def read_all(folder: Path, pattern: str) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(folder.glob(pattern)))


async def run_all_sinks(tmp_path: Path, receiver: OTLPReceiver, **overrides: Any) -> dict[str, str]:
    """Send a chat through a gateway with every sink on; return each sink's output as text."""
    data = config_dict(tmp_path=tmp_path, trace_context={"metadata_headers": ["x-tenant-id"]}, **overrides)
    # Every OTLP option that adds data is on: OpenInference attributes and the GenAI metrics.
    data["exporters"]["otlp"] = {"endpoint": receiver.endpoint, "timeout": 5, "openinference": True, "metrics": True}
    data["exporters"]["jsonl"] = {"path": str(tmp_path / "out.jsonl")}
    prompt = {"role": "user", "content": f"{PROMPT_MARKER}: my key is {SECRET}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_fake_provider())) as upstream:
        gateway = create_gateway(Config.from_dict(data), client=upstream, registry=CollectorRegistry())
        await gateway.startup()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
            for stream in (False, True):
                reply = await client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": [prompt], "stream": stream},
                    headers={"x-tenant-id": f"tenant {SECRET}"},
                )
                assert reply.status_code == 200
                # The client gets everything, unredacted (a stream splits the text across events).
                assert (" provider" if stream else COMPLETION) in reply.text
            await gateway.pipeline.flush()
            logs = (await client.get("/logs")).text
            metrics = (await client.get("/metrics")).text
        await gateway.shutdown()
    spans = receiver.wait_for(2)
    database = read_all(tmp_path, "log.db*")  # the file and its WAL
    return {
        "logs api": logs,
        "sqlite file": database.decode("utf-8", "replace"),
        "jsonl": read_all(tmp_path, "out.jsonl").decode(),
        "otlp": repr(spans),
        "otlp metrics": repr(receiver.metrics),
        "metrics": metrics,
    }


@pytest.fixture
def receiver() -> Any:
    with OTLPReceiver("http") as running:
        yield running


async def test_with_capture_off_no_prompt_or_completion_reaches_any_sink(
    tmp_path: Path, receiver: OTLPReceiver
) -> None:
    outputs = await run_all_sinks(tmp_path, receiver)
    assert "gpt-4o-mini" in outputs["jsonl"] and "gpt-4o-mini" in outputs["otlp"]  # the sinks did get records
    assert "gen_ai.client.token.usage" in outputs["otlp metrics"] and "llm.token_count" in outputs["otlp"]
    for sink, text in outputs.items():
        assert PROMPT_MARKER not in text, sink
        assert COMPLETION not in text, sink
    # Without a redact block, configured metadata headers are kept as sent.
    assert f"tenant {SECRET}" in outputs["jsonl"]


async def test_redaction_applies_to_every_sink(tmp_path: Path, receiver: OTLPReceiver) -> None:
    outputs = await run_all_sinks(
        tmp_path, receiver, capture_content=True, redact={"fields": ["output"], "patterns": [KEY_PATTERN]}
    )
    for sink, text in outputs.items():
        assert SECRET not in text, sink
        assert COMPLETION not in text, sink  # the output field is dropped
    for sink in ("logs api", "sqlite file", "jsonl", "otlp"):
        assert PROMPT_MARKER in outputs[sink], sink  # captured prompts stay, masked
        assert len(re.findall(r"\[REDACTED\]", outputs[sink])) >= 2, sink
