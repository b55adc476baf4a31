"""The official ollama SDK through the gateway (native route ``/ollama``) to the fake over loopback.

Both hops are real HTTP: the SDK talks to the gateway served by uvicorn, and the gateway to the fake
provider's Ollama mode (NDJSON streams). Each test checks what the client got and what ``/logs``,
``/metrics`` and the CLIENT span recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import ollama
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer, create_fake_provider

FAKE = FakeProviderConfig(prompt_tokens=23, completion_tokens=9, chunks=3)
MODEL = "qwen3:8b"
HI = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Kit(NamedTuple):
    url: str
    spans: InMemorySpanExporter
    registry: CollectorRegistry

    def client(self, **headers: str) -> ollama.Client:
        return ollama.Client(host=f"{self.url}/ollama", headers=headers)

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


@pytest.fixture(autouse=True)
def no_client_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)  # the SDK would send it as a bearer token


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


@contextmanager
def serve(tmp_path: Path, base_url: str, **provider: Any) -> Iterator[Kit]:
    """The gateway over loopback, its provider ``ollama`` at ``base_url`` (no key unless given)."""
    config = Config.from_dict(
        {
            "providers": {"ollama": {"kind": "ollama", "base_url": base_url, **provider}},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    spans, registry = InMemorySpanExporter(), CollectorRegistry()
    with BackgroundServer(create_gateway(config, span_exporter=spans, registry=registry)) as server:
        yield Kit(server.url, spans, registry)


@pytest.fixture
def kit(tmp_path: Path, fake: FakeProviderServer) -> Iterator[Kit]:
    with serve(tmp_path, fake.base_url) as kit:
        yield kit


def assert_usage(record: dict[str, Any]) -> None:
    assert record["usage"] == {"input_tokens": 23, "output_tokens": 9, "total_tokens": 32}
    assert record["estimated"] is False


def test_chat(kit: Kit, fake: FakeProviderServer) -> None:
    with kit.client(authorization="Bearer client-key") as client:
        response = client.chat(model=MODEL, messages=HI, options={"temperature": 0.1, "num_predict": 64})
    assert response.message.content == "Hello from the"
    assert (response.prompt_eval_count, response.eval_count, response.done_reason) == (23, 9, "stop")
    sent = fake.app.requests[-1]
    assert sent.path == "/api/chat"
    assert "authorization" not in sent.headers, "no key configured: nothing (and never the client's) goes upstream"
    [record] = kit.records(1)
    assert (record["provider"], record["api"], record["operation"]) == ("ollama", "ollama.chat", "chat")
    assert (record["requested_model"], record["response_model"]) == (MODEL, MODEL)
    assert (record["status"], record["outcome"], record["streamed"]) == (200, "completed", False)
    assert (record["finish_reason"], record["finish_reasons"], record["error_type"]) == ("stop", ["stop"], None)
    assert (record["params"]["temperature"], record["params"]["max_tokens"]) == (0.1, 64)
    assert_usage(record)
    assert record["extra"] == {  # Ollama's timings, as the SDK got them
        "ollama.total_duration_ns": response.total_duration,
        "ollama.load_duration_ns": response.load_duration,
    }
    labels = {"provider": "ollama", "model": MODEL, "operation": "chat"}
    assert kit.metric("llm_obs_requests_total", **labels, status_class="2xx") == 1
    assert kit.metric("llm_obs_tokens_total", **labels, type="input", estimated="false") == 23
    assert kit.metric("llm_obs_tokens_total", **labels, type="output", estimated="false") == 9
    [span] = kit.client_spans()
    assert span.name == f"chat {MODEL}"
    attributes = dict(span.attributes or {})
    assert (attributes["gen_ai.provider.name"], attributes["gen_ai.response.model"]) == ("ollama", MODEL)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (23, 9)
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)  # type: ignore[arg-type]


def test_chat_stream(kit: Kit) -> None:
    with kit.client() as client:
        parts = list(client.chat(model=MODEL, messages=HI, stream=True))
    assert "".join(part.message.content or "" for part in parts) == "Hello from the"
    assert parts[-1].done and parts[-1].eval_count == 9
    [record] = kit.records(1)
    assert (record["streamed"], record["outcome"], record["finish_reason"]) == (True, "completed", "stop")
    assert record["timing"]["time_to_first_token_s"] > 0
    assert record["timing"]["chunks"] >= 1
    assert_usage(record)
    [span] = kit.client_spans()
    assert dict(span.attributes or {})["llm_obs.streamed"] is True
    labels = {"provider": "ollama", "model": MODEL, "operation": "chat"}
    assert kit.metric("llm_obs_time_to_first_token_seconds_count", **labels) == 1


def test_tools_plain_and_streamed(kit: Kit) -> None:
    with kit.client() as client:
        plain = client.chat(model=MODEL, messages=HI, tools=[WEATHER])
        streamed = [
            call.function.name
            for part in client.chat(model=MODEL, messages=HI, tools=[WEATHER], stream=True)
            for call in part.message.tool_calls or ()
        ]
    assert plain.message.tool_calls is not None
    assert [(c.function.name, dict(c.function.arguments)) for c in plain.message.tool_calls] == [
        ("get_weather", {"city": "fake"})
    ]
    assert streamed == ["get_weather"]
    records = kit.records(2)
    assert [(r["finish_reason"], r["tool_calls"], r["streamed"]) for r in records] == [
        ("tool_calls", 1, True),
        ("tool_calls", 1, False),
    ]
    assert all(r["params"]["tool_definitions"] == 1 for r in records)


def test_generate_plain_and_streamed(kit: Kit) -> None:
    with kit.client() as client:
        plain = client.generate(model=MODEL, prompt="hi", system="be brief")
        streamed = "".join(part.response for part in client.generate(model=MODEL, prompt="hi", stream=True))
    assert plain.response == streamed == "Hello from the"
    records = kit.records(2)
    assert {(r["api"], r["operation"]) for r in records} == {("ollama.generate", "text_completion")}
    assert [r["streamed"] for r in records] == [True, False]
    for record in records:
        assert_usage(record)


def test_embed(kit: Kit) -> None:
    with kit.client() as client:
        result = client.embed(model="all-minilm", input=["a", "b"])
    assert len(result.embeddings) == 2
    [record] = kit.records(1)
    assert (record["operation"], record["api"], record["requested_model"]) == (
        "embeddings",
        "ollama.embed",
        "all-minilm",
    )
    assert record["usage"] == {"input_tokens": 23, "total_tokens": 23}


def test_stream_is_the_default(kit: Kit) -> None:
    """Ollama streams when the request has no "stream" field: so does the record."""
    response = httpx.post(f"{kit.url}/ollama/api/chat", json={"model": MODEL, "messages": HI})
    assert response.headers["content-type"] == "application/x-ndjson"
    assert len(response.text.splitlines()) == 4
    [record] = kit.records(1)
    assert record["streamed"] is True
    assert_usage(record)


def test_error_status(kit: Kit) -> None:
    with kit.client(**{"x-fake-status": "429"}) as client, pytest.raises(ollama.ResponseError) as raised:
        client.chat(model=MODEL, messages=HI)
    assert raised.value.status_code == 429
    [record] = kit.records(1)
    assert (record["status"], record["outcome"], record["error_type"]) == (429, "upstream_error", "http_429")
    assert record["error_message"] is None  # the provider's text is content: capture is off
    labels = {"provider": "ollama", "model": MODEL, "operation": "chat"}
    assert kit.metric("llm_obs_errors_total", **labels, error_type="http_429") == 1
    [span] = kit.client_spans()
    assert dict(span.attributes or {})["error.type"] == "http_429"


def test_in_band_stream_error(kit: Kit) -> None:
    with kit.client(**{"x-fake-stream-error": "2"}) as client, pytest.raises(ollama.ResponseError) as raised:
        for _ in client.chat(model=MODEL, messages=HI, stream=True):
            pass
    assert "unexpected EOF" in raised.value.error
    [record] = kit.records(1)
    assert (record["status"], record["streamed"], record["finish_reason"]) == (200, True, "error")
    assert record["error_type"] == "stream_error"
    assert record["error_message"] is None  # the provider's text is content: capture is off
    [span] = kit.client_spans()
    assert dict(span.attributes or {})["error.type"] == "stream_error"


def test_configured_key_is_sent_as_bearer(tmp_path: Path, fake: FakeProviderServer) -> None:
    with serve(tmp_path, fake.base_url, api_keys=["ollama-cloud-key"]) as kit, kit.client() as client:
        client.chat(model=MODEL, messages=HI)
    assert fake.app.requests[-1].headers["authorization"] == "Bearer ollama-cloud-key"


def test_openai_compatible_api(tmp_path: Path, fake: FakeProviderServer) -> None:
    """Ollama's /v1 API through the same provider prefix, observed in the OpenAI format."""
    with serve(tmp_path, fake.base_url, api_keys=["k"]) as kit:
        with openai.OpenAI(base_url=f"{kit.url}/ollama/v1", api_key="client", max_retries=0) as client:
            stream = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text
        assert fake.app.requests[-1].path == "/v1/chat/completions"
        [record] = kit.records(1)
    assert (record["provider"], record["api"], record["streamed"]) == ("ollama", "openai.chat_completions", True)
    assert record["usage"]["input_tokens"] == 23 and record["finish_reason"] == "stop"
    # OpenAI-format extras from the stream's chunks.
    assert record["extra"] == {"openai.system_fingerprint": "fp_fake", "openai.service_tier": "default"}


def test_upstream_drop_mid_stream(kit: Kit) -> None:
    headers = {"x-fake-drop-after": "2"}
    with httpx.stream(
        "POST", f"{kit.url}/ollama/api/chat", json={"model": MODEL, "messages": HI}, headers=headers
    ) as r:
        received = r.read()
    assert r.status_code == 200
    # The two lines the upstream sent before it dropped, then the gateway's error line (Ollama's own shape).
    *lines, last = [json.loads(line) for line in received.splitlines()]
    assert [line["message"]["content"] for line in lines] == ["Hello", " from"]
    assert set(last) == {"error"} and "ollama" in last["error"], last  # names the provider that dropped
    [record] = kit.records(1)
    assert (record["status"], record["streamed"], record["outcome"], record["error_type"]) == (
        200,
        True,
        "upstream_error",
        "upstream_disconnected",
    )
    assert record["finish_reason"] == "error"  # no final line (no done_reason, no counts): the error line
    assert record["error_message"] == last["error"]
    assert record["estimated"] is True


def test_upstream_drop_mid_stream_raises_in_the_sdk(kit: Kit) -> None:
    """The SDK reads the gateway's final error line as Ollama's own in-band error and raises."""
    with (
        kit.client(**{"x-fake-drop-after": "2"}) as client,
        pytest.raises(ollama.ResponseError) as raised,
    ):
        for _ in client.chat(model=MODEL, messages=HI, stream=True):
            pass
    assert "ollama" in raised.value.error
    [record] = kit.records(1)
    assert (record["outcome"], record["error_type"]) == ("upstream_error", "upstream_disconnected")


def test_client_disconnect_mid_stream(kit: Kit) -> None:
    headers = {"x-fake-chunk-interval-ms": "300"}
    with httpx.stream(
        "POST", f"{kit.url}/ollama/api/chat", json={"model": MODEL, "messages": HI}, headers=headers
    ) as r:
        first = next(r.iter_lines())
    assert json.loads(first)["message"]["content"] == "Hello"
    [record] = kit.records(1)
    assert (record["outcome"], record["error_type"], record["streamed"]) == (
        "client_disconnected",
        "client_disconnected",
        True,
    )


# --- exact bytes and malformed payloads -----------------------------------------------------------


class Tap:
    """Wraps an upstream app and keeps the exact response bytes it sent."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        index = len(self.bodies)
        self.bodies.append(b"")

        async def tapped(message: Any) -> None:
            if message["type"] == "http.response.body":
                self.bodies[index] += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, tapped)


@pytest.mark.parametrize("stream", [False, True])
def test_client_gets_the_upstream_bytes(tmp_path: Path, stream: bool) -> None:
    tap = Tap(create_fake_provider(FAKE))
    with BackgroundServer(tap, lifespan="off") as upstream, serve(tmp_path, upstream.url) as kit:
        body = {"model": MODEL, "messages": HI, "stream": stream, "tools": [WEATHER]}
        response = httpx.post(f"{kit.url}/ollama/api/chat", json=body, headers={"x-fake-chunks": "4"})
        assert response.content == tap.bodies[0]
        assert kit.records(1)[0]["tool_calls"] == 1


GOOD = b'{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}\n'
LAST = (
    b'{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop",'
    b'"prompt_eval_count":5,"eval_count":2}\n'
)
BAD_STREAM = GOOD + b'{"model":"m","message":{"role":\n' + b'{"type":"unknown-event"}\n' + LAST
TRUNCATED = b'{"model":"m","message":{"role":"assistant","content":"Hi"},"done":true,"prompt_eval'


async def broken_ollama(scope: Scope, receive: Receive, send: Send) -> None:
    """An upstream answering malformed payloads: a truncated JSON body, an NDJSON stream with a bad line."""
    assert scope["type"] == "http"
    request = await receive()
    streamed = b'"stream":false' not in request["body"].replace(b" ", b"")
    content_type = b"application/x-ndjson" if streamed else b"application/json"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": BAD_STREAM if streamed else TRUNCATED})


@pytest.mark.parametrize(("stream", "upstream"), [(False, TRUNCATED), (True, BAD_STREAM)])
def test_malformed_payload_reaches_the_client_and_is_noted(tmp_path: Path, stream: bool, upstream: bytes) -> None:
    with BackgroundServer(broken_ollama, lifespan="off") as bad, serve(tmp_path, bad.url) as kit:
        response = httpx.post(f"{kit.url}/ollama/api/chat", json={"model": "m", "messages": HI, "stream": stream})
        assert (response.status_code, response.content) == (200, upstream)
        [record] = kit.records(1)
    assert (record["status"], record["error_type"]) == (200, "invalid_response")
    assert "could not be parsed" in record["error_message"]
    if stream:
        # The lines around the bad one still count; an unknown object is no error.
        assert record["usage"] == {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}
        assert record["finish_reason"] == "stop"


# --- the fake's Ollama mode on its own ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "answer"),
    [
        ("POST", "/api/pull", b"{}", {}, 404, b"404 page not found"),
        ("GET", "/api/chat", b"", {}, 405, b"405 method not allowed"),
        ("POST", "/api/chat", b"{", {}, 400, b"invalid character"),
        ("POST", "/api/chat", b'{"messages": []}', {}, 400, b"model is required"),
        ("POST", "/api/chat", b'{"model": "fail-503"}', {}, 503, b"fake failure requested by model"),
        ("POST", "/api/generate", b'{"model": "m"}', {"x-fake-status": "500"}, 500, b"x-fake-status"),
        ("POST", "/api/embeddings", b'{"model": "m", "prompt": "a"}', {}, 200, b'{"embedding":[0.01,'),
        ("POST", "/api/generate", b'{"model": "m", "stream": false}', {}, 200, b'"response":"Hello from the"'),
    ],
)
async def test_fake_ollama_mode(
    method: str, path: str, body: bytes, headers: dict[str, str], status: int, answer: bytes
) -> None:
    fake = create_fake_provider(FAKE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake), base_url="http://fake") as client:
        response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == status
    assert answer in response.content


async def test_fake_ollama_mode_under_a_root_path_and_thinking() -> None:
    fake = create_fake_provider(FAKE)
    transport = httpx.ASGITransport(app=fake, root_path="/up")
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        response = await client.post(
            "/up/api/chat", json={"model": "m", "messages": HI, "think": True, "stream": False}
        )
    message = response.json()["message"]
    assert message["thinking"] and message["content"] == "Hello from the"
    assert response.json()["eval_count"] == 9
