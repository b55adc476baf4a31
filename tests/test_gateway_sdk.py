"""The official openai SDK against the gateway in-process: every API, and what each sink recorded."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.trace import SpanKind

from llm_obs_middleware.testing import FakeProviderConfig

from .conftest import UPSTREAM_KEY, GatewayKit

FAKE = FakeProviderConfig(prompt_tokens=21, completion_tokens=7, cached_tokens=5, reasoning_tokens=2, chunks=4)
MakeKit = Callable[..., Awaitable[GatewayKit]]


def sdk(kit: GatewayKit) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://gateway.test/v1",
        api_key="client-key-not-for-upstream",
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=kit.gateway)),
        max_retries=0,
    )


async def logs(kit: GatewayKit, query: str = "") -> list[dict[str, Any]]:
    await kit.gateway.pipeline.flush()
    async with kit.client() as client:
        response = await client.get(f"/logs{query}")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def test_chat_plain_usage_agrees_across_logs_metrics_and_spans(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    async with sdk(kit) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], temperature=0.3
        )
    assert completion.usage is not None and completion.usage.prompt_tokens == 21
    [record] = await logs(kit)
    assert record["status"] == 200 and record["outcome"] == "completed"
    assert record["usage"]["input_tokens"] == 21
    assert record["usage"]["output_tokens"] == 7
    assert record["usage"]["cache_read_tokens"] == 5
    assert record["usage"]["reasoning_tokens"] == 2
    assert record["params"]["temperature"] == 0.3
    assert record["cost"]["total_usd"] > 0
    labels = {"provider": "openai", "model": "gpt-4o-mini", "operation": "chat"}
    assert kit.metric("llm_obs_tokens_total", **labels, type="input", estimated="false") == 21
    assert kit.metric("llm_obs_tokens_total", **labels, type="output", estimated="false") == 7
    assert kit.metric("llm_obs_tokens_total", **labels, type="cache_read", estimated="false") == 5
    assert kit.metric(
        "llm_obs_cost_usd_total", provider="openai", model="gpt-4o-mini", estimated="false"
    ) == pytest.approx(record["cost"]["total_usd"])
    [span] = [span for span in kit.spans.get_finished_spans() if span.kind == SpanKind.CLIENT]
    assert span.name == "chat gpt-4o-mini"
    assert span.attributes is not None
    assert span.attributes["gen_ai.usage.input_tokens"] == 21
    assert span.attributes["gen_ai.usage.output_tokens"] == 7
    assert span.attributes["gen_ai.provider.name"] == "openai"
    assert format(span.context.trace_id, "032x") == record["trace_id"]
    # The client's key never went upstream; the configured one did, and it appears in no record.
    sent = kit.fake.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert UPSTREAM_KEY not in json.dumps(record)


async def test_chat_stream_without_include_usage_hides_the_usage_chunk_but_records_usage(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    async with sdk(kit) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks), "the client did not ask for usage"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    upstream_body = json.loads(kit.fake.requests[-1].body)
    assert upstream_body["stream_options"] == {"include_usage": True}
    [record] = await logs(kit)
    assert record["streamed"] is True
    assert record["usage"]["input_tokens"] == 21 and record["usage"]["output_tokens"] == 7
    assert record["finish_reason"] == "stop"
    assert record["timing"]["time_to_first_token_s"] > 0


async def test_chat_stream_with_include_usage_keeps_the_usage_chunk(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    async with sdk(kit) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 7
    [record] = await logs(kit)
    assert record["usage"]["output_tokens"] == 7


async def test_chat_tools_plain_and_streamed(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    async with sdk(kit) as client:
        plain = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}], tools=tools
        )
        async with client.chat.completions.stream(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}], tools=tools
        ) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_completion()
    assert plain.choices[0].message.tool_calls
    assert final.choices[0].message.tool_calls
    records = await logs(kit)
    assert [r["finish_reason"] for r in records] == ["tool_calls", "tool_calls"]
    assert [r["tool_calls"] for r in records] == [1, 1]
    assert all(r["params"]["tool_definitions"] == 1 for r in records)


async def test_responses_plain_and_streamed(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    async with sdk(kit) as client:
        plain = await client.responses.create(model="gpt-4o-mini", input="hi")
        stream = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        events = [event async for event in stream]
    assert plain.output_text
    assert events[-1].type == "response.completed"
    records = await logs(kit)
    assert {r["api"] for r in records} == {"openai.responses"}
    for record in records:
        assert record["usage"]["input_tokens"] == 21
        assert record["usage"]["cache_read_tokens"] == 5
        assert record["usage"]["reasoning_tokens"] == 2
    assert sorted(r["streamed"] for r in records) == [False, True]


async def test_embeddings(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    async with sdk(kit) as client:
        result = await client.embeddings.create(model="gpt-4o-mini", input=["a", "b"])
    assert len(result.data) == 2
    [record] = await logs(kit)
    assert record["operation"] == "embeddings"
    assert record["usage"]["input_tokens"] == 21


async def test_alias_is_rewritten_upstream_and_both_names_recorded(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    async with sdk(kit) as client:
        await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert json.loads(kit.fake.requests[-1].body)["model"] == "gpt-4o"
    [record] = await logs(kit)
    assert record["requested_model"] == "fast"
    assert record["response_model"] == "gpt-4o"
    assert record["rule"] == "fast" and record["route"] == "openai"


async def test_models_list(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    async with sdk(kit) as client:
        page = await client.models.list()
    assert sorted(model.id for model in page.data) == ["fast", "gpt-4o-mini"]


async def test_logs_filters_and_lookup(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    async with sdk(kit) as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
        await client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "b"}], extra_headers={"x-session-id": "sess-1"}
        )
    assert [r["requested_model"] for r in await logs(kit, "?session_id=sess-1")] == ["fast"]
    assert [r["requested_model"] for r in await logs(kit, "?model=gpt-4o-mini")] == ["gpt-4o-mini"]
    newest_first = await logs(kit)
    assert [r["requested_model"] for r in newest_first] == ["fast", "gpt-4o-mini"]
    async with kit.client() as client:
        one = await client.get(f"/logs/{newest_first[0]['request_id']}")
        missing = await client.get("/logs/nope")
    assert one.json()["request_id"] == newest_first[0]["request_id"]
    assert missing.status_code == 404


async def test_cost_components_reach_metrics_and_spans(make_kit: MakeKit) -> None:
    kit = await make_kit(FAKE)
    async with sdk(kit) as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    [record] = await logs(kit)
    cost = record["cost"]
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    for component in ("input", "cache_read", "output"):
        assert cost[f"{component}_usd"] > 0
        metric = kit.metric("llm_obs_cost_component_usd_total", **labels, component=component)
        assert metric == pytest.approx(cost[f"{component}_usd"])
    [span] = [span for span in kit.spans.get_finished_spans() if span.kind == SpanKind.CLIENT]
    assert span.attributes is not None
    assert span.attributes["llm_obs.cost.input_usd"] == pytest.approx(cost["input_usd"])
    assert span.attributes["llm_obs.cost.output_usd"] == pytest.approx(cost["output_usd"])
