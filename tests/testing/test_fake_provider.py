"""The fake provider: wire shapes the official SDK parses, usage from config, overrides and failures."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import openai
import pytest
from hypothesis import given, settings, strategies as st

from llm_obs_middleware.testing import (
    BackgroundServer,
    FakeProvider,
    FakeProviderConfig,
    FakeProviderServer,
    FakeStreamAborted,
    create_fake_provider,
)

AUTH = {"authorization": "Bearer sk-test"}
MESSAGES: Any = [{"role": "user", "content": "hi"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit", "days"],
        },
    },
}


def make_app(**config: Any) -> FakeProvider:
    return create_fake_provider(FakeProviderConfig(**config))


@asynccontextmanager
async def http(app: FakeProvider, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers={**AUTH, **headers}) as client:
        yield client


@asynccontextmanager
async def sdk(app: FakeProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http_client:
        # openai 3 annotates http_client as an httpx2 client but also accepts an httpx one.
        client = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="http://fake/v1",
            http_client=http_client,  # type: ignore[arg-type,unused-ignore]
            max_retries=0,
        )
        yield client
        await client.close()


class Recorder:
    """A scripted ASGI server side: one request body in, every message out with its time."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, dict[str, Any]]] = []

    async def run(self, app: FakeProvider, path: str, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = msgspec.json.encode(body)
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in {**AUTH, **(headers or {})}.items()],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: Any) -> None:
            self.messages.append((time.perf_counter(), message))

        self.start = time.perf_counter()
        await app(scope, receive, send)

    @property
    def events(self) -> list[bytes]:
        return [m["body"] for _, m in self.messages if m["type"] == "http.response.body"]

    def times(self) -> list[float]:
        return [t - self.start for t, _ in self.messages]


def sse_data(events: list[bytes]) -> list[Any]:
    out = []
    for event in events:
        for line in event.decode().splitlines():
            if line.startswith("data: "):
                out.append(line[6:] if line == "data: [DONE]" else msgspec.json.decode(line[6:]))
    return out


# --- Chat Completions ---------------------------------------------------------------------------


async def test_chat_plain_shape_and_usage_from_config() -> None:
    app = make_app(chunks=3, prompt_tokens=7, cached_tokens=2, reasoning_tokens=1)
    async with http(app) as client:
        response = await client.post("/v1/chat/completions", json={"model": "my-model", "messages": MESSAGES})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "my-model"
    assert body["choices"][0]["message"]["content"] == "Hello from the"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 7
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["total_tokens"] == 10
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 1


async def test_model_with_quotes_is_echoed_verbatim() -> None:
    async with http(make_app()) as client:
        body = (await client.post("/chat/completions", json={"model": 'we"ird\\__fake_id__', "messages": []})).json()
    assert body["model"] == 'we"ird\\__fake_id__'


async def test_chat_stream_without_include_usage_has_no_usage_chunk() -> None:
    recorder = Recorder()
    await recorder.run(make_app(chunks=4), "/v1/chat/completions", {"model": "m", "messages": [], "stream": True})
    start = recorder.messages[0][1]
    assert start["status"] == 200
    assert dict(start["headers"])[b"content-type"] == b"text/event-stream; charset=utf-8"
    data = sse_data(recorder.events)
    assert data[-1] == "[DONE]"
    chunks = data[:-1]
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello from the fake"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len({c["id"] for c in chunks}) == 1
    assert recorder.messages[-1][1]["more_body"] is False


async def test_chat_stream_include_usage_sends_final_usage_chunk_like_openai() -> None:
    recorder = Recorder()
    body = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    await recorder.run(make_app(chunks=2, prompt_tokens=9), "/v1/chat/completions", body)
    data = sse_data(recorder.events)
    usage_chunk = data[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 9
    assert usage_chunk["usage"]["completion_tokens"] == 2
    assert all(c["usage"] is None for c in data[:-2])


async def test_sdk_chat_plain_stream_and_tools() -> None:
    app = make_app(chunks=5, prompt_tokens=11)
    async with sdk(app) as client:
        plain = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert plain.choices[0].message.content == "Hello from the fake provider"
        assert plain.usage is not None and plain.usage.prompt_tokens == 11
        assert plain.model == "gpt-4o-mini"

        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake provider"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5

        tools = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL])
        choice = tools.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        assert choice.message.tool_calls is not None
        call = choice.message.tool_calls[0]
        assert call.type == "function"
        assert call.function.name == "get_weather"
        assert msgspec.json.decode(call.function.arguments) == {"city": "fake", "unit": "celsius", "days": 1}

        async with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL]) as s:
            final = await s.get_final_completion()
        streamed_call = final.choices[0].message.tool_calls
        assert streamed_call is not None
        assert streamed_call[0].function.name == "get_weather"
        assert streamed_call[0].function.arguments == call.function.arguments
        assert final.choices[0].finish_reason == "tool_calls"


async def test_streamed_tool_call_arrives_in_pieces() -> None:
    recorder = Recorder()
    body = {"model": "m", "messages": [], "stream": True, "tools": [WEATHER_TOOL]}
    await recorder.run(make_app(chunks=3), "/chat/completions", body)
    data = sse_data(recorder.events)[:-1]
    head = data[0]["choices"][0]["delta"]["tool_calls"][0]
    assert head["id"].startswith("call_") and head["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in data[1:-1]]
    assert len(pieces) == 3
    assert msgspec.json.decode("".join(pieces))["city"] == "fake"
    assert data[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_choice_none_answers_with_text() -> None:
    async with http(make_app()) as client:
        body = {"model": "m", "messages": [], "tools": [WEATHER_TOOL], "tool_choice": "none"}
        response = (await client.post("/v1/chat/completions", json=body)).json()
    assert response["choices"][0]["finish_reason"] == "stop"


# --- Responses ----------------------------------------------------------------------------------


async def test_sdk_responses_plain_and_stream() -> None:
    app = make_app(chunks=5, prompt_tokens=20, cached_tokens=4, reasoning_tokens=3, completion_tokens=9)
    async with sdk(app) as client:
        plain = await client.responses.create(model="o4-mini", input="hi")
        assert plain.output_text == "Hello from the fake provider"
        assert plain.model == "o4-mini"
        assert plain.status == "completed"
        assert plain.usage is not None
        assert (plain.usage.input_tokens, plain.usage.output_tokens, plain.usage.total_tokens) == (20, 9, 29)
        assert plain.usage.input_tokens_details.cached_tokens == 4
        assert plain.usage.output_tokens_details.reasoning_tokens == 3

        events = [event async for event in await client.responses.create(model="o4-mini", input="hi", stream=True)]
        types = [event.type for event in events]
        assert types[0] == "response.created" and types[-1] == "response.completed"
        assert types.count("response.output_text.delta") == 5
        assert [e.sequence_number for e in events] == list(range(len(events)))

        async with client.responses.stream(model="o4-mini", input="hi") as stream:
            final = await stream.get_final_response()
        assert final.output_text == "Hello from the fake provider"
        assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 4


async def test_sdk_responses_function_call_plain_and_stream() -> None:
    tool: Any = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"n": {}}}}
    async with sdk(make_app()) as client:
        plain = await client.responses.create(model="o4-mini", input="hi", tools=[tool])
        assert plain.output[0].type == "function_call"
        assert plain.output[0].name == "lookup"
        async with client.responses.stream(model="o4-mini", input="hi", tools=[tool]) as stream:
            final = await stream.get_final_response()
        item = final.output[0]
        assert item.type == "function_call" and item.arguments == '{"n":"fake"}'


async def test_responses_stream_uses_named_events_without_done() -> None:
    recorder = Recorder()
    await recorder.run(make_app(chunks=2), "/v1/responses", {"model": "m", "input": "x", "stream": True})
    text = b"".join(recorder.events).decode()
    assert text.startswith("event: response.created\ndata: ")
    assert "[DONE]" not in text
    completed = sse_data(recorder.events)[-1]
    assert completed["type"] == "response.completed"
    assert completed["response"]["usage"]["output_tokens"] == 2


# --- Embeddings and models ----------------------------------------------------------------------


async def test_sdk_embeddings_base64_default_and_float() -> None:
    async with sdk(make_app(prompt_tokens=19)) as client:
        default = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        floats = await client.embeddings.create(
            model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
        )
    assert len(default.data) == 2 and len(default.data[0].embedding) == 8
    assert default.usage.prompt_tokens == 19 and default.usage.total_tokens == 19
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert default.data[0].embedding != default.data[1].embedding


async def test_embeddings_wire_formats_dimensions_and_input_kinds() -> None:
    async with http(make_app()) as client:
        raw = await client.post("/v1/embeddings", json={"model": "e", "input": "x", "encoding_format": "base64"})
        vector = raw.json()["data"][0]["embedding"]
        assert isinstance(vector, str) and len(struct.unpack("<8f", base64.b64decode(vector))) == 8
        sized = await client.post("/embeddings", json={"model": "e", "input": [1, 2, 3], "dimensions": 4})
        assert [len(d["embedding"]) for d in sized.json()["data"]] == [4]
        many = await client.post("/embeddings", json={"model": "e", "input": [[1, 2], [3]]})
        assert len(many.json()["data"]) == 2
        empty = await client.post("/embeddings", json={"model": "e", "input": []})
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"
        huge = await client.post("/embeddings", json={"model": "e", "input": "x", "dimensions": 100_000})
        assert huge.status_code == 400


async def test_models_list_and_retrieve() -> None:
    async with sdk(make_app(models=("a", "b"))) as client:
        models = await client.models.list()
        assert [m.id for m in models.data] == ["a", "b"]
        assert (await client.models.retrieve("gpt-x")).id == "gpt-x"


async def test_paths_without_v1_and_under_root_path() -> None:
    app = make_app()
    transport = httpx.ASGITransport(app=app, root_path="/upstream")
    async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers=AUTH) as client:
        response = await client.post("/upstream/v1/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 200
    async with http(app) as client:
        assert (await client.get("/models")).status_code == 200


# --- Failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/embeddings"])
async def test_request_validation(path: str) -> None:
    async with http(make_app()) as client:
        malformed = await client.post(path, content=b"{not json")
        assert malformed.status_code == 400
        assert malformed.json()["error"]["type"] == "invalid_request_error"
        missing = await client.post(path, json={"messages": [], "input": "x"})
        assert missing.status_code == 400
        assert missing.json()["error"] == {
            "message": "you must provide a model parameter",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
        not_object = await client.post(path, json=["model"])
        assert not_object.status_code == 400


async def test_missing_authorization_is_401_and_azure_api_key_accepted() -> None:
    app = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as client:
        response = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        azure = await client.post("/chat/completions", json={"model": "m"}, headers={"api-key": "k"})
        assert azure.status_code == 200


async def test_unknown_path_and_wrong_method() -> None:
    async with http(make_app()) as client:
        assert (await client.post("/v1/nope", json={})).status_code == 404
        assert (await client.get("/v1/chat/completions")).status_code == 405


@pytest.mark.parametrize("status", [400, 429, 500, 503])
async def test_x_fake_status(status: int) -> None:
    async with http(make_app(), **{"x-fake-status": str(status)}) as client:
        response = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.headers.get("retry-after") == ("1" if status == 429 else None)


@pytest.mark.parametrize(("model", "status"), [("fail-500", 500), ("fail-429-model", 429), ("fail-503x", 503)])
async def test_failing_model_names(model: str, status: int) -> None:
    async with http(make_app()) as client:
        response = await client.post("/v1/chat/completions", json={"model": model, "messages": []})
    assert response.status_code == status


async def test_sdk_sees_typed_errors() -> None:
    async with sdk(make_app()) as client:
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="fail-429", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError):
            await client.embeddings.create(model="fail-503", input="x")


async def test_fail_status_config_and_success_status_header() -> None:
    async with http(make_app(fail_status=502)) as client:
        assert (await client.post("/v1/responses", json={"model": "m"})).status_code == 502
    async with http(make_app(), **{"x-fake-status": "200"}) as client:
        assert (await client.post("/v1/responses", json={"model": "m"})).status_code == 200


async def test_a_new_config_applies_to_the_next_request() -> None:
    app = make_app()
    async with http(app) as client:
        assert (await client.post("/v1/responses", json={"model": "m"})).status_code == 200
        app.config = FakeProviderConfig(fail_status=503)
        assert (await client.post("/v1/responses", json={"model": "m"})).status_code == 503


@pytest.mark.parametrize(
    ("header", "value"),
    [("x-fake-status", "abc"), ("x-fake-status", "700"), ("x-fake-latency-ms", "-5"), ("x-fake-chunks", "nan")],
)
async def test_invalid_override_headers_are_400(header: str, value: str) -> None:
    async with http(make_app(), **{header: value}) as client:
        response = await client.post("/v1/chat/completions", json={"model": "m"})
    assert response.status_code == 400
    assert header in response.json()["error"]["message"]


async def test_drop_after_sends_n_events_then_aborts() -> None:
    recorder = Recorder()
    with pytest.raises(FakeStreamAborted):
        await recorder.run(
            make_app(), "/v1/chat/completions", {"model": "m", "stream": True}, {"x-fake-drop-after": "3"}
        )
    assert len(recorder.events) == 3
    assert all(m["more_body"] for _, m in recorder.messages[1:])
    assert b"[DONE]" not in b"".join(recorder.events)


async def test_drop_after_beyond_the_stream_completes_it() -> None:
    recorder = Recorder()
    await recorder.run(make_app(), "/v1/chat/completions", {"model": "m", "stream": True}, {"x-fake-drop-after": "99"})
    assert recorder.events[-1] == b"data: [DONE]\n\n"


# --- Timing and chunk overrides -------------------------------------------------------------------


async def test_latency_ttft_and_interval_from_headers() -> None:
    recorder = Recorder()
    headers = {
        "x-fake-latency-ms": "30",
        "x-fake-ttft-ms": "40",
        "x-fake-chunk-interval-ms": "10",
        "x-fake-chunks": "3",
    }
    await recorder.run(make_app(), "/v1/chat/completions", {"model": "m", "stream": True}, headers)
    times = recorder.times()
    # start, role preamble, 3 content chunks, finish, [DONE]
    assert len(times) == 7
    assert times[0] >= 0.03
    assert times[1] - times[0] < 0.02  # the preamble goes out with the headers
    assert times[2] - times[1] >= 0.04  # first token after the TTFT delay
    assert times[3] - times[2] >= 0.01 and times[4] - times[3] >= 0.01


async def test_config_timing_applies_to_responses_stream() -> None:
    recorder = Recorder()
    app = make_app(latency_s=0.02, ttft_s=0.03, chunks=1)
    await recorder.run(app, "/v1/responses", {"model": "m", "stream": True})
    times = recorder.times()
    first_delta = next(i for i, e in enumerate(recorder.events) if b"output_text.delta" in e)
    assert times[0] >= 0.02
    assert times[first_delta + 1] - times[first_delta] >= 0.03


async def test_chunk_override_sets_completion_tokens_unless_configured() -> None:
    async with http(make_app(), **{"x-fake-chunks": "2"}) as client:
        body = (await client.post("/v1/chat/completions", json={"model": "m"})).json()
    assert body["usage"]["completion_tokens"] == 2
    async with http(make_app(completion_tokens=50), **{"x-fake-chunks": "2"}) as client:
        body = (await client.post("/v1/chat/completions", json={"model": "m"})).json()
    assert body["usage"]["completion_tokens"] == 50


@settings(max_examples=25, deadline=None)
@given(chunks=st.integers(min_value=0, max_value=40), include_usage=st.booleans())
def test_stream_and_plain_carry_the_same_text(chunks: int, include_usage: bool) -> None:
    app = make_app(chunks=chunks)

    async def scenario() -> tuple[str, str, int]:
        recorder = Recorder()
        body = {"model": "m", "stream": True, "stream_options": {"include_usage": include_usage}}
        await recorder.run(app, "/v1/chat/completions", body)
        data = [c for c in sse_data(recorder.events) if c != "[DONE]"]
        streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in data if c["choices"])
        plain = Recorder()
        await plain.run(app, "/v1/chat/completions", {"model": "m"})
        content = msgspec.json.decode(plain.events[0])["choices"][0]["message"]["content"]
        return streamed, content, sum(1 for c in data if not c["choices"])

    streamed, content, usage_chunks = asyncio.run(scenario())
    assert streamed == content
    assert usage_chunks == (1 if include_usage else 0)


async def test_template_cache_stays_bounded() -> None:
    app = make_app()
    async with http(app) as client:
        for chunks in range(300):
            response = await client.post(
                "/v1/chat/completions", json={"model": "m"}, headers={"x-fake-chunks": str(chunks)}
            )
            assert response.json()["usage"]["completion_tokens"] == chunks
    assert len(app._templates) <= 256


# --- Recording and other scopes -----------------------------------------------------------------


async def test_requests_are_recorded_and_bounded() -> None:
    app = make_app()
    async with http(app, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01") as client:
        await client.post("/v1/chat/completions", json={"model": "m", "stream": True})
        recorded = app.requests[-1]
        assert recorded.path == "/v1/chat/completions"
        assert recorded.headers["authorization"] == "Bearer sk-test"
        assert recorded.headers["traceparent"].startswith("00-aaaa")
        assert recorded.json() == {"model": "m", "stream": True}
        path, headers, body = recorded
        assert (path, headers, body) == (recorded.path, recorded.headers, recorded.body)
        for _ in range(120):
            await client.get("/v1/models")
    assert len(app.requests) == 100


async def test_chunked_request_body_is_reassembled() -> None:
    app = make_app()
    parts = [b'{"model":', b'"m"}']
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [(b"authorization", b"k")]}
    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    assert app.requests[-1].body == b'{"model":"m"}'


async def test_lifespan_and_websocket_scopes() -> None:
    app = make_app()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    await app({"type": "websocket", "path": "/"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete", "websocket.close"]


# --- Over loopback ------------------------------------------------------------------------------


def test_fake_provider_server_over_loopback() -> None:
    with FakeProviderServer(FakeProviderConfig(prompt_tokens=5)) as fake:
        assert fake.url == f"http://127.0.0.1:{fake.port}/v1"
        assert fake.base_url + "/v1" == fake.url
        client = openai.OpenAI(base_url=fake.url, api_key="sk-loop", max_retries=0)
        try:
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        finally:
            client.close()
        assert reply.usage is not None and reply.usage.prompt_tokens == 5
        assert text == reply.choices[0].message.content
        assert fake.app.requests[-1].headers["authorization"] == "Bearer sk-loop"

        with httpx.Client(base_url=fake.url, headers={**AUTH, "x-fake-drop-after": "2"}) as http_client:
            with pytest.raises(httpx.RemoteProtocolError):
                with http_client.stream("POST", "/chat/completions", json={"model": "m", "stream": True}) as r:
                    for _ in r.iter_bytes():
                        pass
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.url + "/models")


async def test_fake_provider_server_from_async_code_keeps_keepalive_fast() -> None:
    # The server binds its own socket; it must still get TCP_NODELAY, or keep-alive requests stall ~40 ms.
    with FakeProviderServer() as fake:
        async with httpx.AsyncClient(base_url=fake.url, headers=AUTH) as client:
            await client.get("/models")
            took = []
            for _ in range(5):
                started = time.perf_counter()
                assert (await client.post("/chat/completions", json={"model": "m"})).status_code == 200
                took.append(time.perf_counter() - started)
            # Nagle's stall delays every request by ~40 ms; the quickest shows it even on a busy machine.
            assert min(took) < 0.03


def test_background_server_reports_startup_failure() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "nope"})

    server = BackgroundServer(broken, lifespan="on")
    with pytest.raises(RuntimeError, match="failed to start"):
        server.start()
    server.stop()  # idempotent after a failed start


def test_background_server_port_in_use_and_double_start() -> None:
    with FakeProviderServer() as fake:
        with pytest.raises(OSError):
            BackgroundServer(fake.app, port=fake.port).start()
        with pytest.raises(RuntimeError, match="already started"):
            fake.start()
