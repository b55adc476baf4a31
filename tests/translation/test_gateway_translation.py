"""The official openai SDK through the gateway to Anthropic and Gemini (the fake provider's native modes).

Gateway and fake run under uvicorn on loopback ports; the SDK is the synchronous ``openai.OpenAI``
pointed at ``http://HOST:PORT/v1``. Each test checks what the client got, what went upstream and
what the record (``/logs``) and the CLIENT span say.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer
from llm_obs_middleware.testing._fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

FAKE = FakeProviderConfig(prompt_tokens=40, completion_tokens=6, cached_tokens=10, chunks=4)
ANTHROPIC_KEY = "sk-ant-upstream-secret-5678"
GEMINI_KEY = "gemini-upstream-secret-9012"
HELLO: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
]
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
T = TypeVar("T")


class Served(NamedTuple):
    url: str
    fake: FakeProviderServer
    spans: InMemorySpanExporter


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


def gateway_config(fake: FakeProviderServer, tmp_path: Path, routing: dict[str, Any] | None = None) -> Config:
    return Config.from_dict(
        {
            "providers": {
                "anthropic": {"kind": "anthropic", "base_url": fake.base_url, "api_keys": [ANTHROPIC_KEY]},
                "gemini": {"kind": "gemini", "base_url": fake.base_url, "api_keys": [GEMINI_KEY]},
                "bedrock": {
                    "kind": "bedrock",
                    "base_url": fake.base_url,
                    # The fake checks the SigV4 signature: a translated request is signed like a native one.
                    "aws_access_key_id": TEST_ACCESS_KEY_ID,
                    "aws_secret_access_key": TEST_SECRET_ACCESS_KEY,
                    "aws_region": "us-east-1",
                },
                "cohere": {"kind": "cohere", "base_url": fake.base_url, "api_keys": ["cohere-upstream-secret"]},
                "ollama": {"kind": "ollama", "base_url": fake.base_url},
                "openai": {"kind": "openai", "base_url": fake.url, "api_keys": ["sk-openai-upstream"]},
            },
            "models": {
                "claude-sonnet": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
                "gemini-flash": {"provider": "gemini", "model": "gemini-2.5-flash"},
                # Anthropic is overloaded (the fake answers 529 for a fail-529 model): Gemini takes over.
                "claude-then-gemini": {
                    "provider": "anthropic",
                    "model": "fail-529-claude",
                    "fallbacks": ["gemini-flash"],
                },
                # One alias mixing formats: OpenAI is down (503), Anthropic is overloaded (529), Gemini serves.
                "mixed": {
                    "deployments": [
                        {"provider": "openai", "model": "fail-503-gpt", "weight": 1000},
                        {"provider": "anthropic", "model": "fail-529-claude", "weight": 1},
                    ],
                    "fallbacks": ["gemini-flash"],
                },
                "strict-claude": {
                    "provider": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "unsupported_params": "error",
                },
            },
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
            "routing": routing or {"retries": 0},  # one attempt per alias: the record shows what was tried
        }
    )


@pytest.fixture
def served(fake: FakeProviderServer, tmp_path: Path) -> Iterator[Served]:
    spans = InMemorySpanExporter()
    with BackgroundServer(create_gateway(gateway_config(fake, tmp_path), span_exporter=spans)) as server:
        yield Served(server.url, fake, spans)


@pytest.fixture
def served_with_retry(fake: FakeProviderServer, tmp_path: Path) -> Iterator[Served]:
    # One retry: an alias's other deployment (the weights make OpenAI the first), then its fallback.
    routing = {"retries": 1, "backoff_base_s": 0.001, "backoff_cap_s": 0.001}
    spans = InMemorySpanExporter()
    with BackgroundServer(create_gateway(gateway_config(fake, tmp_path, routing), span_exporter=spans)) as server:
        yield Served(server.url, fake, spans)


def sdk(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key="client-key-not-for-upstream", max_retries=0)


def eventually(probe: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + 10
    while (value := probe()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return value


def logs(served: Served, count: int) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        data: list[dict[str, Any]] = httpx.get(served.url + "/logs").json()["data"]
        return data[:count][::-1] if len(data) >= count else None

    return eventually(probe, f"{count} records in /logs")


def client_spans(served: Served, count: int) -> list[ReadableSpan]:
    def probe() -> list[ReadableSpan] | None:
        found = [span for span in served.spans.get_finished_spans() if span.kind == SpanKind.CLIENT]
        return found if len(found) >= count else None

    return eventually(probe, f"{count} CLIENT spans")


def test_anthropic_overloaded_falls_back_to_gemini(served: Served) -> None:
    with sdk(served) as client:
        completion = client.chat.completions.create(model="claude-then-gemini", messages=HELLO)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello from the fake"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens == 40
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 10
    anthropic_sent, gemini_sent = list(served.fake.app.requests)[-2:]
    assert anthropic_sent.path == "/v1/messages" and anthropic_sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert anthropic_sent.json()["system"] == "Be brief." and anthropic_sent.json()["model"] == "fail-529-claude"
    assert gemini_sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert gemini_sent.json()["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    [record] = logs(served, 1)
    assert (record["api"], record["served_api"], record["provider"]) == (
        "openai.chat_completions",
        "gemini.generate_content",
        "gcp.gemini",
    )
    assert (record["status"], record["outcome"], record["fallback_index"]) == (200, "completed", 1)
    attempts = [(a["provider"], a["model"], a.get("status"), a.get("api")) for a in record["attempts"]]
    assert attempts == [
        ("anthropic", "fail-529-claude", 529, "anthropic.messages"),
        ("gemini", "gemini-2.5-flash", 200, "gemini.generate_content"),
    ]
    assert record["usage"]["input_tokens"] == 40 and record["usage"]["cache_read_tokens"] == 10
    [span] = client_spans(served, 1)
    assert dict(span.attributes or {})["gen_ai.provider.name"] == "gcp.gemini"


def test_stream_with_tools_from_anthropic(served: Served) -> None:
    with sdk(served) as client:
        with client.chat.completions.stream(model="claude-sonnet", messages=HELLO, tools=TOOLS) as stream:
            final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "fake"})
    assert call.id.startswith("toolu_")
    assert final.choices[0].finish_reason == "tool_calls"
    sent = served.fake.app.requests[-1].json()
    assert sent["stream"] is True and sent["tools"][0]["input_schema"]["required"] == ["city"]
    [record] = logs(served, 1)
    assert (record["streamed"], record["served_api"], record["provider"]) == (True, "anthropic.messages", "anthropic")
    # Accounted from Anthropic's own bytes: input counts the cache reads Anthropic reports apart.
    assert (record["usage"]["input_tokens"], record["usage"]["output_tokens"]) == (40, 6)
    assert record["finish_reason"] == "tool_calls" and record["tool_calls"] == 1
    [span] = client_spans(served, 1)
    assert dict(span.attributes or {})["gen_ai.provider.name"] == "anthropic"


def test_stream_text_with_usage_from_gemini(served: Served) -> None:
    with sdk(served) as client:
        chunks = list(
            client.chat.completions.create(
                model="gemini/gemini-2.5-flash",  # the provider/model form, no alias needed
                messages=HELLO,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and usage.prompt_tokens == 40
    assert served.fake.app.requests[-1].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    [record] = logs(served, 1)
    assert (record["rule"], record["served_api"], record["streamed"]) == (
        "provider_model",
        "gemini.stream_generate_content",
        True,
    )


def test_unsupported_parameter_dropped_or_rejected(served: Served) -> None:
    with sdk(served) as client:
        raw = client.chat.completions.with_raw_response.create(model="claude-sonnet", messages=HELLO, seed=7)
        assert raw.headers["x-llm-obs-dropped-params"] == "seed"
        assert raw.parse().choices[0].message.content == "Hello from the fake"
        assert "seed" not in served.fake.app.requests[-1].json()
        sent_before = len(served.fake.app.requests)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="strict-claude", messages=HELLO, seed=7)
    assert "seed" in caught.value.message and "unsupported_params: error" in caught.value.message
    assert len(served.fake.app.requests) == sent_before  # nothing went upstream
    dropped, rejected = logs(served, 2)
    assert dropped["outcome"] == "completed"
    assert (rejected["status"], rejected["outcome"], rejected["error_type"]) == (400, "rejected", "untranslatable")


def test_provider_errors_come_back_in_openai_format(served: Served) -> None:
    with sdk(served) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="gemini/fail-429-flash", messages=HELLO)
        with pytest.raises(openai.BadRequestError) as invalid:
            client.chat.completions.create(model="anthropic/fail-400-claude", messages=HELLO)
    assert limited.value.status_code == 429 and limited.value.response.headers.get("retry-after")
    body = limited.value.body
    assert isinstance(body, dict) and body["code"] == "RESOURCE_EXHAUSTED" and body["type"] == "rate_limit_error"
    assert invalid.value.status_code == 400
    assert isinstance(invalid.value.body, dict) and invalid.value.body["code"] == "invalid_request_error"


# The other native formats, by the provider/model form: (model, served API, gen_ai.provider.name, upstream path).
OTHERS = [
    ("bedrock/amazon.nova-lite-v1", "bedrock.converse", "aws.bedrock", "/model/amazon.nova-lite-v1/converse"),
    ("cohere/command-r", "cohere.chat", "cohere", "/v2/chat"),
    ("ollama/llama3.2", "ollama.chat", "ollama", "/api/chat"),
]


@pytest.mark.parametrize(("model", "served_api", "provider", "path"), OTHERS)
def test_plain_and_streamed_tools_from_other_formats(
    served: Served, model: str, served_api: str, provider: str, path: str
) -> None:
    with sdk(served) as client:
        plain = client.chat.completions.create(model=model, messages=HELLO)
        sent = served.fake.app.requests[-1]
        with client.chat.completions.stream(
            model=model, messages=HELLO, tools=TOOLS, stream_options={"include_usage": True}
        ) as stream:
            final = stream.get_final_completion()
    assert plain.choices[0].message.content == "Hello from the fake" and plain.choices[0].finish_reason == "stop"
    assert plain.usage is not None and plain.usage.prompt_tokens > 0
    assert sent.path == path
    [call] = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "fake"}
    assert final.choices[0].finish_reason == "tool_calls" and final.usage is not None
    plain_record, stream_record = logs(served, 2)
    assert (plain_record["api"], plain_record["provider"], plain_record["rule"]) == (
        "openai.chat_completions",
        provider,
        "provider_model",
    )
    assert plain_record["served_api"] == served_api and plain_record["usage"]["input_tokens"] > 0
    assert (stream_record["streamed"], stream_record["outcome"], stream_record["tool_calls"]) == (True, "completed", 1)


def test_fallback_across_three_formats_streamed(served_with_retry: Served) -> None:
    served = served_with_retry
    with sdk(served) as client:
        chunks = list(
            client.chat.completions.create(
                model="mixed", messages=HELLO, stream=True, stream_options={"include_usage": True}
            )
        )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake"
    assert chunks[-1].usage is not None
    [record] = logs(served, 1)
    attempts = [(a["provider"], a.get("status"), a.get("api"), a.get("fallback_index", 0)) for a in record["attempts"]]
    assert attempts == [
        ("openai", 503, None, 0),
        ("anthropic", 529, "anthropic.messages", 0),
        ("gemini", 200, "gemini.stream_generate_content", 1),
    ]
    assert (record["served_api"], record["provider"], record["streamed"]) == (
        "gemini.stream_generate_content",
        "gcp.gemini",
        True,
    )


def test_apis_without_a_translation_still_answer_501(served: Served) -> None:
    response = httpx.post(served.url + "/v1/responses", json={"model": "claude-sonnet", "input": "hi"})
    assert response.status_code == 501
    error = response.json()["error"]
    assert error["code"] == "unsupported_translation" and "/anthropic/" in error["message"]
