"""Golden tests: OpenAI requests to each provider's native request, native answers back to OpenAI.

Requests come from ``fixtures/`` (text, multi-turn, tools with results, images, a streamed request)
plus the shared OpenAI fixture conversation; responses, streams and errors are the shared provider
fixtures (../shared/fixtures/providers). Expected JSON lives in ``golden/<provider>/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_obs_middleware.providers.translators import TranslationError, decode_chat_request, translator_for

from ._golden import REQUESTS, SHARED, TranslatedStream, check_golden, context, shared_error, sse_events

REQUEST_NAMES = ["text", "multi_turn", "tools", "images", "stream"]
MODELS = {
    "anthropic": "claude-sonnet-4-5",
    "bedrock": "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "cohere": "command-a-03-2025",
    "gemini": "gemini-2.5-flash",
    "ollama": "qwen3:8b",
}
# provider -> (shared fixture directory, plain responses, streams, error envelopes)
NATIVE: dict[str, tuple[str, list[str], list[str], list[str]]] = {
    "anthropic": (
        "anthropic_messages",
        ["response.json"],
        ["stream.txt", "variants/stream_error.txt"],
        ["error_429.json", "variants/error_529.json"],
    ),
    "bedrock": (
        "bedrock_converse",
        ["response.json"],
        ["stream.bin", "variants/stream_exception.bin"],
        ["error_429.json"],
    ),
    "cohere": ("cohere_v2", ["response.json"], ["stream.txt"], ["error_429.json"]),
    "gemini": ("gemini", ["response.json", "variants/blocked_response.json"], ["stream.txt"], ["error_429.json"]),
    "ollama": ("ollama", ["response.json"], ["stream.txt", "variants/stream_error.txt"], ["error_429.json"]),
}


def native_message(body: bytes) -> str:
    """The message of a provider error body, wherever the provider puts it."""
    data = json.loads(body)
    error = data.get("error", data)
    return str(error["message"] if isinstance(error, dict) else error)


def translator(provider: str) -> Any:
    found = translator_for(provider, "openai.chat_completions")
    assert found is not None
    return found


def request_body(name: str) -> bytes:
    if name == "conversation":
        return (SHARED / "openai_chat" / "request.json").read_bytes()
    return (REQUESTS / f"{name}.json").read_bytes()


def stem(name: str) -> str:
    return Path(name).stem


@pytest.mark.parametrize("provider", sorted(NATIVE))
@pytest.mark.parametrize("name", [*REQUEST_NAMES, "conversation"])
def test_request(provider: str, name: str) -> None:
    upstream = translator(provider).request(
        decode_chat_request(request_body(name)), MODELS[provider], unsupported="drop"
    )
    actual = {
        "path": upstream.path,
        "headers": {k.decode(): v.decode() for k, v in upstream.headers},
        "dropped": list(upstream.dropped),
        "body": json.loads(upstream.body),
    }
    check_golden(f"{provider}/request_{name}", actual)


@pytest.mark.parametrize("provider", sorted(NATIVE))
def test_unsupported_parameters_rejected_under_error_rule(provider: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"15": -100}}
    chat = decode_chat_request(json.dumps(body).encode())
    assert translator(provider).request(chat, MODELS[provider], unsupported="drop").dropped == ("logit_bias",)
    with pytest.raises(TranslationError) as caught:
        translator(provider).request(chat, MODELS[provider], unsupported="error")
    assert str(caught.value) == f"{provider} does not support: logit_bias (this route sets unsupported_params: error)"
    error = json.loads(caught.value.body())["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "logit_bias",
        "unsupported_parameter",
    )


@pytest.mark.parametrize(
    ("provider", "file"), [(provider, file) for provider, native in sorted(NATIVE.items()) for file in native[1]]
)
def test_response(provider: str, file: str) -> None:
    body = (SHARED / NATIVE[provider][0] / file).read_bytes()
    translated = json.loads(translator(provider).response(body, context()))
    check_golden(f"{provider}/{stem(file)}", translated)


@pytest.mark.parametrize(
    ("provider", "file"), [(provider, file) for provider, native in sorted(NATIVE.items()) for file in native[2]]
)
@pytest.mark.parametrize("include_usage", [True, False])
def test_stream(provider: str, file: str, include_usage: bool) -> None:
    data = (SHARED / NATIVE[provider][0] / file).read_bytes()
    whole = TranslatedStream(provider, include_usage)
    out = whole.feed(data) + whole.close()
    # Any split of the upstream bytes gives the same chunks: translation works event by event.
    for size in (1, 7, 64):
        split = TranslatedStream(provider, include_usage)
        pieces = [split.feed(data[i : i + size]) for i in range(0, len(data), size)]
        assert b"".join(pieces) + split.close() == out
    events, done = sse_events(out)
    usage_chunks = [event for event in events if event.get("usage")]
    assert len(usage_chunks) == (1 if include_usage and done else 0)
    if include_usage:
        check_golden(f"{provider}/{stem(file)}", {"chunks": events, "done": done})


@pytest.mark.parametrize(
    ("provider", "file"), [(provider, file) for provider, native in sorted(NATIVE.items()) for file in native[3]]
)
def test_error(provider: str, file: str) -> None:
    status, body, headers = shared_error(NATIVE[provider][0], file)
    error = translator(provider).error(status, body, headers, headers.get("retry-after"))
    actual = {
        "status": error.status,
        "headers": {k.decode(): v.decode() for k, v in error.headers},
        "body": json.loads(error.body),
    }
    check_golden(f"{provider}/{stem(file)}", actual)
    assert actual["body"]["error"]["message"] == native_message(body)  # the provider's words reach the client


@pytest.mark.parametrize("provider", sorted(NATIVE))
def test_error_body_that_is_not_json_keeps_its_text(provider: str) -> None:
    error = translator(provider).error(503, b"upstream connect error", {}, None)
    assert error.status == 503
    assert json.loads(error.body)["error"] == {
        "message": "upstream connect error",
        "type": "server_error",
        "param": None,
        "code": None,
    }
