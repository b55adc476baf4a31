"""The official openai SDK parses every translated response, stream and error.

Each provider fixture (../shared/fixtures/providers) is translated and served to ``openai.OpenAI``
through ``httpx.MockTransport``: plain ``create``, ``create(stream=True)``, the
``chat.completions.stream(...)`` helper with tool-call accumulation, and error answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam

from llm_obs_middleware.providers.translators import Translator, translator_for

from ._golden import CREATED, SHARED, TranslatedStream, context, shared_error

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Weather in the city in this photo?"}]


class Case(NamedTuple):
    directory: str
    stream: str
    text: str | None
    calls: list[tuple[str, Any]]
    reasoning_tokens: int | None
    cached_tokens: int


CASES = {
    "anthropic": Case(
        "anthropic_messages",
        "stream.txt",
        "That's the Eiffel Tower, so this is Paris. Let me check the weather there.",
        [("get_weather", {"city": "Paris"})],
        164,
        2143,
    ),
    "bedrock": Case(
        "bedrock_converse",
        "stream.bin",
        "That's the Space Needle, so you're headed to Seattle. Let me pull tomorrow's forecast.",
        [("get_forecast", {"city": "Seattle", "days": 1})],
        None,
        2048,
    ),
    "cohere": Case(
        "cohere_v2",
        "stream.txt",
        None,
        [("get_weather", {"city": "Montreal"}), ("get_forecast", {"city": "Montreal", "days": 1})],
        None,
        1024,
    ),
    "gemini": Case(
        "gemini",
        "stream.txt",
        "That photo shows the Eiffel Tower, so it's Paris. Checking the weather now.",
        [("get_weather", {"city": "Paris"}), ("get_forecast", {"city": "Paris", "days": 1})],
        203,
        1024,
    ),
    "ollama": Case("ollama", "stream.txt", None, [("get_weather", {"city": "Berlin"})], None, 0),
}


def translator(provider: str) -> Translator[Any]:
    found = translator_for(provider, "openai.chat_completions")
    assert found is not None
    return found


@contextmanager
def client_answering(answer: Callable[[], httpx.Response]) -> Iterator[openai.OpenAI]:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        return answer()

    # Typed loosely: some openai releases annotate http_client with their own httpx fork's Client.
    http: Any = httpx.Client(transport=httpx.MockTransport(handler))
    with http:
        yield openai.OpenAI(base_url="http://gateway.test/v1", api_key="k", http_client=http, max_retries=0)


def translated_stream(provider: str, file: str | None = None, include_usage: bool = True) -> httpx.Response:
    case = CASES[provider]
    data = (SHARED / case.directory / (file or case.stream)).read_bytes()
    stream = TranslatedStream(provider, include_usage)
    # Served in the pieces the translator produced, one per upstream chunk (here: 50-byte chunks).
    pieces = [stream.feed(data[i : i + 50]) for i in range(0, len(data), 50)] + [stream.close()]
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter([p for p in pieces if p]))


@pytest.mark.parametrize("provider", sorted(CASES))
def test_plain_completion(provider: str) -> None:
    case = CASES[provider]
    body = translator(provider).response((SHARED / case.directory / "response.json").read_bytes(), context())
    with client_answering(lambda: httpx.Response(200, json=json.loads(body))) as client:
        completion = client.chat.completions.create(model="m", messages=HELLO)
    [choice] = completion.choices
    assert (choice.message.content, choice.finish_reason, completion.created) == (case.text, "tool_calls", CREATED)
    tool_calls = [c for c in choice.message.tool_calls or [] if isinstance(c, ChatCompletionMessageFunctionToolCall)]
    assert [(c.function.name, json.loads(c.function.arguments)) for c in tool_calls] == case.calls
    assert all(c.id for c in tool_calls) and len({c.id for c in tool_calls}) == len(case.calls)
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == case.cached_tokens
    details = usage.completion_tokens_details
    assert (details.reasoning_tokens if details is not None else None) == case.reasoning_tokens


@pytest.mark.parametrize("provider", sorted(CASES))
def test_stream_helper_accumulates_tool_calls(provider: str) -> None:
    case = CASES[provider]
    with client_answering(lambda: translated_stream(provider)) as client:
        with client.chat.completions.stream(
            model="m", messages=HELLO, stream_options={"include_usage": True}
        ) as stream:
            events = [event.type for event in stream]
            final = stream.get_final_completion()
    [choice] = final.choices
    assert choice.finish_reason == "tool_calls"
    assert (choice.message.content or None) == case.text
    tool_calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in tool_calls] == case.calls
    assert events.count("tool_calls.function.arguments.done") == len(case.calls)
    assert final.usage is not None and final.usage.prompt_tokens > 0


@pytest.mark.parametrize("provider", sorted(CASES))
@pytest.mark.parametrize("include_usage", [True, False])
def test_create_stream_chunks(provider: str, include_usage: bool) -> None:
    with client_answering(lambda: translated_stream(provider, include_usage=include_usage)) as client:
        chunks = list(client.chat.completions.create(model="m", messages=HELLO, stream=True))
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (text or None) == CASES[provider].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == (1 if include_usage else 0)
    if include_usage:
        assert usage_chunks[0] is chunks[-1] and chunks[-1].choices == []


@pytest.mark.parametrize(
    ("provider", "file", "message"),
    [
        ("anthropic", "variants/stream_error.txt", "Overloaded"),
        ("bedrock", "variants/stream_exception.bin", "Too many tokens"),
        ("ollama", "variants/stream_error.txt", "unexpected EOF"),
    ],
)
def test_in_band_stream_error_raises(provider: str, file: str, message: str) -> None:
    with client_answering(lambda: translated_stream(provider, file)) as client:
        stream = client.chat.completions.create(model="m", messages=HELLO, stream=True)
        with pytest.raises(openai.APIError, match=message):
            list(stream)


@pytest.mark.parametrize(
    ("provider", "file", "error"),
    [
        ("anthropic", "error_429.json", openai.RateLimitError),
        ("anthropic", "variants/error_529.json", openai.InternalServerError),
        ("gemini", "error_429.json", openai.RateLimitError),
        ("bedrock", "error_429.json", openai.RateLimitError),
        ("cohere", "error_429.json", openai.RateLimitError),
        ("ollama", "error_429.json", openai.RateLimitError),
    ],
)
def test_errors(provider: str, file: str, error: type[openai.APIStatusError]) -> None:
    status, body, headers = shared_error(CASES[provider].directory, file)
    translated = translator(provider).error(status, body, headers, headers.get("retry-after"))
    answer = httpx.Response(translated.status, headers=translated.headers, content=translated.body)
    with client_answering(lambda: answer) as client, pytest.raises(error) as caught:
        client.chat.completions.create(model="m", messages=HELLO)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    native = json.loads(body)
    native_error = native.get("error", native)
    assert caught.value.body["message"] == (native_error["message"] if isinstance(native_error, dict) else native_error)
    assert caught.value.response.headers.get("retry-after") == translated.retry_after
