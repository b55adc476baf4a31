"""The official anthropic SDK through the gateway (native route ``/anthropic``) to the fake provider over loopback.

Both the gateway and the fake run under uvicorn on loopback ports; the SDK is the synchronous
``anthropic.Anthropic`` pointed at ``http://HOST:PORT/anthropic``. Every test checks what the client
got and what ``/logs``, ``/metrics`` and the CLIENT span recorded.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer

FAKE = FakeProviderConfig(prompt_tokens=40, completion_tokens=6, cached_tokens=10, chunks=4)
MODEL = "claude-sonnet-4-6"
UPSTREAM_KEY = "sk-ant-upstream-secret-5678"
HELLO: list[MessageParam] = [{"role": "user", "content": "hi"}]
TOOLS: Any = [
    {
        "name": "get_weather",
        "description": "Weather for a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
T = TypeVar("T")


class Served(NamedTuple):
    url: str
    fake: FakeProviderServer
    spans: InMemorySpanExporter
    registry: CollectorRegistry


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


@pytest.fixture
def served(fake: FakeProviderServer, tmp_path: Path) -> Iterator[Served]:
    config = Config.from_dict(
        {
            "providers": {"anthropic": {"kind": "anthropic", "base_url": fake.base_url, "api_keys": [UPSTREAM_KEY]}},
            "models": {"claude-fast": {"provider": "anthropic", "model": "claude-haiku-4-5"}},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
            "routing": {"retries": 0},  # one attempt: the record is the upstream's answer, at once
        }
    )
    spans, registry = InMemorySpanExporter(), CollectorRegistry()
    with BackgroundServer(create_gateway(config, span_exporter=spans, registry=registry)) as server:
        yield Served(server.url, fake, spans, registry)


def sdk(served: Served) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=served.url + "/anthropic", api_key="client-key-not-for-upstream", max_retries=0)


def eventually(probe: Callable[[], T | None], what: str) -> T:
    """Poll ``probe`` until it returns a value: the gateway exports off the request path, in its own thread."""
    deadline = time.monotonic() + 10
    while (value := probe()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return value


def logs(served: Served, count: int) -> list[dict[str, Any]]:
    """The newest ``count`` records from ``/logs``, oldest first."""

    def probe() -> list[dict[str, Any]] | None:
        data: list[dict[str, Any]] = httpx.get(served.url + "/logs").json()["data"]
        return data[:count][::-1] if len(data) >= count else None

    return eventually(probe, f"{count} records in /logs")


def metric(served: Served, name: str, **labels: str) -> float:
    """The sum of the samples carrying ``labels`` (other labels, e.g. ``estimated``, may split them)."""

    def probe() -> float | None:
        values = [
            sample.value
            for family in served.registry.collect()
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]
        return sum(values) if values else None

    return eventually(probe, f"{name}{labels}")


def client_spans(served: Served, count: int) -> list[ReadableSpan]:
    def probe() -> list[ReadableSpan] | None:
        found = [span for span in served.spans.get_finished_spans() if span.kind == SpanKind.CLIENT]
        return found if len(found) >= count else None

    return eventually(probe, f"{count} CLIENT spans")


def assert_usage(record: dict[str, Any]) -> None:
    # FakeProviderConfig's numbers, normalized: input counts the cached tokens, which Anthropic reports apart.
    assert record["usage"] == {
        "input_tokens": 40,
        "output_tokens": 6,
        "total_tokens": 46,
        "cache_read_tokens": 10,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
    }


def test_messages_create_plain(served: Served) -> None:
    with sdk(served) as client:
        message = client.messages.create(
            model=MODEL, max_tokens=64, messages=HELLO, stop_sequences=["END"], metadata={"user_id": "user-7"}
        )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == "Hello from the fake"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (30, 10)
    sent = served.fake.app.requests[-1]
    assert (sent.path, sent.headers["x-api-key"]) == ("/v1/messages", UPSTREAM_KEY)
    assert sent.headers["anthropic-version"]  # the client's own version header goes upstream
    [record] = logs(served, 1)
    assert (record["provider"], record["api"], record["operation"], record["route"]) == (
        "anthropic",
        "anthropic.messages",
        "chat",
        "anthropic",
    )
    assert (record["status"], record["outcome"], record["streamed"]) == (200, "completed", False)
    assert (record["requested_model"], record["response_model"], record["response_id"]) == (MODEL, MODEL, message.id)
    assert (record["finish_reason"], record["finish_reasons"]) == ("stop", ["end_turn"])
    assert (record["params"]["max_tokens"], record["params"]["stop"], record["user"]) == (64, ["END"], "user-7")
    assert_usage(record)
    assert record["cost"]["total_usd"] > 0
    assert UPSTREAM_KEY not in json.dumps(record)
    # Vendor extras: the tier from the body, and Anthropic's request id from its request-id header.
    assert record["extra"] == {"anthropic.service_tier": "standard", "anthropic.request_id": message._request_id}
    labels = {"provider": "anthropic", "model": MODEL, "operation": "chat"}
    assert metric(served, "llm_obs_tokens_total", **labels, type="input") == 40
    assert metric(served, "llm_obs_tokens_total", **labels, type="output") == 6
    assert metric(served, "llm_obs_tokens_total", **labels, type="cache_read") == 10
    assert metric(served, "llm_obs_requests_total", **labels, status_class="2xx") == 1
    [span] = client_spans(served, 1)
    assert span.name == f"chat {MODEL}"
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert (attrs["gen_ai.request.model"], attrs["gen_ai.response.model"]) == (MODEL, MODEL)
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (40, 6)
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 10
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert format(span.context.trace_id, "032x") == record["trace_id"]


def test_messages_stream(served: Served) -> None:
    with sdk(served) as client:
        with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert text == "Hello from the fake"
    assert (final.stop_reason, final.usage.output_tokens) == ("end_turn", 6)
    [record] = logs(served, 1)
    assert (record["streamed"], record["outcome"], record["finish_reason"]) == (True, "completed", "stop")
    assert (record["response_id"], record["response_model"]) == (final.id, MODEL)
    assert_usage(record)
    assert record["extra"]["anthropic.service_tier"] == "standard"
    assert record["extra"]["anthropic.request_id"].startswith("req_")
    assert record["timing"]["time_to_first_token_s"] > 0
    assert metric(served, "llm_obs_streamed_requests_total", provider="anthropic", model=MODEL, operation="chat") == 1
    [span] = client_spans(served, 1)
    attrs = dict(span.attributes or {})
    assert (attrs["gen_ai.provider.name"], attrs["gen_ai.usage.output_tokens"], attrs["llm_obs.streamed"]) == (
        "anthropic",
        6,
        True,
    )


def test_tools_plain_and_streamed(served: Served) -> None:
    with sdk(served) as client:
        plain = client.messages.create(model=MODEL, max_tokens=64, messages=HELLO, tools=TOOLS)
        with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO, tools=TOOLS) as stream:
            final = stream.get_final_message()
    for message in (plain, final):
        [block] = message.content
        assert block.type == "tool_use" and (block.name, block.input) == ("get_weather", {"city": "fake"})
        assert message.stop_reason == "tool_use"
    records = logs(served, 2)
    assert [(r["streamed"], r["finish_reason"], r["tool_calls"]) for r in records] == [
        (False, "tool_calls", 1),
        (True, "tool_calls", 1),
    ]
    assert all(r["params"]["tool_definitions"] == 1 for r in records)
    spans = client_spans(served, 2)
    assert {span.attributes["gen_ai.response.finish_reasons"] for span in spans if span.attributes} == {("tool_use",)}


def test_count_tokens_is_passed_through_and_recorded(served: Served) -> None:
    with sdk(served) as client:
        count = client.messages.count_tokens(model=MODEL, messages=HELLO)
    assert count.input_tokens == 40
    counted = [r for r in served.fake.app.requests if r.path == "/v1/messages/count_tokens"][-1]
    assert counted.headers["x-api-key"] == UPSTREAM_KEY
    [record] = logs(served, 1)
    assert (record["operation"], record["method"], record["path"], record["status"]) == (
        "http",
        "POST",
        "/anthropic/v1/messages/count_tokens",
        200,
    )
    assert record["usage"] is None and record["provider"] == "anthropic"


def test_alias_of_the_native_provider(served: Served) -> None:
    with sdk(served) as client:
        message = client.messages.create(model="claude-fast", max_tokens=8, messages=HELLO)
    assert message.model == "claude-haiku-4-5"
    assert json.loads(served.fake.app.requests[-1].body)["model"] == "claude-haiku-4-5"
    [record] = logs(served, 1)
    assert (record["requested_model"], record["response_model"], record["rule"]) == (
        "claude-fast",
        "claude-haiku-4-5",
        "claude-fast",
    )


@pytest.mark.parametrize(
    ("status", "error", "error_type"),
    [(529, anthropic.OverloadedError, "overloaded_error"), (429, anthropic.RateLimitError, "rate_limit_error")],
)
def test_upstream_errors(served: Served, status: int, error: type[Exception], error_type: str) -> None:
    with sdk(served) as client, pytest.raises(error) as raised:
        client.messages.create(model=MODEL, max_tokens=8, messages=HELLO, extra_headers={"x-fake-status": str(status)})
    assert isinstance(raised.value, anthropic.APIStatusError) and raised.value.status_code == status
    assert raised.value.body["error"]["type"] == error_type  # type: ignore[index]
    [record] = logs(served, 1)
    assert (record["status"], record["outcome"], record["error_type"]) == (status, "upstream_error", error_type)
    assert record["finish_reason"] == "error"
    labels = {"provider": "anthropic", "model": MODEL, "operation": "chat"}
    assert metric(served, "llm_obs_errors_total", **labels, error_type=error_type) == 1
    [span] = client_spans(served, 1)
    assert span.attributes is not None and span.attributes["error.type"] == error_type


def test_upstream_drop_mid_stream_keeps_the_usage_seen(served: Served) -> None:
    with sdk(served) as client:
        stream = client.messages.create(
            model=MODEL, max_tokens=8, messages=HELLO, stream=True, extra_headers={"x-fake-drop-after": "5"}
        )
        events = []
        # The gateway ends the cut stream with Anthropic's own error event, which the SDK raises.
        with pytest.raises(anthropic.APIStatusError, match="closed the connection mid-response"):
            events.extend(event.type for event in stream)
    assert "message_stop" not in events and events[0] == "message_start"
    [record] = logs(served, 1)
    assert (record["outcome"], record["error_type"], record["finish_reason"]) == (
        "upstream_error",
        "upstream_disconnected",
        "error",
    )
    # message_start's snapshot: all the input, one output token so far.
    assert (record["usage"]["input_tokens"], record["usage"]["output_tokens"]) == (40, 1)


_IDS = re.compile(rb"fake[0-9a-f]{24}")


@pytest.mark.parametrize("stream", [False, True])
def test_client_gets_the_upstream_bytes(served: Served, stream: bool) -> None:
    body = {"model": MODEL, "max_tokens": 8, "messages": HELLO, "stream": stream, "tools": TOOLS}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    via = httpx.post(served.url + "/anthropic/v1/messages", json=body, headers=headers)
    direct = httpx.post(served.fake.base_url + "/v1/messages", json=body, headers=headers)
    assert via.status_code == direct.status_code == 200
    assert via.headers["content-type"] == direct.headers["content-type"]
    # The message and tool ids come from the fake's request counter: the one difference between the two.
    assert len(_IDS.findall(via.content)) >= 2
    assert _IDS.sub(b"fakeID", via.content) == _IDS.sub(b"fakeID", direct.content)
    [record] = logs(served, 1)
    assert (record["streamed"], record["tool_calls"]) == (stream, 1)


# --- malformed upstream payloads (in-process gateway, upstream replayed by httpx.MockTransport) ------

_STREAM_OK_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
    b'"model":"claude-sonnet-4-6","content":[],"stop_reason":null,"usage":{"input_tokens":12,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
)
MALFORMED = {
    "truncated_json": (
        "application/json",
        [b'{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"te'],
        "invalid_response",
        "unparsable message body",
    ),
    "truncated_event": (
        "text/event-stream",
        [_STREAM_OK_START, b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_rea\n\n'],
        "invalid_response",
        "unparsable stream events: message_delta",
    ),
    "unknown_event": (
        "text/event-stream",
        [
            _STREAM_OK_START,
            b'event: shiny_new_thing\ndata: {"type":"shiny_new_thing"}\n\n',
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        ],
        None,
        "unknown stream events passed through: shiny_new_thing",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_upstream_payload_reaches_the_client_and_is_noted(tmp_path: Path, case: str) -> None:
    content_type, chunks, error_type, note = MALFORMED[case]

    async def body() -> Any:
        for chunk in chunks:
            yield chunk

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=body())

    config = Config.from_dict(
        {
            "providers": {"anthropic": {"kind": "anthropic", "base_url": "http://anthropic.test", "api_keys": ["k"]}},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as upstream_client:
        gateway = create_gateway(config, client=upstream_client, registry=CollectorRegistry())
        await gateway.startup()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as client:
                response = await client.post(
                    "http://gateway.test/anthropic/v1/messages",
                    json={
                        "model": MODEL,
                        "max_tokens": 8,
                        "messages": HELLO,
                        "stream": content_type != "application/json",
                    },
                )
            await gateway.pipeline.flush()
            store = gateway.exporters.log_store
            assert store is not None
            [record] = [json.loads(raw) for raw in store.query(limit=10)]
        finally:
            await gateway.shutdown()
    assert response.status_code == 200
    assert response.content == b"".join(chunks)  # byte for byte what the upstream sent
    assert (record["status"], record["error_type"]) == (200, error_type)
    assert record["error_message"].startswith(note)
    if case != "truncated_json":
        assert record["usage"]["input_tokens"] == 12  # what message_start reported


# --- the fake's Anthropic mode on its own ---------------------------------------------------------------


async def test_fake_mode_answers_like_the_api() -> None:
    from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
    from pydantic import TypeAdapter

    from llm_obs_middleware.testing import create_fake_provider

    app = create_fake_provider(FakeProviderConfig(prompt_tokens=9, completion_tokens=4, reasoning_tokens=3))
    key = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    plain = {"model": MODEL, "max_tokens": 8, "messages": HELLO}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as http:
        thinking = await http.post("/v1/messages", json=plain, headers=key)
        no_tool = await http.post(
            "/v1/messages", json={**plain, "tools": TOOLS, "tool_choice": {"type": "none"}}, headers=key
        )
        count = await http.post("/v1/messages/count_tokens", json={"model": MODEL, "messages": HELLO}, headers=key)
        streamed = await http.post("/v1/messages", json={**plain, "stream": True}, headers=key)
        errors = [
            await http.post("/v1/messages", json=plain),  # no key
            await http.get("/v1/messages", headers=key),
            await http.post("/v1/messages", json={"model": MODEL, "messages": HELLO}, headers=key),  # no max_tokens
            await http.post("/v1/messages", json={**plain, "model": "fail-503"}, headers=key),
            await http.post("/v1/messages", json=plain, headers={**key, "x-fake-status": "529"}),
            await http.post("/v1/messages", content=b"{", headers=key),
        ]
        assert (await http.post("/v1/other", json=plain, headers=key)).status_code == 404  # not ours: OpenAI 404
    message = Message.model_validate(thinking.json())  # the SDK's own types accept the body
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert thinking.json()["usage"]["output_tokens_details"] == {"thinking_tokens": 3}
    assert [block["type"] for block in no_tool.json()["content"]] == ["thinking", "text"]  # tool_choice none
    assert MessageTokensCount.model_validate(count.json()).input_tokens == 9
    events = [
        TypeAdapter(RawMessageStreamEvent).validate_json(line[6:])
        for line in streamed.content.splitlines()
        if line.startswith(b"data: ") and b'"ping"' not in line
    ]
    assert [event.type for event in events][:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert [event.content_block.type for event in events if event.type == "content_block_start"] == ["thinking", "text"]
    assert [(r.status_code, r.json()["error"]["type"]) for r in errors] == [
        (401, "authentication_error"),
        (405, "invalid_request_error"),
        (400, "invalid_request_error"),
        (503, "api_error"),
        (529, "overloaded_error"),
        (400, "invalid_request_error"),
    ]
    assert errors[4].headers["x-should-retry"] == "true" and errors[4].headers["request-id"].startswith("req_")
