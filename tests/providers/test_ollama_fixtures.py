"""OllamaAdapter (and the shared NDJSON framing) against ../shared/fixtures/providers/ollama.

Table-driven over every case of ollama/expected.json (variants included): each key is compared with
what the adapter produced, derived from it, or named with the reason in an ignore list; an unknown
key fails. Expected values come from the fixtures, never from the code.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import pytest
from _openai_cases import has_images
from hypothesis import given, settings, strategies as st

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.codecs.ndjson import NDJSONSplitter
from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers.base import Endpoint
from llm_obs_middleware.providers.ollama.adapter import CHAT, EMBED, GENERATE, OllamaAdapter
from llm_obs_middleware.providers.openai.adapter import CHAT as OPENAI_CHAT, EMBEDDINGS as OPENAI_EMBEDDINGS
from llm_obs_middleware.providers.registry import adapter_for_kind, match_request
from llm_obs_middleware.records.schema import NormalizedRequest, NormalizedResponse
from tests._fixture_paths import PROVIDER_FIXTURES

FIXTURE = PROVIDER_FIXTURES / "ollama"
ADAPTER = OllamaAdapter()

IGNORED_RESPONSE_KEYS = {
    "streamed": "an input here: it selects the stream or JSON observer",
    "total_duration_ns": "Ollama's durations are not in the schema (vendor extras)",
    "load_duration_ns": "Ollama's durations are not in the schema (vendor extras)",
    "prompt_eval_duration_ns": "Ollama's durations are not in the schema (vendor extras)",
    "eval_duration_ns": "Ollama's durations are not in the schema (vendor extras)",
    "has_thinking": "thinking text is not kept; it only counts towards output_chars (asserted > visible text)",
    "note": "free text",
}
IGNORED_ERROR_KEYS = {
    "status": "an input here: passed to observer(status=...)",
    "retry_after_seconds": "null: Ollama sends no Retry-After (and headers are the router's business)",
    "retryable": "a routing decision, not part of the normalized response",
    "request_id": "null: Ollama sends none",
}
IGNORED_REQUEST_KEYS = {
    "max_tokens_field": "which wire field held max_tokens is not recorded (the value is asserted)",
    "think": "not in the schema",
    "keep_alive": "not in the schema",
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


def request(*, capture: bool = True) -> NormalizedRequest:
    return ADAPTER.decode_request(CHAT, read("request.json"), capture_content=capture)


def observe(name: str, chunks: list[bytes], exchange: Exchange | None = None) -> NormalizedResponse:
    if exchange is None:
        exchange = Exchange({})
        exchange.request = request()
    observer = ADAPTER.observer(CHAT, exchange, streamed=CASES[name]["streamed"], status=200)
    for i, chunk in enumerate(chunks, start=1):
        observer.feed(chunk, i)
    return observer.finish()


def assert_matches(result: NormalizedResponse, expected: dict[str, Any]) -> None:
    usage = result.usage
    actual: dict[str, Any] = {
        "completed": result.completed,
        "response_id": result.id,
        "response_model": result.model,
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
        "cache_read_tokens": usage.cache_read_tokens if usage else None,
        "cache_write_tokens": usage.cache_write_tokens if usage else None,
        "reasoning_tokens": usage.reasoning_tokens if usage else None,
        "finish_reason": result.finish_reason,
        "finish_reason_raw": result.finish_reasons,
        "tool_calls": len(result.tool_calls),
        "tool_call_names": [call.name for call in result.tool_calls],
        "tool_call_ids": [call.id for call in result.tool_calls],
        "tool_call_arguments": [json.loads(call.arguments) for call in result.tool_calls],
        "output_text": result.output_text,
        "events": result.events,
        "error_message": result.error_message,
    }
    if usage is not None and usage.input_tokens is not None:
        actual["uncached_input_tokens"] = usage.input_tokens - (usage.cache_read_tokens or 0)
    unknown = set(expected) - set(actual) - set(IGNORED_RESPONSE_KEYS) - {"uncached_input_tokens"}
    assert not unknown, f"expected.json keys neither asserted nor ignored: {sorted(unknown)}"
    wanted = {key: value for key, value in expected.items() if key not in IGNORED_RESPONSE_KEYS}
    assert {key: actual.get(key) for key in wanted} == wanted
    if expected.get("has_thinking"):
        visible = len(result.output_text or "") + sum(len(c.name) + len(c.arguments) for c in result.tool_calls)
        assert result.output_chars > visible
    if expected["finish_reason"] == "error":
        assert result.error_type == "stream_error"  # Ollama's error lines carry a message, no type
    else:
        assert result.error_type is None and result.error_message is None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({cut % (len(data) + 1) for cut in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def test_every_listed_case_is_covered() -> None:
    assert set(CASES) == {"response.json", "stream.txt", "error_429.json", "variants/stream_error.txt"}
    assert STREAMS == ["stream.txt", "variants/stream_error.txt"] and ERRORS == ["error_429.json"]
    for name in CASES:
        assert read(name)
    assert EXPECTED["operation"] == CHAT.operation and EXPECTED["provider"] == ADAPTER.provider_name


# --- endpoints ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/api/chat", CHAT),
        ("/api/generate", GENERATE),
        ("/api/embed", EMBED),
        ("/api/embeddings", EMBED),
        ("/v1/chat/completions", OPENAI_CHAT),
        ("/v1/embeddings", OPENAI_EMBEDDINGS),
    ],
)
def test_match(path: str, endpoint: Endpoint) -> None:
    assert ADAPTER.match("POST", path) is endpoint


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/chat"), ("GET", "/api/tags"), ("POST", "/api/show"), ("POST", "/chat/completions"), ("POST", "/")],
)
def test_match_rejects(method: str, path: str) -> None:
    assert ADAPTER.match(method, path) is None


def test_paths_and_registry() -> None:
    assert ADAPTER.path_model(CHAT, "/api/chat") is None
    assert ADAPTER.upstream_path(CHAT, "/api/chat", "other") == "/api/chat"
    assert ADAPTER.upstream_path(OPENAI_CHAT, "/v1/chat/completions", "m") == "/v1/chat/completions"
    assert isinstance(adapter_for_kind("ollama"), OllamaAdapter)
    matched = match_request("POST", "/local/api/chat", {"local": "ollama"})
    assert matched is not None and (matched.endpoint, matched.provider, matched.path) == (CHAT, "local", "/api/chat")
    assert match_request("POST", "/local/api/pull", {"local": "ollama"}) is None


def test_auth_and_stream_content_types() -> None:
    assert ADAPTER.auth_headers("k") == [(b"authorization", b"Bearer k")]
    assert ADAPTER.is_stream(b"application/x-ndjson")
    assert ADAPTER.is_stream(b"text/event-stream; charset=utf-8")  # the /v1 OpenAI-compatible API
    assert not ADAPTER.is_stream(b"application/json; charset=utf-8")


# --- requests -------------------------------------------------------------------------------------


def _request_view(decoded: NormalizedRequest) -> dict[str, Any]:
    params = decoded.params
    messages = decoded.messages or []
    body = json.loads(read("request.json"))
    del body["stream"]
    absent = ADAPTER.decode_request(CHAT, json.dumps(body).encode(), capture_content=False)
    return {
        "model": decoded.model,
        "stream": decoded.stream,
        "stream_default_if_absent": absent.stream,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "system": bool(messages) and messages[0].role == "system",
        "messages": decoded.message_count,
        "tool_result_messages": sum(1 for message in messages if message.role == "tool"),
        "tool_definitions": params.tool_definitions,
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
    assert request().params.tool_choice is None  # Ollama has no tool_choice


def test_stream_request_override() -> None:
    assert EXPECTED["stream_request_overrides"] == {"stream": True}
    body = read("request.json").replace(b'"stream": false', b'"stream": true')
    streamed = ADAPTER.decode_request(CHAT, body, capture_content=True)
    assert msgspec.structs.replace(streamed, stream=False) == request()


def test_decode_without_capture_keeps_params() -> None:
    plain = request(capture=False)
    assert plain.messages is None
    assert msgspec.structs.replace(request(), messages=None) == plain


def test_captured_messages() -> None:
    messages = request().messages
    assert messages is not None
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert messages[2].content is None  # "" means no text
    assert messages[2].tool_calls[0].id == "call_k2m9x4qa"
    assert json.loads(messages[2].tool_calls[0].arguments) == {"city": "Munich"}
    assert messages[3].tool_call_id == "call_k2m9x4qa"


def test_decode_generate_and_embed() -> None:
    body = b'{"model": "llama3", "prompt": "Why?", "system": "Be brief", "format": "json", "options": {"stop": "x"}}'
    generate = ADAPTER.decode_request(GENERATE, body, capture_content=True)
    assert (generate.operation, generate.model, generate.stream, generate.message_count) == (
        "text_completion",
        "llama3",
        True,
        2,
    )
    assert (generate.params.response_format, generate.params.stop) == ("json", ["x"])
    assert generate.messages is not None and [(m.role, m.content) for m in generate.messages] == [
        ("system", "Be brief"),
        ("user", "Why?"),
    ]
    schema = b'{"model": "m", "stream": false, "format": {"type": "object"}, "messages": []}'
    chat = ADAPTER.decode_request(CHAT, schema, capture_content=True)
    assert (chat.stream, chat.params.response_format, chat.messages) == (False, "json_schema", None)
    embed = ADAPTER.decode_request(EMBED, b'{"model": "e", "input": ["a", "b", "c"]}', capture_content=False)
    assert (embed.operation, embed.model, embed.message_count, embed.stream) == ("embeddings", "e", 3, False)
    legacy = ADAPTER.decode_request(EMBED, b'{"model": "e", "prompt": "a"}', capture_content=False)
    assert legacy.message_count == 1


def test_openai_compatible_paths_decode_as_openai() -> None:
    body = b'{"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
    decoded = ADAPTER.decode_request(OPENAI_CHAT, body, capture_content=False)
    assert (decoded.model, decoded.stream, decoded.include_usage) == ("qwen3", True, False)
    prepared = ADAPTER.prepare_body(OPENAI_CHAT, decoded, body, "qwen3")
    assert prepared.hide_usage_chunk is True and json.loads(prepared.body)["stream_options"] == {"include_usage": True}
    exchange = Exchange({})
    observer = ADAPTER.observer(OPENAI_CHAT, exchange, streamed=True, status=200)
    observer.feed(b'data: {"id":"c","model":"qwen3","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n', 3)
    observer.feed(b"data: [DONE]\n\n", 4)
    assert (observer.finish().completed, exchange.first_token_ns) == (True, 3)


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        *[(endpoint, body) for endpoint in (CHAT, GENERATE, EMBED) for body in (b"", b"{", b"[1]", b"\xff")],
        (CHAT, b'{"messages": 3}'),
        (CHAT, b'{"options": {"temperature": "hot"}}'),
        (GENERATE, b'{"prompt": 3}'),
        (EMBED, b'{"input": 3}'),
    ],
    ids=lambda v: v.api if isinstance(v, Endpoint) else repr(v),
)
def test_decode_request_rejects_malformed(endpoint: Endpoint, body: bytes) -> None:
    with pytest.raises(SchemaError):
        ADAPTER.decode_request(endpoint, body, capture_content=False)


def test_prepare_body() -> None:
    body = read("request.json")
    decoded = request(capture=False)
    assert ADAPTER.prepare_body(CHAT, decoded, body, "qwen3:8b") == (body, False)
    out = ADAPTER.prepare_body(CHAT, decoded, body, "llama3.3:70b")
    assert out.hide_usage_chunk is False
    assert json.loads(out.body) == dict(json.loads(body), model="llama3.3:70b")
    # Nested values travel as the client's own bytes (pretty-printing included).
    assert b'"messages":' + bytes(msgspec.json.decode(body, type=dict[str, msgspec.Raw])["messages"]) in out.body


# --- responses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUCCESS)
def test_success_case_whole_body(name: str) -> None:
    assert_matches(observe(name, [read(name)]), CASES[name])


@pytest.mark.parametrize("name", SUCCESS)
def test_success_case_without_capture_has_no_text(name: str) -> None:
    result = observe(name, [read(name)], Exchange({}))
    assert result.output_text is None
    assert_matches(result, dict(CASES[name], output_text=None))


def test_json_body_in_several_chunks() -> None:
    body = read("response.json")
    third = len(body) // 3
    assert_matches(observe("response.json", [body[:third], body[third:-3], b"", body[-3:]]), CASES["response.json"])


@pytest.mark.parametrize("name", ERRORS)
@pytest.mark.parametrize("streamed", [False, True])
def test_error_envelope(name: str, streamed: bool) -> None:
    envelope = json.loads(read(name))
    expected = CASES[name]
    unknown = set(expected) - {"error_type", "error_code"} - set(IGNORED_ERROR_KEYS)
    assert not unknown, f"error keys neither asserted nor ignored: {sorted(unknown)}"
    status = envelope["status"]
    assert status == expected["status"]
    observer = ADAPTER.observer(CHAT, Exchange({}), streamed=streamed, status=status)
    body = json.dumps(envelope["body"]).encode()
    observer.feed(body[:7], 1)
    observer.feed(body[7:], 2)
    result = observer.finish()
    # Ollama gives no error type or code (both null): the type falls back to the HTTP status.
    assert (expected["error_type"], expected["error_code"]) == (None, None)
    assert result.error_type == f"http_{status}"
    assert result.error_message == envelope["body"]["error"]
    assert (result.completed, result.finish_reason, result.usage) == (False, "error", None)


@pytest.mark.parametrize(
    ("body", "error_type", "message"),
    [
        (b'{"error": {"message": "m", "type": "api_error"}}', "api_error", "m"),
        (b'{"error": {"message": "m"}}', "http_500", "m"),
        (b"404 page not found", "http_500", None),
        (b"", "http_500", None),
    ],
)
def test_error_observer_fallbacks(body: bytes, error_type: str, message: str | None) -> None:
    observer = ADAPTER.observer(GENERATE, Exchange({}), streamed=False, status=500)
    observer.feed(body, 1)
    assert (observer.finish().error_type, observer.finish().error_message) == (error_type, message)


# --- streams --------------------------------------------------------------------------------------

cut_lists = st.lists(st.integers(min_value=0, max_value=5_000), max_size=30)


@pytest.mark.parametrize("name", STREAMS)
@settings(max_examples=200, deadline=None)
@given(cuts=cut_lists)
def test_random_splits_match_whole_body(name: str, cuts: list[int]) -> None:
    body = read(name)
    whole = observe(name, [body])
    assert observe(name, split(body, cuts)) == whole
    assert_matches(whole, CASES[name])


@pytest.mark.parametrize("name", STREAMS)
def test_byte_by_byte_and_crlf(name: str) -> None:
    body = read(name)
    assert_matches(observe(name, [body[i : i + 1] for i in range(len(body))]), CASES[name])
    crlf = body.replace(b"\n", b"\r\n")
    assert observe(name, [part + b"\r" for part in crlf.split(b"\r")[:-1]] + [crlf.split(b"\r")[-1]]) == observe(
        name, [body]
    )


def test_missing_final_newline_and_blank_lines() -> None:
    body = read("stream.txt")
    assert body.endswith(b"\n")
    assert observe("stream.txt", [body[:-1]]) == observe("stream.txt", [body])
    assert observe("stream.txt", [body.replace(b"\n", b"\n\n\r\n")]) == observe("stream.txt", [body])


def test_ttft_marks_thinking_and_tool_lines_not_the_final_one() -> None:
    lines = read("stream.txt").splitlines(keepends=True)
    exchange = Exchange({})
    observer = ADAPTER.observer(CHAT, exchange, streamed=True, status=200)
    for i, line in enumerate(lines):
        observer.feed(line, 1_000 * (i + 1))
    observer.finish()
    # Lines 1-3 carry thinking, line 4 the tool call, line 5 (done) nothing.
    assert (exchange.first_token_ns, exchange.last_token_ns, exchange.token_gaps) == (1_000, 4_000, 3)


@pytest.mark.parametrize("lines", [0, 1, 2, 3, 4])
def test_stream_cut_early_is_not_completed(lines: int) -> None:
    body = b"".join(read("stream.txt").splitlines(keepends=True)[:lines])
    result = observe("stream.txt", [body])
    assert (result.completed, result.usage, result.finish_reason, result.events) == (False, None, None, lines)
    assert result.model == ("qwen3:8b" if lines else None)


def test_malformed_line_is_noted_and_skipped() -> None:
    lines = read("stream.txt").splitlines(keepends=True)
    lines[1] = lines[1][:30] + b"\n"
    result = observe("stream.txt", [b"".join(lines)])
    assert result.error_type == "invalid_response"
    assert result.error_message is not None and result.error_message.startswith("stream line 2 could not be parsed")
    assert (result.completed, result.events) == (True, 5)
    assert result.usage == observe("stream.txt", [read("stream.txt")]).usage


def test_malformed_json_body_is_noted() -> None:
    observer = ADAPTER.observer(CHAT, Exchange({}), streamed=False, status=200)
    observer.feed(read("response.json")[:-20], 1)
    result = observer.finish()
    assert (result.completed, result.error_type) == (False, "invalid_response")


def test_generate_responses() -> None:
    body = (
        b'{"model":"llama3","response":"Hi","thinking":"hm","done":false}\n'
        b'{"model":"llama3","response":"","done":true,"done_reason":"length","prompt_eval_count":9,"eval_count":4}\n'
    )
    exchange = Exchange({})
    exchange.request = ADAPTER.decode_request(GENERATE, b'{"model": "llama3", "prompt": "x"}', capture_content=True)
    observer = ADAPTER.observer(GENERATE, exchange, streamed=True, status=200)
    observer.feed(body, 7)
    result = observer.finish()
    assert (result.output_text, result.output_chars, result.finish_reason, result.completed) == (
        "Hi",
        4,
        "length",
        True,
    )
    assert result.usage is not None and (result.usage.input_tokens, result.usage.total_tokens) == (9, 13)
    assert exchange.first_token_ns == 7


def test_final_line_without_counts_reports_zero() -> None:
    """Ollama's Go structs use omitempty: a final line without prompt_eval_count means 0 (fully cached)."""
    observer = ADAPTER.observer(CHAT, Exchange({}), streamed=True, status=200)
    observer.feed(b'{"model":"m","message":{"role":"assistant","content":""},"done":true,"eval_count":2}\n', 1)
    usage = observer.finish().usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (0, 2, 2)


def test_embed_observer() -> None:
    observer = ADAPTER.observer(EMBED, Exchange({}), streamed=False, status=200)
    observer.feed(b'{"model":"all-minilm","embeddings":[[0.1]],"prompt_eval_count":8}', 1)
    result = observer.finish()
    assert result.model == "all-minilm"
    assert result.usage is not None and (result.usage.input_tokens, result.usage.total_tokens) == (8, 8)
    legacy = ADAPTER.observer(EMBED, Exchange({}), streamed=False, status=200)
    legacy.feed(b'{"embedding":[0.1]}', 1)
    assert legacy.finish() == NormalizedResponse()
    broken = ADAPTER.observer(EMBED, Exchange({}), streamed=False, status=200)
    broken.feed(b'{"embedding":', 1)
    assert broken.finish().error_type == "invalid_response"
    empty = ADAPTER.observer(EMBED, Exchange({}), streamed=False, status=200)
    assert empty.finish() == NormalizedResponse(completed=False)


# --- NDJSON framing -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b and b"\r" not in b), max_size=8),
    newline=st.sampled_from([b"\n", b"\r\n"]),
    cuts=cut_lists,
    final_newline=st.booleans(),
)
def test_ndjson_splitter_any_split(lines: list[bytes], newline: bytes, cuts: list[int], final_newline: bool) -> None:
    data = newline.join(lines) + (newline if final_newline and lines else b"")
    splitter = NDJSONSplitter()
    out = [line for chunk in split(data, cuts) for line in splitter.feed(chunk)] + splitter.close()
    assert out == [line for line in lines if line.strip()]
    assert splitter.close() == []


def test_oversized_bodies_keep_their_usage_and_empty_ones_are_not_parsed() -> None:
    whole = ADAPTER.observer(CHAT, Exchange({}), streamed=False, status=200)
    whole.feed(read("response.json"), 1)
    expected = whole.finish()
    observer = ADAPTER.observer(CHAT, Exchange({}), streamed=False, status=200)
    observer.feed(b" " * (8 * 1024 * 1024), 1)  # past the 8 MB kept whole: only head and tail are kept
    observer.feed(read("response.json"), 2)
    result = observer.finish()
    assert result.usage is not None and result.usage == expected.usage
    assert result.model == expected.model
    assert ADAPTER.observer(CHAT, Exchange({}), streamed=False, status=200).finish() == NormalizedResponse(
        completed=False
    )


def test_only_the_first_parse_problem_is_kept() -> None:
    observer = ADAPTER.observer(CHAT, Exchange({}), streamed=True, status=200)
    observer.feed(b"{bad\n[1\n" + read("stream.txt"), 1)
    result = observer.finish()
    assert result.error_message is not None and result.error_message.startswith("stream line 1 ")
    assert (result.events, result.completed) == (7, True)
