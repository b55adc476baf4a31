"""The official google-genai SDK through the gateway (native route ``/gemini``) to the fake over loopback.

Both hops are real HTTP: the SDK talks to the gateway served by uvicorn, and the gateway to the fake
provider's Gemini mode. Each test checks what the client got and what ``/logs``, ``/metrics`` and the
CLIENT span recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors, types
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer, create_fake_provider

FAKE = FakeProviderConfig(prompt_tokens=23, completion_tokens=9, cached_tokens=4, reasoning_tokens=3, chunks=3)
MODEL = "gemini-2.5-flash"
KEY = "gemini-upstream-key-123"
WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            parameters=types.Schema(
                type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]
            ),
        )
    ]
)


class Kit(NamedTuple):
    url: str
    spans: InMemorySpanExporter
    registry: CollectorRegistry

    def client(self, **headers: str) -> genai.Client:
        return genai.Client(api_key="client-key", http_options={"base_url": f"{self.url}/gemini", "headers": headers})

    def records(self, count: int) -> list[dict[str, Any]]:
        """Wait until ``count`` records reached /logs and their CLIENT spans ended; newest first."""
        deadline = time.monotonic() + 10
        while True:
            data: list[dict[str, Any]] = httpx.get(f"{self.url}/logs").json()["data"]
            if (len(data) >= count and len(self.client_spans()) >= count) or time.monotonic() > deadline:
                assert len(data) == count, data
                return data
            time.sleep(0.02)

    def client_spans(self) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.kind == SpanKind.CLIENT]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


class Tap:
    """Wraps the fake: keeps each request's query and headers and the exact response bytes."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {"query": scope["query_string"], "headers": dict(scope["headers"]), "body": b""}
        self.seen.append(seen)

        async def tapped(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen["status"], seen["response_headers"] = message["status"], dict(message["headers"])
            else:
                seen["body"] += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, tapped)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


@contextmanager
def serve(tmp_path: Path, base_url: str, **extra: Any) -> Iterator[Kit]:
    """The gateway over loopback, its provider ``gemini`` at ``base_url``."""
    config = Config.from_dict(
        {
            "providers": {"gemini": {"kind": "gemini", "base_url": base_url, "api_keys": [KEY]}},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
            **extra,
        }
    )
    spans, registry = InMemorySpanExporter(), CollectorRegistry()
    with BackgroundServer(create_gateway(config, span_exporter=spans, registry=registry)) as server:
        yield Kit(server.url, spans, registry)


@pytest.fixture
def kit(tmp_path: Path, fake: FakeProviderServer) -> Iterator[Kit]:
    with serve(tmp_path, fake.base_url, models={"flash": {"provider": "gemini", "model": MODEL}}) as kit:
        yield kit


def assert_usage(record: dict[str, Any]) -> None:
    assert record["usage"] == {
        "input_tokens": 23,
        "output_tokens": 9,
        "total_tokens": 32,
        "cache_read_tokens": 4,
        "reasoning_tokens": 3,
    }


def test_generate_content(kit: Kit, fake: FakeProviderServer) -> None:
    with kit.client() as client:
        response = client.models.generate_content(
            model=MODEL, contents="hi", config=types.GenerateContentConfig(temperature=0.2, max_output_tokens=50)
        )
    assert response.text == "Hello from the"
    assert response.usage_metadata is not None and response.usage_metadata.prompt_token_count == 23
    sent = fake.app.requests[-1]
    assert sent.path.endswith(f"/models/{MODEL}:generateContent")
    assert sent.headers["x-goog-api-key"] == KEY, "the gateway's key replaces the client's"
    [record] = kit.records(1)
    assert (record["provider"], record["api"], record["operation"]) == (
        "gcp.gemini",
        "gemini.generate_content",
        "generate_content",
    )
    assert (record["requested_model"], record["response_model"], record["rule"]) == (MODEL, MODEL, "native")
    assert (record["status"], record["outcome"], record["streamed"]) == (200, "completed", False)
    assert (record["finish_reason"], record["finish_reasons"]) == ("stop", ["STOP"])
    assert (record["params"]["temperature"], record["params"]["max_tokens"]) == (0.2, 50)
    assert record["response_id"] and record["error_type"] is None
    assert_usage(record)
    [candidate] = response.candidates or []
    assert record["extra"] == {
        "gemini.safety_ratings": [
            f"{rating.category.value}:{rating.probability.value}"  # type: ignore[union-attr]
            for rating in candidate.safety_ratings or []
        ]
    }
    assert len(record["extra"]["gemini.safety_ratings"]) == 4
    labels = {"provider": "gcp.gemini", "model": MODEL, "operation": "generate_content"}
    assert kit.metric("llm_obs_requests_total", **labels, status_class="2xx") == 1
    for kind, value in [("input", 23), ("output", 9), ("cache_read", 4), ("reasoning", 3)]:
        assert kit.metric("llm_obs_tokens_total", **labels, type=kind, estimated="false") == value
    [span] = kit.client_spans()
    assert span.name == f"generate_content {MODEL}"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert attributes["gen_ai.operation.name"] == "generate_content"
    assert (attributes["gen_ai.request.model"], attributes["gen_ai.response.model"]) == (MODEL, MODEL)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (23, 9)
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("STOP",)  # type: ignore[arg-type]
    assert format(span.context.trace_id, "032x") == record["trace_id"]


def test_generate_content_stream(kit: Kit) -> None:
    with kit.client() as client:
        chunks = list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    assert "".join(chunk.text or "" for chunk in chunks) == "Hello from the"
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata.total_token_count == 32
    [record] = kit.records(1)
    assert (record["api"], record["streamed"], record["outcome"]) == (
        "gemini.stream_generate_content",
        True,
        "completed",
    )
    assert record["finish_reason"] == "stop"
    assert record["timing"]["time_to_first_token_s"] > 0
    assert_usage(record)
    assert "HARM_CATEGORY_HARASSMENT:LOW" in record["extra"]["gemini.safety_ratings"]  # from the last chunk
    [span] = kit.client_spans()
    assert dict(span.attributes or {})["gen_ai.usage.output_tokens"] == 9
    labels = {"provider": "gcp.gemini", "model": MODEL, "operation": "generate_content"}
    assert kit.metric("llm_obs_time_to_first_token_seconds_count", **labels) == 1


def test_tools_plain_and_streamed(kit: Kit) -> None:
    config = types.GenerateContentConfig(tools=[WEATHER])
    with kit.client() as client:
        plain = client.models.generate_content(model=MODEL, contents="weather in Paris?", config=config)
        streamed = [
            call
            for chunk in client.models.generate_content_stream(model=MODEL, contents="weather?", config=config)
            for call in chunk.function_calls or ()
        ]
    assert plain.function_calls is not None
    assert [(call.name, call.args) for call in plain.function_calls] == [("get_weather", {"city": "fake"})]
    assert [call.name for call in streamed] == ["get_weather"]
    records = kit.records(2)
    assert [(r["finish_reason"], r["tool_calls"], r["streamed"]) for r in records] == [
        ("tool_calls", 1, True),
        ("tool_calls", 1, False),
    ]
    assert all(r["params"]["tool_definitions"] == 1 for r in records)


def test_embed_content(kit: Kit, fake: FakeProviderServer) -> None:
    with kit.client() as client:
        texts: list[types.ContentUnion] = ["a", "b"]
        result = client.models.embed_content(model="text-embedding-004", contents=texts)
    assert result.embeddings is not None and len(result.embeddings) == 2
    assert fake.app.requests[-1].path.endswith("/models/text-embedding-004:batchEmbedContents")
    [record] = kit.records(1)
    assert (record["operation"], record["api"], record["provider"]) == (
        "embeddings",
        "gemini.batch_embed_contents",
        "gcp.gemini",
    )
    assert (record["requested_model"], record["status"], record["outcome"]) == ("text-embedding-004", 200, "completed")


def test_alias_is_rewritten_in_the_path(kit: Kit, fake: FakeProviderServer) -> None:
    with kit.client() as client:
        response = client.models.generate_content(model="flash", contents="hi")
    assert response.model_version == MODEL
    assert fake.app.requests[-1].path.endswith(f"/models/{MODEL}:generateContent")
    [record] = kit.records(1)
    assert (record["requested_model"], record["response_model"], record["rule"]) == ("flash", MODEL, "flash")


def test_count_tokens_is_proxied_unrecorded(kit: Kit, fake: FakeProviderServer) -> None:
    with kit.client() as client:
        counted = client.models.count_tokens(model=MODEL, contents="hi")
    assert counted.total_tokens == FAKE.prompt_tokens
    assert fake.app.requests[-1].headers["x-goog-api-key"] == KEY
    assert httpx.get(f"{kit.url}/logs").json()["data"] == []


def test_resource_exhausted(kit: Kit) -> None:
    with kit.client(**{"x-fake-status": "429"}) as client, pytest.raises(genai_errors.ClientError) as raised:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (raised.value.code, raised.value.status) == (429, "RESOURCE_EXHAUSTED")
    [record] = kit.records(1)
    assert (record["status"], record["outcome"], record["error_type"]) == (429, "upstream_error", "RESOURCE_EXHAUSTED")
    assert record["finish_reason"] == "error" and record["usage"] is None
    labels = {"provider": "gcp.gemini", "model": MODEL, "operation": "generate_content"}
    assert kit.metric("llm_obs_errors_total", **labels, error_type="RESOURCE_EXHAUSTED") == 1
    [span] = kit.client_spans()
    assert dict(span.attributes or {})["error.type"] == "RESOURCE_EXHAUSTED"


def test_upstream_drop_mid_stream(kit: Kit) -> None:
    url = f"{kit.url}/gemini/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    with httpx.stream("POST", url, json={"contents": []}, headers={"x-fake-drop-after": "1"}) as response:
        body = response.read()
    assert response.status_code == 200
    # Gemini's own error shape (a google.rpc.Status), so google-genai raises it: see the test below.
    last = body.rstrip().rsplit(b"\n", 1)[-1]
    assert last.startswith(b"data: ") and json.loads(last[6:])["error"]["status"] == "UNAVAILABLE"
    [record] = kit.records(1)
    assert (record["outcome"], record["error_type"], record["streamed"]) == (
        "upstream_error",
        "upstream_disconnected",
        True,
    )
    assert record["usage"]["input_tokens"] == 23  # the usage the first chunk carried


def test_sdk_raises_when_the_gateway_cuts_the_stream(kit: Kit) -> None:
    chunks = []
    with kit.client(**{"x-fake-drop-after": "1"}) as client, pytest.raises(genai_errors.ServerError) as raised:
        chunks.extend(client.models.generate_content_stream(model=MODEL, contents="hi"))
    assert len(chunks) == 1  # what arrived before the cut
    assert raised.value.code == 502 and "closed the connection mid-response" in str(raised.value.message)
    assert kit.records(1)[0]["error_type"] == "upstream_disconnected"


# --- exact bytes and credentials ------------------------------------------------------------------


@pytest.fixture
def tapped(tmp_path: Path) -> Iterator[tuple[Kit, Tap]]:
    tap = Tap(create_fake_provider(FAKE))
    with BackgroundServer(tap, lifespan="off") as upstream, serve(tmp_path, upstream.url) as kit:
        yield kit, tap


@pytest.mark.parametrize("method", ["generateContent", "streamGenerateContent?alt=sse"])
def test_client_gets_the_upstream_bytes(tapped: tuple[Kit, Tap], method: str) -> None:
    kit, tap = tapped
    url = f"{kit.url}/gemini/v1beta/models/{MODEL}:{method}"
    with httpx.Client() as client:
        response = client.post(url, json={"contents": [{"parts": [{"text": "hi"}]}]}, headers={"x-fake-chunks": "4"})
    [seen] = tap.seen
    assert response.content == seen["body"]
    assert response.headers["content-type"] == seen["response_headers"][b"content-type"].decode()
    assert kit.records(1)[0]["usage"]["output_tokens"] == 9


def test_client_credentials_are_replaced(tapped: tuple[Kit, Tap]) -> None:
    kit, tap = tapped
    url = f"{kit.url}/gemini/v1beta/models/{MODEL}:streamGenerateContent?alt=sse&key=client-query-key"
    response = httpx.post(url, json={"contents": []}, headers={"x-goog-api-key": "client-header-key"})
    assert response.status_code == 200
    [seen] = tap.seen
    assert seen["query"] == b"alt=sse"
    assert seen["headers"][b"x-goog-api-key"] == KEY.encode()
    assert b"client-header-key" not in b"".join(value for value in seen["headers"].values())
    assert kit.records(1)[0]["outcome"] == "completed"


# --- malformed upstream payloads ------------------------------------------------------------------

GOOD_CHUNK = (
    b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}],'
    b'"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1,"totalTokenCount":6},"modelVersion":"m"}\r\n\r\n'
)
LAST_CHUNK = (
    b'data: {"candidates":[{"content":{"parts":[{"text":"!"}],"role":"model"},"finishReason":"STOP","index":0}],'
    b'"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":2,"totalTokenCount":7},"modelVersion":"m"}\r\n\r\n'
)
BAD_STREAM = GOOD_CHUNK + b"event: surprise\r\ndata: {not json\r\n\r\n" + LAST_CHUNK
TRUNCATED = b'{"candidates":[{"content":{"parts":[{"text":"Hi"}]}}],"usageMetadata":{"promptTok'


async def broken_gemini(scope: Scope, receive: Receive, send: Send) -> None:
    """An upstream answering malformed payloads: a truncated JSON body, a stream with a bad event."""
    assert scope["type"] == "http"
    streamed = "streamGenerateContent" in scope["path"]
    content_type = b"text/event-stream" if streamed else b"application/json"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": BAD_STREAM if streamed else TRUNCATED})


@pytest.mark.parametrize(
    ("method", "upstream"), [("generateContent", TRUNCATED), ("streamGenerateContent", BAD_STREAM)]
)
def test_malformed_payload_reaches_the_client_and_is_noted(tmp_path: Path, method: str, upstream: bytes) -> None:
    with BackgroundServer(broken_gemini, lifespan="off") as bad, serve(tmp_path, bad.url) as kit:
        response = httpx.post(f"{kit.url}/gemini/v1beta/models/m:{method}?alt=sse", json={"contents": []})
        assert (response.status_code, response.content) == (200, upstream)
        [record] = kit.records(1)
    assert (record["status"], record["error_type"]) == (200, "invalid_response")
    assert "could not be parsed" in record["error_message"]
    if method == "streamGenerateContent":
        # The events around the bad one still count.
        assert record["usage"]["input_tokens"] == 5 and record["usage"]["output_tokens"] == 2
        assert record["finish_reason"] == "stop"


# --- the fake's Gemini mode on its own ------------------------------------------------------------

KEYED = {"x-goog-api-key": "k"}


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "answer"),
    [
        ("POST", "/v1beta/models/m:nope", b"{}", KEYED, 404, b'"NOT_FOUND"'),
        ("GET", "/v1beta/models/m:generateContent", b"", KEYED, 405, b"not allowed"),
        ("POST", "/v1beta/models/m:generateContent", b"{}", {}, 403, b'"PERMISSION_DENIED"'),
        ("POST", "/v1beta/models/m:generateContent?key=k", b"{", {}, 400, b'"INVALID_ARGUMENT"'),
        ("POST", "/v1beta/models/fail-503:generateContent", b"{}", KEYED, 503, b'"UNAVAILABLE"'),
        ("POST", "/v1beta/models/m:generateContent", b"{}", {**KEYED, "x-fake-status": "418"}, 418, b'"UNKNOWN"'),
        ("POST", "/v1beta/models/m:batchEmbedContents", b"{}", KEYED, 400, b"contents is not specified"),
        ("POST", "/v1beta/models/m:embedContent", b'{"outputDimensionality": 2}', KEYED, 200, b"[0.01,0.02]}"),
        ("POST", "/v1beta/models/m:streamGenerateContent", b"{}", KEYED, 200, b'[{"candidates"'),
    ],
)
async def test_fake_gemini_mode(
    method: str, path: str, body: bytes, headers: dict[str, str], status: int, answer: bytes
) -> None:
    fake = create_fake_provider(FAKE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake), base_url="http://fake") as client:
        response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == status
    assert answer in response.content


async def test_fake_gemini_mode_tool_choice_none_and_root_path() -> None:
    fake = create_fake_provider(FAKE)
    body = {
        "contents": [],
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
    }
    transport = httpx.ASGITransport(app=fake, root_path="/up")
    async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers=KEYED) as client:
        plain = await client.post(f"/up/v1beta/models/{MODEL}:generateContent", json=body)
        del body["toolConfig"]
        called = await client.post(f"/up/v1beta/models/{MODEL}:generateContent", json=body)
    assert plain.json()["candidates"][0]["content"]["parts"] == [{"text": "Hello from the"}]
    assert called.json()["candidates"][0]["content"]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]
