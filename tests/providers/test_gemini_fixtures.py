"""GeminiAdapter against the shared hand-written wire fixtures (../shared/fixtures/providers/gemini).

Table-driven over every case of gemini/expected.json (variants included): each key is compared with
what the adapter produced, derived from it, or named with the reason in an ignore list; an unknown
key fails. Expected values come from the fixtures, never from the code.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import httpx
import msgspec
import pytest
from _openai_cases import has_images
from hypothesis import given, settings, strategies as st

from llm_obs_middleware import Config
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.config.settings import ProviderConfig
from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers.base import Endpoint
from llm_obs_middleware.providers.gemini.adapter import BATCH_EMBED, EMBED, GENERATE, STREAM_GENERATE, GeminiAdapter
from llm_obs_middleware.providers.gemini.observe import ErrorObserver
from llm_obs_middleware.providers.registry import adapter_for_kind, match_request
from llm_obs_middleware.records.schema import NormalizedRequest, NormalizedResponse
from tests._fixture_paths import PROVIDER_FIXTURES

FIXTURE = PROVIDER_FIXTURES / "gemini"
ADAPTER = GeminiAdapter()

# expected.json response keys our schema cannot hold, and why they are not asserted.
IGNORED_RESPONSE_KEYS = {
    "streamed": "an input here: it selects the stream or JSON observer",
    "done_sentinel": "Gemini streams have no terminator; `completed` (a finishReason arrived) is asserted",
    "tool_use_prompt_tokens": "folded into input_tokens (asserted); not held separately",
    "note": "free text",
}
# Derived: checked against the normalized usage instead of a field of its own.
DERIVED_KEYS = {"candidates_tokens", "thoughts_tokens", "uncached_input_tokens"}
IGNORED_ERROR_KEYS = {
    "status": "an input here: passed to observer(status=...)",
    "retryable": "a routing decision, not part of the normalized response",
    "request_id": "null in the fixture (Google sends x-goog-request-id, a header the observer never sees)",
    "note": "free text",
}
IGNORED_REQUEST_KEYS = {
    "model_source": "the model comes from path_model() (asserted in test_path_model_and_upstream_path)",
    "thinking_budget_tokens": "not in the schema",
}


def load_expected() -> dict[str, Any]:
    path = FIXTURE / "expected.json"
    if not path.is_file():
        raise RuntimeError(f"shared provider fixtures not found at {FIXTURE}")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


EXPECTED = load_expected()
CASES = EXPECTED["cases"]
SUCCESS = [name for name, case in CASES.items() if "status" not in case]
STREAMS = [name for name in SUCCESS if CASES[name]["streamed"]]
ERRORS = [name for name, case in CASES.items() if "status" in case]


def read(name: str) -> bytes:
    return (FIXTURE / name).read_bytes()


def request(*, capture: bool = True, endpoint: Endpoint = GENERATE) -> NormalizedRequest:
    return ADAPTER.decode_request(endpoint, read("request.json"), capture_content=capture)


def observe(name: str, chunks: list[bytes], exchange: Exchange | None = None) -> NormalizedResponse:
    """Feed ``chunks`` (now_ns = 1, 2, 3...) to a fresh observer and finish it."""
    if exchange is None:
        exchange = Exchange({})
        exchange.request = request()
    streamed = CASES[name]["streamed"]
    endpoint = STREAM_GENERATE if streamed else GENERATE
    observer = ADAPTER.observer(endpoint, exchange, streamed=streamed, status=200)
    for i, chunk in enumerate(chunks, start=1):
        observer.feed(chunk, i)
    return observer.finish()


def assert_matches(result: NormalizedResponse, expected: dict[str, Any]) -> None:
    usage = result.usage
    assert usage is not None
    actual: dict[str, Any] = {
        "completed": result.completed,
        "response_id": result.id,
        "response_model": result.model,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "finish_reason": result.finish_reason,
        "finish_reason_raw": result.finish_reasons,
        "tool_calls": len(result.tool_calls),
        "tool_call_names": [call.name for call in result.tool_calls],
        "tool_call_ids": [call.id for call in result.tool_calls],
        "tool_call_arguments": [json.loads(call.arguments) for call in result.tool_calls],
        "output_text": result.output_text,
        "events": result.events,
    }
    unknown = set(expected) - set(actual) - set(IGNORED_RESPONSE_KEYS) - DERIVED_KEYS
    assert not unknown, f"expected.json keys neither asserted nor ignored: {sorted(unknown)}"
    wanted = {key: value for key, value in expected.items() if key in actual}
    assert {key: actual[key] for key in wanted} == wanted
    assert usage.input_tokens is not None and usage.output_tokens is not None
    assert usage.reasoning_tokens is not None and usage.cache_read_tokens is not None
    assert (
        usage.input_tokens - usage.cache_read_tokens - (usage.cache_write_tokens or 0)
        == (expected["uncached_input_tokens"])
    )
    if "candidates_tokens" in expected:
        assert usage.output_tokens - usage.reasoning_tokens == expected["candidates_tokens"]
        assert usage.reasoning_tokens == expected["thoughts_tokens"]
    assert result.error_type is None and result.error_message is None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({cut % (len(data) + 1) for cut in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def test_every_listed_case_is_covered() -> None:
    assert set(CASES) == {"response.json", "stream.txt", "error_429.json", "variants/blocked_response.json"}
    assert STREAMS == ["stream.txt"] and ERRORS == ["error_429.json"]
    for name in CASES:
        assert read(name)
    assert EXPECTED["operation"] == GENERATE.operation == STREAM_GENERATE.operation
    assert EXPECTED["provider"] == ADAPTER.provider_name


# --- endpoints ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
@pytest.mark.parametrize(
    ("method", "endpoint"),
    [
        ("generateContent", GENERATE),
        ("streamGenerateContent", STREAM_GENERATE),
        ("embedContent", EMBED),
        ("batchEmbedContents", BATCH_EMBED),
    ],
)
def test_match(version: str, method: str, endpoint: Endpoint) -> None:
    assert ADAPTER.match("POST", f"/{version}/models/gemini-2.5-flash:{method}") is endpoint


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1beta/models/gemini-2.5-flash:generateContent"),
        ("POST", "/v1beta/models/gemini-2.5-flash:countTokens"),
        ("POST", "/v1beta/models"),
        ("POST", "/v2/models/gemini-2.5-flash:generateContent"),
        ("POST", "/v1beta/models/a/b:generateContent"),
        ("POST", "/v1beta/models/gemini-2.5-flash:generateContent/x"),
        ("POST", "/v1/chat/completions"),
    ],
)
def test_match_rejects(method: str, path: str) -> None:
    assert ADAPTER.match(method, path) is None


def test_path_model_and_upstream_path() -> None:
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert EXPECTED["request"]["model_source"] == "url path"
    assert ADAPTER.path_model(STREAM_GENERATE, path) == EXPECTED["request"]["model"]
    assert ADAPTER.upstream_path(STREAM_GENERATE, path, "gemini-2.5-flash") == path
    assert ADAPTER.upstream_path(STREAM_GENERATE, path, "gemini-2.5-pro") == (
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
    )
    assert ADAPTER.path_model(GENERATE, "/elsewhere") is None
    assert ADAPTER.upstream_path(GENERATE, "/elsewhere", "m") == "/elsewhere"


def test_registry_discovers_the_adapter() -> None:
    assert isinstance(adapter_for_kind("gemini"), GeminiAdapter)
    matched = match_request("POST", "/g/v1beta/models/gemini-2.5-flash:generateContent", {"g": "gemini"})
    assert matched is not None
    assert (matched.endpoint, matched.provider, matched.path) == (
        GENERATE,
        "g",
        "/v1beta/models/gemini-2.5-flash:generateContent",
    )
    assert match_request("POST", "/g/v1beta/models/x:countTokens", {"g": "gemini"}) is None


# --- requests -------------------------------------------------------------------------------------


def _request_view(decoded: NormalizedRequest) -> dict[str, Any]:
    params = decoded.params
    messages = decoded.messages or []
    return {
        "model": ADAPTER.path_model(GENERATE, "/v1beta/models/gemini-2.5-flash:generateContent"),
        "stream": decoded.stream,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "candidate_count": params.n,
        "system": bool(messages) and messages[0].role == "system" and bool(messages[0].content),
        "contents": decoded.message_count,
        "tool_result_parts": sum(1 for message in messages if message.role == "tool"),
        "tool_definitions": params.tool_definitions,
        "tool_choice": params.tool_choice,
        "has_images": has_images(decoded),
    }


def test_decode_request() -> None:
    expected = EXPECTED["request"]
    view = _request_view(request())
    unknown = set(expected) - set(view) - set(IGNORED_REQUEST_KEYS)
    assert not unknown, f"request keys neither asserted nor ignored: {sorted(unknown)}"
    wanted = {key: value for key, value in expected.items() if key not in IGNORED_REQUEST_KEYS}
    assert {key: view[key] for key in wanted} == wanted
    assert request().operation == EXPECTED["operation"]


def test_stream_endpoint_sets_the_stream_flag() -> None:
    assert EXPECTED["stream_request_overrides"]["url"].startswith(":streamGenerateContent")
    streamed = request(endpoint=STREAM_GENERATE)
    assert streamed.stream is True and streamed.include_usage is True
    assert msgspec.structs.replace(streamed, stream=False) == request()


def test_decode_without_capture_keeps_params() -> None:
    plain = request(capture=False)
    assert plain.messages is None
    assert msgspec.structs.replace(request(), messages=None) == plain


def test_captured_messages() -> None:
    messages = request().messages
    assert messages is not None
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert messages[2].tool_calls[0].name == "get_weather"
    assert json.loads(messages[2].tool_calls[0].arguments) == {"city": "Lyon"}
    assert json.loads(messages[3].content or "") == {"temp_c": 22, "condition": "sunny"}
    # The image part is left out; the text part stays.
    assert messages[5].content == "Which city is this photo from? Check its weather and tomorrow's forecast."


def test_snake_case_request_decodes_the_same() -> None:
    """Google's JSON parser accepts proto field names too (curl examples use them)."""
    body = json.loads(read("request.json"))
    config = body.pop("generationConfig")
    body["generation_config"] = {
        "temperature": config["temperature"],
        "top_p": config["topP"],
        "max_output_tokens": config["maxOutputTokens"],
        "candidate_count": config["candidateCount"],
    }
    body["system_instruction"] = body.pop("systemInstruction")
    body["tool_config"] = {"function_calling_config": body.pop("toolConfig")["functionCallingConfig"]}
    body["tools"] = [{"function_declarations": body["tools"][0]["functionDeclarations"]}]
    snake = json.dumps(body).encode()
    assert ADAPTER.decode_request(GENERATE, snake, capture_content=False) == request(capture=False)
    # Captured messages match too (argument JSON is compared parsed: json.dumps re-spaced it).
    captured, original = ADAPTER.decode_request(GENERATE, snake, capture_content=True).messages, request().messages
    assert captured is not None and original is not None
    assert [m.role for m in captured] == [m.role for m in original]
    assert [m.content for m in captured if m.role != "tool"] == [m.content for m in original if m.role != "tool"]
    assert json.loads(captured[3].content or "") == json.loads(original[3].content or "")
    assert json.loads(captured[2].tool_calls[0].arguments) == json.loads(original[2].tool_calls[0].arguments)


def test_other_params_and_builtin_tools() -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {
            "stopSequences": ["END"],
            "seed": 3,
            "presencePenalty": 0.5,
            "frequencyPenalty": 0.25,
            "responseMimeType": "application/json",
        },
        "tools": [{"googleSearch": {}}, {"functionDeclarations": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}],
    }
    decoded = ADAPTER.decode_request(GENERATE, json.dumps(body).encode(), capture_content=False)
    params = decoded.params
    assert (params.stop, params.seed, params.presence_penalty, params.frequency_penalty) == (["END"], 3, 0.5, 0.25)
    assert params.response_format == "application/json"
    assert params.tool_definitions == 4
    assert params.tool_choice is None and params.temperature is None
    assert (decoded.message_count, decoded.model) == (1, None)


def test_decode_embeddings() -> None:
    single = ADAPTER.decode_request(
        EMBED, b'{"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}}', capture_content=True
    )
    assert (single.operation, single.model, single.message_count) == ("embeddings", "text-embedding-004", 1)
    batch = ADAPTER.decode_request(
        BATCH_EMBED,
        b'{"requests": [{"model": "models/e", "content": {}}, {"model": "models/e", "content": {}}]}',
        capture_content=False,
    )
    assert (batch.model, batch.message_count, batch.stream) == ("e", 2, False)
    assert ADAPTER.decode_request(BATCH_EMBED, b'{"requests": []}', capture_content=False).model is None


_COMMON_MALFORMED = [b"", b"{", b"[1, 2]", b"\xff\xfe"]
MALFORMED = [
    *[(endpoint, body) for endpoint in (GENERATE, STREAM_GENERATE, EMBED, BATCH_EMBED) for body in _COMMON_MALFORMED],
    (GENERATE, b'{"contents": 3}'),
    (GENERATE, b'{"generationConfig": {"temperature": "hot"}}'),
    (EMBED, b'{"model": 3}'),
    (BATCH_EMBED, b'{"requests": 3}'),
]


@pytest.mark.parametrize(("endpoint", "body"), MALFORMED, ids=lambda v: v.api if isinstance(v, Endpoint) else repr(v))
def test_decode_request_rejects_malformed(endpoint: Endpoint, body: bytes) -> None:
    with pytest.raises(SchemaError):
        ADAPTER.decode_request(endpoint, body, capture_content=False)


# --- responses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUCCESS)
def test_success_case_whole_body(name: str) -> None:
    assert_matches(observe(name, [read(name)]), CASES[name])


@pytest.mark.parametrize("name", SUCCESS)
def test_success_case_without_capture_has_no_text(name: str) -> None:
    result = observe(name, [read(name)], Exchange({}))
    assert result.output_text is None
    assert_matches(result, dict(CASES[name], output_text=None))


@pytest.mark.parametrize("name", [n for n in SUCCESS if n not in STREAMS])
def test_json_body_in_several_chunks(name: str) -> None:
    body = read(name)
    third = len(body) // 3
    result = observe(name, [body[:third], body[third : 2 * third], b"", body[2 * third :]])
    assert_matches(result, CASES[name])
    assert result.events == 0


@pytest.mark.parametrize("name", ERRORS)
@pytest.mark.parametrize("streamed", [False, True])
def test_error_envelope(name: str, streamed: bool) -> None:
    envelope = json.loads(read(name))
    expected = CASES[name]
    unknown = set(expected) - {"error_type", "error_code", "retry_after_seconds"} - set(IGNORED_ERROR_KEYS)
    assert not unknown, f"error keys neither asserted nor ignored: {sorted(unknown)}"
    status = envelope["status"]
    assert status == expected["status"] == expected["error_code"] == envelope["body"]["error"]["code"]
    body = json.dumps(envelope["body"]).encode()
    observer = ADAPTER.observer(STREAM_GENERATE if streamed else GENERATE, Exchange({}), streamed=streamed, status=429)
    assert isinstance(observer, ErrorObserver)
    observer.feed(body[:10], 1)
    observer.feed(body[10:], 2)
    result = observer.finish()
    assert result.error_type == expected["error_type"]
    assert result.error_message == envelope["body"]["error"]["message"]
    assert observer.retry_after_s == expected["retry_after_seconds"]
    # What the router uses as Retry-After when the header is absent (Gemini sends none).
    assert "retry-after" not in envelope["headers"]
    assert ADAPTER.retry_after(status, body) == str(math.ceil(expected["retry_after_seconds"]))
    assert (result.completed, result.finish_reason, result.usage, result.tool_calls) == (False, "error", None, [])


@pytest.mark.parametrize(
    ("body", "error_type", "message", "retry"),
    [
        (b'[{"error": {"code": 503, "message": "m", "status": "UNAVAILABLE"}}]', "UNAVAILABLE", "m", None),
        (b'{"error": {"code": 503, "message": "m"}}', "http_503", "m", None),
        (
            b'{"error": {"status": "UNAVAILABLE", "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",'
            b' "retryDelay": "1.5s"}]}}',
            "UNAVAILABLE",
            None,
            1.5,
        ),
        (
            b'{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "x"}]}}',
            "http_503",
            None,
            None,
        ),
        (b"<html>Bad gateway</html>", "http_503", None, None),
        (b"[]", "http_503", None, None),
        (b"", "http_503", None, None),
    ],
)
def test_error_observer_fallbacks(body: bytes, error_type: str, message: str | None, retry: float | None) -> None:
    observer = ADAPTER.observer(GENERATE, Exchange({}), streamed=False, status=503)
    assert isinstance(observer, ErrorObserver)
    observer.feed(body, 1)
    result = observer.finish()
    assert (result.error_type, result.error_message, result.completed) == (error_type, message, False)
    assert observer.retry_after_s == retry
    # Retry-After is delta-seconds: a whole number, rounded up ("1.5s" is 2), never "1.5".
    assert ADAPTER.retry_after(503, body) == (None if retry is None else str(math.ceil(retry)))
    assert ADAPTER.retry_after(400, body) is None  # only answers worth retrying carry a delay we honour


# --- streams --------------------------------------------------------------------------------------

STREAM = read("stream.txt")
cut_lists = st.lists(st.integers(min_value=0, max_value=20_000), max_size=40)


def test_fixture_stream_uses_crlf() -> None:
    assert b"\r\n\r\n" in STREAM and b"\n\n" not in STREAM.replace(b"\r\n", b"")


@settings(max_examples=200, deadline=None)
@given(cuts=cut_lists)
def test_random_splits_match_whole_body(cuts: list[int]) -> None:
    whole = observe("stream.txt", [STREAM])
    assert observe("stream.txt", split(STREAM, cuts)) == whole
    assert_matches(whole, CASES["stream.txt"])


def test_byte_by_byte() -> None:
    assert_matches(observe("stream.txt", [STREAM[i : i + 1] for i in range(len(STREAM))]), CASES["stream.txt"])


def test_split_inside_every_crlf() -> None:
    parts = STREAM.split(b"\r")
    assert_matches(observe("stream.txt", [part + b"\r" for part in parts[:-1]] + [parts[-1]]), CASES["stream.txt"])


@pytest.mark.parametrize("newline", [b"\n", b"\r"])
def test_other_line_endings_parse_the_same(newline: bytes) -> None:
    converted = STREAM.replace(b"\r\n", newline)
    assert observe("stream.txt", [converted]) == observe("stream.txt", [STREAM])


def test_ttft_and_token_gaps() -> None:
    """Every event of the fixture carries output (text, then the calls): one mark per event."""
    events = [event + b"\r\n\r\n" for event in STREAM.split(b"\r\n\r\n")[:-1]]
    exchange = Exchange({})
    observer = ADAPTER.observer(STREAM_GENERATE, exchange, streamed=True, status=200)
    for i, event in enumerate(events):
        observer.feed(event, 1_000 * (i + 1))
    observer.finish()
    assert (exchange.first_token_ns, exchange.last_token_ns, exchange.token_gaps) == (1_000, 3_000, 2)


def test_usage_only_chunk_marks_no_token() -> None:
    exchange = Exchange({})
    observer = ADAPTER.observer(STREAM_GENERATE, exchange, streamed=True, status=200)
    observer.feed(b'data: {"usageMetadata": {"promptTokenCount": 4}}\r\n\r\n', 5)
    assert exchange.first_token_ns == 0
    result = observer.finish()
    assert result.completed is False  # no finishReason: the stream ended early
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (4, 0)


EVENT_ENDS = [index + 4 for index in range(len(STREAM)) if STREAM.startswith(b"\r\n\r\n", index)]


@pytest.mark.parametrize("events", [0, 1, 2, 3])
def test_stream_cut_between_events_keeps_usage_seen_so_far(events: int) -> None:
    """An upstream drop after N events: not completed (no finishReason yet), usage of event N."""
    assert len(EVENT_ENDS) == 3
    result = observe("stream.txt", [STREAM[: EVENT_ENDS[events - 1]] if events else b""])
    assert result.events == events
    assert result.completed is (events == 3)
    chunks = [json.loads(event[len(b"data: ") :]) for event in STREAM.split(b"\r\n\r\n")[:events]]
    if not chunks:
        assert result.usage is None
        return
    meta = chunks[-1]["usageMetadata"]
    assert result.usage is not None
    assert result.usage.input_tokens == meta["promptTokenCount"]
    assert result.usage.output_tokens == meta.get("candidatesTokenCount", 0) + meta["thoughtsTokenCount"]
    assert result.usage.total_tokens == meta["totalTokenCount"]


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(STREAM)))
def test_stream_cut_anywhere_never_fails(cut: int) -> None:
    """Cut anywhere: completed only once the last chunk's JSON is all there; a half event is noted."""
    result = observe("stream.txt", [STREAM[:cut]])
    last_json_end = len(STREAM.rstrip(b"\r\n"))
    assert result.completed is (cut >= last_json_end)
    assert result.error_type in (None, "invalid_response")
    if result.error_type is None:
        assert result.usage is None or result.usage.input_tokens == 1864


def test_malformed_event_is_noted_and_skipped() -> None:
    events = STREAM.split(b"\r\n\r\n")
    broken = b"\r\n\r\n".join([events[0], events[1][:40], *events[2:]])
    result = observe("stream.txt", [broken])
    assert result.error_type == "invalid_response"
    assert result.error_message is not None and result.error_message.startswith("stream event 2 could not be parsed")
    # Everything else still counts: usage and calls come from the last chunk, which parsed.
    assert result.completed is True and result.events == 3
    assert result.usage == observe("stream.txt", [STREAM]).usage
    assert [call.name for call in result.tool_calls] == ["get_weather", "get_forecast"]


def test_in_band_error_chunk() -> None:
    first = STREAM.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    error = b'data: {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}\r\n\r\n'
    result = observe("stream.txt", [first + error])
    assert (result.completed, result.finish_reason, result.error_type, result.error_message) == (
        False,
        "error",
        "INTERNAL",
        "boom",
    )
    assert result.usage is not None and result.usage.input_tokens == 1864
    code_only = observe("stream.txt", [b'data: {"error": {"code": 503}}\r\n\r\n'])
    assert code_only.error_type == "http_503"
    nothing = observe("stream.txt", [b'data: {"error": {}}\r\n\r\n'])
    assert nothing.error_type == "stream_error"


def test_stream_without_alt_sse_is_a_json_array() -> None:
    """``streamGenerateContent`` without ``alt=sse`` answers one JSON array of the same chunks."""
    chunks = [json.loads(event[len(b"data: ") :]) for event in STREAM.split(b"\r\n\r\n")[:-1]]
    observer = ADAPTER.observer(STREAM_GENERATE, Exchange({}), streamed=False, status=200)
    observer.feed(json.dumps(chunks).encode(), 1)
    result = observer.finish()
    expected = dict(CASES["stream.txt"], output_text=None, events=0)
    assert_matches(result, expected)


@pytest.mark.parametrize("body", [b'{"candidates": [', b"[{}, 3]", b"not json"])
def test_malformed_json_body_is_noted(body: bytes) -> None:
    observer = ADAPTER.observer(GENERATE, Exchange({}), streamed=False, status=200)
    observer.feed(body, 1)
    result = observer.finish()
    assert (result.completed, result.error_type) == (False, "invalid_response")
    assert result.error_message is not None and "could not be parsed" in result.error_message


def test_empty_bodies() -> None:
    for endpoint in (GENERATE, EMBED):
        observer = ADAPTER.observer(endpoint, Exchange({}), streamed=False, status=200)
        assert observer.finish() == NormalizedResponse(completed=False)


def test_audio_and_other_finish_reasons() -> None:
    body = {
        "candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 4,
            "toolUsePromptTokenCount": 3,
            "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 6}, {"modality": "TEXT", "tokenCount": 4}],
            "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 4}],
        },
    }
    observer = ADAPTER.observer(GENERATE, Exchange({}), streamed=False, status=200)
    observer.feed(json.dumps(body).encode(), 1)
    result = observer.finish()
    assert result.finish_reason == "length"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.total_tokens) == (13, 17)
    assert (result.usage.audio_input_tokens, result.usage.audio_output_tokens) == (6, 4)
    for raw, normalized in [("RECITATION", "content_filter"), ("MALFORMED_FUNCTION_CALL", "other"), ("OTHER", "other")]:
        body["candidates"][0]["finishReason"] = raw  # type: ignore[index]
        observer = ADAPTER.observer(GENERATE, Exchange({}), streamed=False, status=200)
        observer.feed(json.dumps(body).encode(), 1)
        assert observer.finish().finish_reason == normalized


def test_thought_parts_are_not_output_text() -> None:
    body = b'{"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true}, {"text": "Hi"}]}}]}'
    exchange = Exchange({})
    exchange.request = request()
    observer = ADAPTER.observer(GENERATE, exchange, streamed=False, status=200)
    observer.feed(body, 1)
    result = observer.finish()
    assert (result.output_text, result.output_chars, result.usage, result.finish_reason) == ("Hi", 5, None, None)


@pytest.mark.parametrize("endpoint", [EMBED, BATCH_EMBED], ids=lambda e: e.api)
def test_embeddings_observer(endpoint: Endpoint) -> None:
    observer = ADAPTER.observer(endpoint, Exchange({}), streamed=False, status=200)
    observer.feed(b'{"embeddings": [{"values": [0.1, 0.2]}]}', 1)
    assert observer.finish() == NormalizedResponse()  # the Gemini API reports no usage here
    observer = ADAPTER.observer(endpoint, Exchange({}), streamed=False, status=200)
    observer.feed(b'{"embedding": {"values": [0.1]}, "usageMetadata": {"promptTokenCount": 7}}', 1)
    result = observer.finish()
    assert result.usage is not None and (result.usage.input_tokens, result.usage.total_tokens) == (7, 7)
    observer = ADAPTER.observer(endpoint, Exchange({}), streamed=False, status=200)
    observer.feed(b'{"embedding": ', 1)
    assert observer.finish().error_type == "invalid_response"


def test_oversized_body_keeps_its_usage_and_model() -> None:
    whole = ADAPTER.observer(GENERATE, Exchange({}), streamed=False, status=200)
    whole.feed(read("response.json"), 1)
    expected = whole.finish()
    observer = ADAPTER.observer(GENERATE, Exchange({}), streamed=False, status=200)
    observer.feed(b" " * (8 * 1024 * 1024), 1)  # past the 8 MB kept whole: only head and tail are kept
    observer.feed(read("response.json"), 2)
    result = observer.finish()
    assert result.usage is not None and result.usage == expected.usage
    assert (result.model, result.id) == (expected.model, expected.id)


# --- upstream request -----------------------------------------------------------------------------


def test_prepare_body_keeps_generate_bytes() -> None:
    body = read("request.json")
    prepared = ADAPTER.prepare_body(GENERATE, request(capture=False), body, "gemini-2.5-pro")
    assert prepared == (body, False)


def test_prepare_body_rewrites_embedding_model_names() -> None:
    single = b'{"model": "models/emb", "content": {"parts": [{"text": "a"}]}}'
    decoded = ADAPTER.decode_request(EMBED, single, capture_content=False)
    assert ADAPTER.prepare_body(EMBED, decoded, single, "emb").body == single
    out = ADAPTER.prepare_body(EMBED, decoded, single, "text-embedding-004").body
    assert json.loads(out) == {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}}
    batch = b'{"requests": [{"model": "models/emb", "content": {"parts": [{"text": "a"}]}}, {"content": {}}]}'
    decoded = ADAPTER.decode_request(BATCH_EMBED, batch, capture_content=False)
    out = ADAPTER.prepare_body(BATCH_EMBED, decoded, batch, "text-embedding-004").body
    assert json.loads(out) == {
        "requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}}, {"content": {}}]
    }


def _provider(*keys: str) -> ProviderConfig:
    config = Config.from_dict({"providers": {"g": {"kind": "gemini", "base_url": "http://g.test", "api_keys": keys}}})
    return config.providers["g"]


def test_auth_and_sign_drop_the_client_credentials() -> None:
    assert ADAPTER.auth_headers("ours") == [(b"x-goog-api-key", b"ours")]
    upstream = httpx.Request(
        "POST",
        "http://g.test/v1beta/models/m:streamGenerateContent?alt=sse&key=client-key",
        headers=[("x-goog-api-key", "client-key"), ("x-goog-api-key", "ours")],
    )
    ADAPTER.sign(upstream, _provider("ours"))
    assert str(upstream.url) == "http://g.test/v1beta/models/m:streamGenerateContent?alt=sse"
    assert upstream.headers.get_list("x-goog-api-key") == ["ours"]


def test_sign_without_a_configured_key_forwards_no_client_key() -> None:
    upstream = httpx.Request("POST", "http://g.test/v1/models/m:generateContent?key=k", headers={"x-goog-api-key": "k"})
    ADAPTER.sign(upstream, _provider())
    assert "x-goog-api-key" not in upstream.headers and upstream.url.query == b""
    untouched = httpx.Request("POST", "http://g.test/v1/models/m:generateContent")
    ADAPTER.sign(untouched, _provider("ours"))
    assert "x-goog-api-key" not in untouched.headers and str(untouched.url).endswith(":generateContent")


def test_is_stream() -> None:
    assert ADAPTER.is_stream(b"text/event-stream")
    assert not ADAPTER.is_stream(b"application/json; charset=UTF-8")
