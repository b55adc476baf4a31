"""The official cohere SDK (``ClientV2``) through the gateway (native route ``/cohere``) to the fake over loopback.

Both the gateway and the fake run under uvicorn on loopback ports. Every test checks what the client
got and what ``/logs``, ``/metrics`` and the CLIENT span recorded.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import cohere
import httpx
import pytest
from cohere.v2.types.v2chat_stream_response import MessageStartV2ChatStreamResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer

FAKE = FakeProviderConfig(prompt_tokens=50, completion_tokens=5, cached_tokens=20, chunks=3)
MODEL = "command-a-03-2025"
UPSTREAM_KEY = "co-upstream-secret-9012"
HELLO: Any = [{"role": "user", "content": "hi"}]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
LABELS = {"provider": "cohere", "model": MODEL, "operation": "chat"}
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
            "providers": {"cohere": {"kind": "cohere", "base_url": fake.base_url, "api_keys": [UPSTREAM_KEY]}},
            "models": {"command-fast": {"provider": "cohere", "model": "command-r"}},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
            "routing": {"retries": 0},  # one attempt: the record is the upstream's answer, at once
        }
    )
    spans, registry = InMemorySpanExporter(), CollectorRegistry()
    with BackgroundServer(create_gateway(config, span_exporter=spans, registry=registry)) as server:
        yield Served(server.url, fake, spans, registry)


@pytest.fixture
def client(served: Served) -> Iterator[cohere.ClientV2]:
    with httpx.Client() as http:
        yield cohere.ClientV2(
            api_key="client-key-not-for-upstream", base_url=served.url + "/cohere", httpx_client=http, max_retries=0
        )


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
    # usage.tokens (raw counts; cached ones a subset); usage.billed_units (the fake bills 30 in) kept apart.
    assert record["usage"] == {
        "input_tokens": 50,
        "output_tokens": 5,
        "total_tokens": 55,
        "cache_read_tokens": 20,
        "billed_input_tokens": 30,
        "billed_output_tokens": 5,
    }


def test_chat_plain(served: Served, client: cohere.ClientV2) -> None:
    response = client.chat(model=MODEL, messages=HELLO, temperature=0.3, p=0.9, max_tokens=50, seed=7)
    assert response.message.content is not None
    assert [part.text for part in response.message.content if part.type == "text"] == ["Hello from the"]
    assert response.usage is not None and response.usage.billed_units is not None
    assert response.usage.billed_units.input_tokens == 30
    sent = served.fake.app.requests[-1]
    assert (sent.path, sent.headers["authorization"]) == ("/v2/chat", f"Bearer {UPSTREAM_KEY}")
    [record] = logs(served, 1)
    assert (record["provider"], record["api"], record["operation"], record["route"]) == (
        "cohere",
        "cohere.chat",
        "chat",
        "cohere",
    )
    assert (record["status"], record["outcome"], record["streamed"]) == (200, "completed", False)
    assert (record["requested_model"], record["response_model"], record["response_id"]) == (MODEL, MODEL, response.id)
    assert (record["finish_reason"], record["finish_reasons"]) == ("stop", ["COMPLETE"])
    params = record["params"]
    assert (params["temperature"], params["top_p"], params["max_tokens"], params["seed"]) == (0.3, 0.9, 50, 7)
    assert_usage(record)
    assert record["cost"]["total_usd"] > 0
    assert UPSTREAM_KEY not in json.dumps(record)
    assert metric(served, "llm_obs_tokens_total", **LABELS, type="input") == 50
    assert metric(served, "llm_obs_tokens_total", **LABELS, type="output") == 5
    assert metric(served, "llm_obs_tokens_total", **LABELS, type="cache_read") == 20
    assert metric(served, "llm_obs_requests_total", **LABELS, status_class="2xx") == 1
    [span] = client_spans(served, 1)
    assert span.name == f"chat {MODEL}"
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.provider.name"] == "cohere"
    assert (attrs["gen_ai.request.model"], attrs["gen_ai.response.model"]) == (MODEL, MODEL)
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (50, 5)
    assert (attrs["gen_ai.request.temperature"], attrs["gen_ai.request.top_p"]) == (0.3, 0.9)
    assert attrs["gen_ai.response.finish_reasons"] == ("COMPLETE",)
    assert format(span.context.trace_id, "032x") == record["trace_id"]


def test_chat_stream(served: Served, client: cohere.ClientV2) -> None:
    events = list(client.chat_stream(model=MODEL, messages=HELLO))
    text = "".join(
        event.delta.message.content.text or ""
        for event in events
        if event.type == "content-delta" and event.delta and event.delta.message and event.delta.message.content
    )
    assert text == "Hello from the"
    assert (events[0].type, events[-1].type) == ("message-start", "message-end")
    [record] = logs(served, 1)
    assert (record["streamed"], record["outcome"], record["finish_reason"]) == (True, "completed", "stop")
    assert isinstance(events[0], MessageStartV2ChatStreamResponse)
    assert (record["response_id"], record["response_model"]) == (events[0].id, MODEL)
    assert_usage(record)
    assert record["timing"]["time_to_first_token_s"] > 0
    assert metric(served, "llm_obs_streamed_requests_total", **LABELS) == 1
    [span] = client_spans(served, 1)
    attrs = dict(span.attributes or {})
    assert (attrs["gen_ai.provider.name"], attrs["gen_ai.usage.input_tokens"], attrs["llm_obs.streamed"]) == (
        "cohere",
        50,
        True,
    )


def test_tools_plain_and_streamed(served: Served, client: cohere.ClientV2) -> None:
    plain = client.chat(model=MODEL, messages=HELLO, tools=TOOLS)
    assert plain.finish_reason == "TOOL_CALL" and plain.message.tool_calls
    [call] = plain.message.tool_calls
    assert call.function is not None and call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "") == {"city": "fake"}
    events = list(client.chat_stream(model=MODEL, messages=HELLO, tools=TOOLS))
    arguments = "".join(
        event.delta.message.tool_calls.function.arguments or ""
        for event in events
        if event.type == "tool-call-delta"
        and event.delta
        and event.delta.message
        and event.delta.message.tool_calls
        and event.delta.message.tool_calls.function
    )
    assert json.loads(arguments) == {"city": "fake"}
    records = logs(served, 2)
    assert [(r["streamed"], r["finish_reason"], r["tool_calls"]) for r in records] == [
        (False, "tool_calls", 1),
        (True, "tool_calls", 1),
    ]
    assert all(r["params"]["tool_definitions"] == 1 for r in records)
    spans = client_spans(served, 2)
    assert {span.attributes["gen_ai.response.finish_reasons"] for span in spans if span.attributes} == {("TOOL_CALL",)}


def test_alias_of_the_native_provider(served: Served, client: cohere.ClientV2) -> None:
    client.chat(model="command-fast", messages=HELLO)
    assert json.loads(served.fake.app.requests[-1].body)["model"] == "command-r"
    [record] = logs(served, 1)
    # The response names no model: the record says the one the request was sent with.
    assert (record["requested_model"], record["response_model"], record["rule"]) == (
        "command-fast",
        "command-r",
        "command-fast",
    )


@pytest.mark.parametrize(
    ("status", "error"), [(429, cohere.TooManyRequestsError), (503, cohere.ServiceUnavailableError)]
)
def test_upstream_errors(served: Served, client: cohere.ClientV2, status: int, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        client.chat(model=MODEL, messages=HELLO, request_options={"additional_headers": {"x-fake-status": str(status)}})
    assert isinstance(raised.value, cohere.core.ApiError) and raised.value.status_code == status
    [record] = logs(served, 1)
    error_type = f"http_{status}"  # Cohere error bodies name no type
    assert (record["status"], record["outcome"], record["error_type"]) == (status, "upstream_error", error_type)
    assert record["error_message"] is None  # the provider's text is content: capture is off
    assert metric(served, "llm_obs_errors_total", **LABELS, error_type=error_type) == 1
    [span] = client_spans(served, 1)
    assert span.attributes is not None and span.attributes["error.type"] == error_type


def test_upstream_drop_mid_stream_is_recorded(served: Served, client: cohere.ClientV2) -> None:
    headers = {"x-fake-drop-after": "3"}
    events = list(client.chat_stream(model=MODEL, messages=HELLO, request_options={"additional_headers": headers}))
    # Cohere's SDK raises nothing in-band: the gateway ends the stream as Cohere reports a failed
    # generation, a message-end event with finish_reason ERROR and the error text.
    end = events[-1]
    assert end.type == "message-end" and end.delta is not None
    assert end.delta.finish_reason == "ERROR" and "closed the connection mid-response" in str(end.delta.error)
    [record] = logs(served, 1)
    assert (record["outcome"], record["error_type"], record["finish_reason"]) == (
        "upstream_error",
        "upstream_disconnected",
        "error",
    )
    # Cohere reports usage only in message-end: none was seen, so any usage recorded is an estimate.
    assert record["usage"] is None or record["estimated"] is True


_IDS = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-([0-9a-f]{12})")


@pytest.mark.parametrize("stream", [False, True])
def test_client_gets_the_upstream_bytes(served: Served, stream: bool) -> None:
    body = {"model": MODEL, "messages": HELLO, "stream": stream, "tools": TOOLS}
    headers = {"authorization": "Bearer k"}
    via = httpx.post(served.url + "/cohere/v2/chat", json=body, headers=headers)
    direct = httpx.post(served.fake.base_url + "/v2/chat", json=body, headers=headers)
    assert via.status_code == direct.status_code == 200
    assert via.headers["content-type"] == direct.headers["content-type"]
    # The response and tool-call ids come from the fake's request counter: the one difference.
    via_id, direct_id = _IDS.search(via.content), _IDS.search(direct.content)
    assert via_id is not None and direct_id is not None
    same = via.content.replace(via_id[0], direct_id[0]).replace(via_id[1], direct_id[1])
    assert same == direct.content
    [record] = logs(served, 1)
    assert (record["streamed"], record["tool_calls"]) == (stream, 1)


# --- malformed upstream payloads (in-process gateway, upstream replayed by httpx.MockTransport) ------

_START = (
    b'event: message-start\ndata: {"id":"c1","type":"message-start","delta":{"message":{"role":"assistant"}}}\n\n'
    b'event: content-delta\ndata: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hi"}}}}\n\n'
)
_END = (
    b'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"COMPLETE",'
    b'"usage":{"tokens":{"input_tokens":12,"output_tokens":1}}}}\n\ndata: [DONE]\n\n'
)
MALFORMED = {
    "truncated_json": (
        "application/json",
        [b'{"id":"c1","message":{"role":"assistant","content":[{"type":"text","text":"Hi"}]},"finish_reason":"COM'],
        "invalid_response",
        "unparsable chat body",
    ),
    "truncated_event": (
        "text/event-stream",
        [_START, b'event: content-delta\ndata: {"type":"content-delta","index":0,"del\n\n', _END],
        "invalid_response",
        "unparsable stream events: content-delta",
    ),
    "unknown_event": (
        "text/event-stream",
        [_START, b'event: shiny-new-thing\ndata: {"type":"shiny-new-thing"}\n\n', _END],
        None,
        "unknown stream events passed through: shiny-new-thing",
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
            "providers": {"cohere": {"kind": "cohere", "base_url": "http://cohere.test", "api_keys": ["k"]}},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as upstream_client:
        gateway = create_gateway(config, client=upstream_client, registry=CollectorRegistry())
        await gateway.startup()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway)) as http:
                stream = content_type != "application/json"
                response = await http.post(
                    "http://gateway.test/cohere/v2/chat", json={"model": MODEL, "messages": HELLO, "stream": stream}
                )
            await gateway.pipeline.flush()
            store = gateway.exporters.log_store
            assert store is not None
            [record] = [json.loads(raw) for raw in store.query(limit=10)]
        finally:
            await gateway.shutdown()
    assert response.status_code == 200
    assert response.content == b"".join(chunks)  # byte for byte what the upstream sent
    assert (record["status"], record["error_type"], record["response_model"]) == (200, error_type, MODEL)
    assert record["error_message"].startswith(note)
    if case != "truncated_json":
        assert record["usage"]["input_tokens"] == 12 and record["finish_reason"] == "stop"


# --- the fake's Cohere mode on its own ----------------------------------------------------------------


async def test_fake_mode_answers_like_the_api() -> None:
    from cohere.v2.types import V2ChatResponse

    from llm_obs_middleware.testing import create_fake_provider

    app = create_fake_provider(FakeProviderConfig(prompt_tokens=9, completion_tokens=4))
    key = {"authorization": "Bearer k"}
    plain = {"model": MODEL, "messages": HELLO}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as http:
        no_tool = await http.post("/v2/chat", json={**plain, "tools": TOOLS, "tool_choice": "NONE"}, headers=key)
        errors = [
            await http.post("/v2/chat", json=plain),  # no key
            await http.get("/v2/chat", headers=key),
            await http.post("/v2/chat", json={"messages": HELLO}, headers=key),  # no model
            await http.post("/v2/chat", json={**plain, "model": "fail-500"}, headers=key),
            await http.post("/v2/chat", json=plain, headers={**key, "x-fake-status": "429"}),
            await http.post("/v2/chat", content=b"{", headers=key),
        ]
    response = V2ChatResponse.model_validate(no_tool.json())  # the SDK's own types accept the body
    assert response.finish_reason == "COMPLETE" and response.message.content is not None
    assert response.usage is not None and response.usage.tokens is not None
    assert (response.usage.tokens.input_tokens, response.usage.tokens.output_tokens) == (9, 4)
    assert [r.status_code for r in errors] == [401, 405, 400, 500, 429, 400]
    assert all(set(r.json()) == {"id", "message"} for r in errors)
