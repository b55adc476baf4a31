"""OpenInference attributes (``exporters.otlp.openinference``) as a collector receives them.

The gateway calls the fake provider on loopback and exports to the real OTLP receiver; the
decoded spans carry OpenInference's names next to the GenAI ones, and content only with capture on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.exporters.otlp.openinference import openinference_attributes
from llm_obs_middleware.records.schema import Cost, Message, RequestParams, ToolCall, Usage
from llm_obs_middleware.testing import FakeProviderConfig, FakeProviderServer, OTLPReceiver, ReceivedSpan

from ..conftest import config_dict
from .conftest import RecordFactory

FAKE = FakeProviderConfig(prompt_tokens=17, completion_tokens=4)
MARKER = "zebra-marker-4711"


@pytest.fixture(autouse=True)
def _plain_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


async def exported_llm_span(
    receiver: OTLPReceiver, fake: FakeProviderServer, tmp_path: Path, **config: Any
) -> ReceivedSpan:
    data = config_dict(fake.url, tmp_path, **config)
    data["trace_context"] = {"metadata_headers": ["x-team"]}
    data["exporters"]["otlp"] = {
        "endpoint": receiver.endpoint,
        "protocol": receiver.protocol,
        "openinference": True,
        "server_spans": False,
    }
    gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
    await gateway.startup()
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"say {MARKER}"}],
        "temperature": 0.2,
        "max_tokens": 50,
    }
    headers = {"x-session-id": "sess-42", "x-user-id": "user-7", "x-team": "search"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw.test") as client:
            assert (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code == 200
    finally:
        await gateway.shutdown()
    [span] = [span for span in receiver.wait_for(2) if span["kind"] == "CLIENT"]
    return span


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_openinference_attributes_reach_the_collector(
    protocol: str, fake: FakeProviderServer, tmp_path: Path
) -> None:
    with OTLPReceiver(protocol) as receiver:  # type: ignore[arg-type]
        span = await exported_llm_span(receiver, fake, tmp_path)
    attrs = span["attributes"]
    assert attrs["openinference.span.kind"] == "LLM"
    assert (attrs["llm.provider"], attrs["llm.system"]) == ("openai", "openai")
    assert attrs["llm.model_name"] == attrs["gen_ai.response.model"]
    assert attrs["llm.token_count.prompt"] == 17
    assert attrs["llm.token_count.completion"] == 4
    assert attrs["llm.token_count.total"] == 21
    assert attrs["session.id"] == "sess-42" == attrs["gen_ai.conversation.id"]
    assert attrs["user.id"] == "user-7"
    assert json.loads(str(attrs["metadata"])) == {"x-team": "search"}
    assert json.loads(str(attrs["llm.invocation_parameters"])) == {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 50,
    }
    cost = attrs["llm.cost.total"]
    assert isinstance(cost, float) and cost == attrs["llm_obs.cost.usd"]
    # Content capture is off: no message text anywhere on the span.
    assert MARKER not in json.dumps(attrs)
    assert not any(key.startswith(("llm.input_messages", "llm.output_messages", "input.", "output.")) for key in attrs)


async def test_messages_only_with_capture_on(fake: FakeProviderServer, tmp_path: Path) -> None:
    with OTLPReceiver("http") as receiver:
        span = await exported_llm_span(receiver, fake, tmp_path, capture_content=True)
    attrs = span["attributes"]
    assert attrs["llm.input_messages.0.message.role"] == "system"
    assert attrs["llm.input_messages.0.message.content"] == "be brief"
    assert attrs["llm.input_messages.1.message.content"] == f"say {MARKER}"
    assert attrs["llm.output_messages.0.message.role"] == "assistant"
    assert attrs["llm.output_messages.0.message.content"] == attrs["output.value"]
    assert attrs["input.mime_type"] == "application/json"
    assert json.loads(str(attrs["input.value"]))[1] == {"role": "user", "content": f"say {MARKER}"}


async def test_off_by_default(fake: FakeProviderServer, tmp_path: Path) -> None:
    with OTLPReceiver("http") as receiver:
        data = config_dict(fake.url, tmp_path)
        data["exporters"]["otlp"] = {"endpoint": receiver.endpoint, "server_spans": False}
        gateway = create_gateway(Config.from_dict(data), registry=CollectorRegistry())
        await gateway.startup()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw.test") as client:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        await gateway.shutdown()
        [span] = [span for span in receiver.wait_for(2) if span["kind"] == "CLIENT"]
    assert not any(key.startswith(("openinference.", "llm.")) for key in span["attributes"])


def test_cache_details_tool_calls_and_provider_names(record_factory: RecordFactory) -> None:
    record = record_factory(
        provider="anthropic",
        usage=Usage(
            input_tokens=1200, output_tokens=80, cache_read_tokens=1000, cache_write_tokens=150, reasoning_tokens=30
        ),
        cost=Cost(total_usd=0.01, input_usd=0.002, cache_read_usd=0.001, cache_write_usd=0.003, output_usd=0.004),
        params=RequestParams(stop=["END"], seed=7),
        streamed=True,
        input_messages=[
            Message(role="assistant", tool_calls=[ToolCall(name="lookup", id="call_1", arguments='{"q": "x"}')]),
            Message(role="tool", tool_call_id="call_1", content="42"),
        ],
    )
    attrs = openinference_attributes(record)
    assert (attrs["llm.provider"], attrs["llm.system"]) == ("anthropic", "anthropic")
    assert attrs["llm.token_count.total"] == 1280  # computed when the provider gives no total
    assert attrs["llm.token_count.prompt_details.cache_read"] == 1000
    assert attrs["llm.token_count.prompt_details.cache_write"] == 150
    assert attrs["llm.token_count.completion_details.reasoning"] == 30
    assert attrs["llm.cost.prompt"] == pytest.approx(0.006) and attrs["llm.cost.completion"] == 0.004
    params = json.loads(str(attrs["llm.invocation_parameters"]))
    assert params == {"model": "gpt-4o-mini", "stop": ["END"], "seed": 7, "stream": True}
    prefix = "llm.input_messages.0.message.tool_calls.0.tool_call."
    assert attrs[prefix + "function.name"] == "lookup" and attrs[prefix + "id"] == "call_1"
    assert attrs[prefix + "function.arguments"] == '{"q": "x"}'
    assert attrs["llm.input_messages.1.message.tool_call_id"] == "call_1"
    bedrock = openinference_attributes(record_factory(provider="aws.bedrock"))
    assert bedrock["llm.provider"] == "aws" and "llm.system" not in bedrock
    assert openinference_attributes(record_factory(provider="my-llm"))["llm.provider"] == "my-llm"
    assert openinference_attributes(record_factory(operation="embeddings"))["openinference.span.kind"] == "EMBEDDING"
