"""OpenAIAdapter against the shared hand-written wire fixtures (../shared/fixtures/providers).

Table-driven over every case listed in the expected.json of openai_chat, openai_responses and
openai_embeddings (variants included). Expected values come from the fixtures, never from the code.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from _openai_cases import (
    ENDPOINTS,
    IGNORED_ERROR_KEYS,
    IGNORED_REQUEST_KEYS,
    Case,
    all_cases,
    assert_matches_expected,
    has_images,
    header_extras,
    load_expected,
    new_exchange,
    observe,
    read_bytes,
    request_for,
)

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers.openai.adapter import CHAT, EMBEDDINGS, RESPONSES, OpenAIAdapter
from llm_obs_middleware.records.schema import NormalizedRequest

CASES = all_cases()
SUCCESS = [pytest.param(case, id=case.id) for case in CASES if not case.is_error]
ERRORS = [pytest.param(case, id=case.id) for case in CASES if case.is_error]
JSON_BODIES = [pytest.param(case, id=case.id) for case in CASES if not case.is_error and not case.streamed]


def test_every_listed_case_is_covered() -> None:
    """The table really covers the fixtures: all three dirs, the chat variants, and files exist."""
    ids = {case.id for case in CASES}
    assert {
        "openai_chat/response.json",
        "openai_chat/stream.txt",
        "openai_chat/error_429.json",
        "openai_chat/variants/azure_stream.txt",
        "openai_chat/variants/deepseek_response.json",
        "openai_chat/variants/groq_stream.txt",
        "openai_chat/variants/vllm_stream.txt",
        "openai_chat/variants/mistral_stream.txt",
        "openai_responses/response.json",
        "openai_responses/stream.txt",
        "openai_responses/error_429.json",
        "openai_responses/variants/incomplete_response.json",
        "openai_embeddings/response.json",
        "openai_embeddings/variants/response_base64.json",
        "openai_embeddings/error_429.json",
    } <= ids
    for case in CASES:
        assert case.body(), case.id


# --- endpoint recognition -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/v1/chat/completions", CHAT),
        ("/chat/completions", CHAT),
        ("/v1/responses", RESPONSES),
        ("/responses", RESPONSES),
        ("/v1/embeddings", EMBEDDINGS),
        ("/embeddings", EMBEDDINGS),
    ],
)
def test_match_post(path: str, endpoint: object) -> None:
    assert OpenAIAdapter().match("POST", path) is endpoint


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/chat/completions"), ("POST", "/v1/models"), ("POST", "/v1/chat/completions/x"), ("POST", "/")],
)
def test_match_rejects(method: str, path: str) -> None:
    assert OpenAIAdapter().match(method, path) is None


def test_endpoint_operations() -> None:
    assert (CHAT.operation, RESPONSES.operation, EMBEDDINGS.operation) == ("chat", "chat", "embeddings")
    for fixture, endpoint in ENDPOINTS.items():
        assert load_expected(fixture)["operation"] == endpoint.operation


# --- request decoding -----------------------------------------------------------------------------


def _request_view(request: NormalizedRequest) -> dict[str, Any]:
    params = request.params
    messages = request.messages or []
    return {
        "model": request.model,
        "stream": request.stream,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "n": params.n,
        "user": request.user,
        "response_format": params.response_format,
        "tool_definitions": params.tool_definitions,
        "tool_choice": params.tool_choice,
        "messages": request.message_count,
        "input_items": request.message_count,
        # Responses: captured instructions become a leading system message.
        "instructions": bool(messages) and messages[0].role == "system" and bool(messages[0].content),
        "has_images": has_images(request),
        # Captured (the fixtures are decoded with content capture on): roles tell these apart.
        "system_messages": sum(1 for message in messages if message.role in ("system", "developer")),
        "tool_result_messages": sum(1 for message in messages if message.role == "tool"),
        "tool_result_items": sum(1 for message in messages if message.role == "tool"),
    }


@pytest.mark.parametrize("fixture", list(ENDPOINTS))
def test_decode_request(fixture: str) -> None:
    expected = load_expected(fixture)["request"]
    request = request_for(fixture, capture=True)
    view = _request_view(request)
    unknown = set(expected) - set(view) - set(IGNORED_REQUEST_KEYS)
    assert not unknown, f"request keys neither asserted nor in IGNORED_REQUEST_KEYS: {sorted(unknown)}"
    wanted = {key: value for key, value in expected.items() if key not in IGNORED_REQUEST_KEYS}
    assert {key: view[key] for key in wanted} == wanted
    assert request.operation == load_expected(fixture)["operation"]


@pytest.mark.parametrize("fixture", list(ENDPOINTS))
def test_decode_request_without_capture_keeps_params(fixture: str) -> None:
    captured = request_for(fixture, capture=True)
    plain = request_for(fixture, capture=False)
    assert plain.messages is None
    assert msgspec.structs.replace(captured, messages=None) == plain


def test_decode_chat_request_captures_messages() -> None:
    request = request_for("openai_chat", capture=True)
    assert request.messages is not None
    assert [m.role for m in request.messages] == ["developer", "user", "assistant", "tool", "assistant", "user"]
    assert request.messages[2].tool_calls[0].name == "get_weather"
    assert json.loads(request.messages[2].tool_calls[0].arguments) == {"city": "Lyon", "unit": "celsius"}
    assert request.messages[3].tool_call_id == "call_Lm4Qw9TzR2vX8kP1bN6sD3fH"
    # Multi-part content keeps the text parts only.
    assert request.messages[5].content == "Now compare Paris and Nice. Also, which landmark is in this photo?"


def test_decode_request_reads_stream_options() -> None:
    body = json.loads(read_bytes("openai_chat", "request.json"))
    body.update(stream=True, stream_options={"include_usage": True})
    request = OpenAIAdapter().decode_request(CHAT, json.dumps(body).encode(), capture_content=False)
    assert request.stream is True
    assert request.include_usage is True


@pytest.mark.parametrize("body", [b"", b"{", b"[1, 2]", b'{"model": 3}', b"\xff\xfe"])
@pytest.mark.parametrize("endpoint", [CHAT, RESPONSES, EMBEDDINGS], ids=lambda e: e.api)
def test_decode_request_rejects_malformed(endpoint: Any, body: bytes) -> None:
    with pytest.raises(SchemaError):
        OpenAIAdapter().decode_request(endpoint, body, capture_content=False)


# --- responses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SUCCESS)
def test_success_case_whole_body(case: Case) -> None:
    result = observe(case, [case.body()])
    assert_matches_expected(result, case.expected)
    if not case.streamed:
        assert result.events == 0


@pytest.mark.parametrize("case", SUCCESS)
def test_success_case_without_capture_has_no_text(case: Case) -> None:
    """Without content capture the output text is not kept; everything else is the same."""
    exchange = Exchange({})  # no decoded request: capture is off
    result = observe(case, [case.body()], exchange)
    assert result.output_text is None
    expected = dict(case.expected, output_text=None)
    assert_matches_expected(result, expected)


@pytest.mark.parametrize("case", JSON_BODIES)
def test_json_body_in_several_chunks(case: Case) -> None:
    body = case.body()
    third = len(body) // 3
    result = observe(case, [body[:third], body[third : 2 * third], b"", body[2 * third :]])
    assert_matches_expected(result, case.expected)


@pytest.mark.parametrize("case", ERRORS)
@pytest.mark.parametrize("streamed", [False, True])
def test_error_envelope(case: Case, streamed: bool) -> None:
    envelope = json.loads(case.body())
    expected = case.expected
    unknown = set(expected) - {"error_type", "error_code", "request_id"} - set(IGNORED_ERROR_KEYS)
    assert not unknown, f"error keys neither asserted nor in IGNORED_ERROR_KEYS: {sorted(unknown)}"
    assert envelope["status"] == expected["status"] == 429
    body = json.dumps(envelope["body"]).encode()
    observer = OpenAIAdapter().observer(case.endpoint, new_exchange(case.fixture), streamed=streamed, status=429)
    observer.feed(body[:10], 1)
    observer.feed(body[10:], 2)
    result = observer.finish()
    # The provider's machine-readable code is preferred over its (coarser) type.
    assert result.error_type == expected["error_code"]
    assert result.error_message == envelope["body"]["error"]["message"]
    assert result.completed is False
    assert result.finish_reason == "error"
    assert result.usage is None
    assert result.tool_calls == []
    assert header_extras(OpenAIAdapter(), envelope["headers"]) == {"openai.request_id": expected["request_id"]}


def test_error_code_is_preferred_over_type() -> None:
    """openai_chat's 429 has type "tokens" and code "rate_limit_exceeded": the code wins."""
    expected = load_expected("openai_chat")["cases"]["error_429.json"]
    assert expected["error_type"] != expected["error_code"]
    envelope = json.loads(read_bytes("openai_chat", "error_429.json"))
    observer = OpenAIAdapter().observer(CHAT, Exchange({}), streamed=False, status=429)
    observer.feed(json.dumps(envelope["body"]).encode(), 1)
    assert observer.finish().error_type == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("body", "error_type", "message"),
    [
        (b'{"error": {"message": "m", "type": "server_error", "code": null}}', "server_error", "m"),
        (b'{"error": "plain text error"}', "http_503", "plain text error"),
        (b"<html>Bad gateway</html>", "http_503", None),
        (b"", "http_503", None),
    ],
)
def test_error_observer_fallbacks(body: bytes, error_type: str, message: str | None) -> None:
    observer = OpenAIAdapter().observer(CHAT, Exchange({}), streamed=False, status=503)
    observer.feed(body, 1)
    result = observer.finish()
    assert (result.error_type, result.error_message, result.completed) == (error_type, message, False)


# --- prepare_body ---------------------------------------------------------------------------------

_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def _chat_stream_body(stream: bytes) -> bytes:
    """openai_chat/request.json (pretty-printed, as the client sent it) with `"stream": false` replaced."""
    body = read_bytes("openai_chat", "request.json")
    assert body.count(b'"stream": false') == 1
    return body.replace(b'"stream": false', stream)


def _prepare(endpoint: Any, body: bytes, model: str) -> tuple[bytes, bool, NormalizedRequest]:
    adapter = OpenAIAdapter()
    request = adapter.decode_request(endpoint, body, capture_content=False)
    prepared = adapter.prepare_body(endpoint, request, body, model)
    return prepared.body, prepared.hide_usage_chunk, request


@pytest.mark.parametrize("fixture", list(ENDPOINTS))
def test_prepare_body_unchanged_model_keeps_bytes(fixture: str) -> None:
    body = read_bytes(fixture, "request.json")
    out, hide, _ = _prepare(ENDPOINTS[fixture], body, load_expected(fixture)["request"]["model"])
    assert out == body
    assert hide is False


@pytest.mark.parametrize("fixture", list(ENDPOINTS))
def test_prepare_body_replaces_model_and_keeps_nested_bytes(fixture: str) -> None:
    body = read_bytes(fixture, "request.json")
    out, hide, _ = _prepare(ENDPOINTS[fixture], body, "upstream-model-x")
    assert hide is False
    before, after = _top_level(body), _top_level(out)
    assert list(after) == list(before)  # same keys, same order
    assert bytes(after["model"]) == b'"upstream-model-x"'
    for key, raw in before.items():
        if key != "model":
            # Nested values travel as the client's exact bytes (pretty-printing included).
            assert bytes(after[key]) == bytes(raw), key
            assert bytes(raw) in out
    assert json.loads(out) == dict(json.loads(body), model="upstream-model-x")


def test_prepare_body_streamed_chat_asks_for_usage() -> None:
    body = _chat_stream_body(b'"stream": true')
    assert b"stream_options" not in body
    out, hide, request = _prepare(CHAT, body, "gpt-4.1-mini")
    assert request.stream is True and request.include_usage is False
    assert hide is True
    assert b'"stream_options":{"include_usage":true}' in out
    assert json.loads(out) == dict(json.loads(body), stream_options={"include_usage": True})
    before, after = _top_level(body), _top_level(out)
    for key, raw in before.items():
        assert bytes(after[key]) == bytes(raw), key


def test_prepare_body_streamed_chat_with_usage_is_untouched() -> None:
    body = _chat_stream_body(b'"stream": true, "stream_options": {"include_usage": true}')
    out, hide, request = _prepare(CHAT, body, "gpt-4.1-mini")
    assert request.include_usage is True
    assert out == body
    assert hide is False


def test_prepare_body_streamed_chat_with_usage_and_new_model() -> None:
    body = _chat_stream_body(b'"stream": true, "stream_options": {"include_usage": true}')
    out, hide, _ = _prepare(CHAT, body, "other")
    assert hide is False
    assert json.loads(out) == dict(json.loads(body), model="other")
    assert b'"stream_options":{"include_usage": true}' in out  # the client's own bytes


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (b'"stream_options": {"include_usage": false}', {"include_usage": True}),
        (b'"stream_options": null', {"include_usage": True}),
        (b'"stream_options": {}', {"include_usage": True}),
        (
            b'"stream_options": {"include_obfuscation": false}',
            {"include_obfuscation": False, "include_usage": True},
        ),
    ],
)
def test_prepare_body_streamed_chat_forces_usage_keeping_other_options(options: bytes, expected: object) -> None:
    body = _chat_stream_body(b'"stream": true, ' + options)
    out, hide, _ = _prepare(CHAT, body, "gpt-4.1-mini")
    assert hide is True
    assert json.loads(out) == dict(json.loads(body), stream_options=expected)


def test_prepare_body_streamed_responses_needs_no_usage_option() -> None:
    body = read_bytes("openai_responses", "request.json").replace(b'"stream": false', b'"stream": true')
    out, hide, request = _prepare(RESPONSES, body, "o4-mini")
    assert request.stream is True
    assert (out, hide) == (body, False)


# --- TTFT marking ---------------------------------------------------------------------------------

# (fixture, case) -> (index of the first SSE event carrying a content/tool-call delta, of the last one,
# number of token-carrying events). Read off the fixture files by hand: role-only preambles
# (azure/groq/vllm/mistral, with content "") and Azure's prompt-filter chunk do not count.
TOKEN_EVENTS = {
    ("openai_chat", "stream.txt"): (0, 5, 6),  # the first chunk already carries tool call 0 (id + name)
    ("openai_chat", "variants/azure_stream.txt"): (2, 3, 2),
    ("openai_chat", "variants/groq_stream.txt"): (1, 2, 2),
    ("openai_chat", "variants/vllm_stream.txt"): (1, 2, 2),  # event 3 has content "" with the finish
    ("openai_chat", "variants/mistral_stream.txt"): (1, 1, 1),
    ("openai_responses", "stream.txt"): (6, 15, 6),  # 3 output_text.delta + 3 function_call_arguments.delta
}


def _sse_events(body: bytes) -> list[bytes]:
    """Split an LF-framed fixture stream into raw events (terminator kept), independently of _sse."""
    assert b"\r" not in body
    parts = body.split(b"\n\n")
    assert parts[-1] == b""
    return [part + b"\n\n" for part in parts[:-1]]


@pytest.mark.parametrize(("fixture", "name"), list(TOKEN_EVENTS), ids=lambda v: str(v))
def test_ttft_marked_at_first_delta(fixture: str, name: str) -> None:
    first, last, count = TOKEN_EVENTS[(fixture, name)]
    case = Case(fixture, name, load_expected(fixture)["cases"][name])
    exchange = new_exchange(fixture)
    observer = OpenAIAdapter().observer(case.endpoint, exchange, streamed=True, status=200)
    for i, event in enumerate(_sse_events(case.body())):
        observer.feed(event, 1_000 * (i + 1))
        if i < first:
            assert exchange.first_token_ns == 0, f"token marked by event {i} (preamble)"
    result = observer.finish()
    assert exchange.first_token_ns == 1_000 * (first + 1)
    assert exchange.last_token_ns == 1_000 * (last + 1)
    assert exchange.token_gaps == count - 1
    assert_matches_expected(result, case.expected)


def test_role_only_preamble_does_not_mark_token() -> None:
    preamble = (
        b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
        b'"finish_reason":null}]}\n\n'
        b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant"},'
        b'"finish_reason":null}]}\n\n'
    )
    token = b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    exchange = Exchange({})
    observer = OpenAIAdapter().observer(CHAT, exchange, streamed=True, status=200)
    observer.feed(preamble, 10)
    assert exchange.first_token_ns == 0
    observer.feed(token, 20)
    observer.feed(token, 35)
    assert (exchange.first_token_ns, exchange.last_token_ns, exchange.max_gap_ns) == (20, 35, 15)
    observer.feed(b"data: [DONE]\n\n", 40)
    result = observer.finish()
    assert result.completed is True
    assert result.id == "c1"
    assert result.events == 4  # two preamble + two token events; [DONE] is not counted


def test_chat_stream_without_done_is_not_completed() -> None:
    body = read_bytes("openai_chat", "stream.txt")
    assert body.endswith(b"data: [DONE]\n\n")
    case = Case("openai_chat", "stream.txt", load_expected("openai_chat")["cases"]["stream.txt"])
    result = observe(case, [body[: -len(b"data: [DONE]\n\n")]])
    assert result.completed is False
    assert result.usage is not None and result.usage.input_tokens == case.expected["input_tokens"]


def test_chat_stream_in_band_error() -> None:
    body = (
        b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
        b'data: {"error":{"message":"overloaded","type":"server_error","code":"overloaded"}}\n\n'
    )
    observer = OpenAIAdapter().observer(CHAT, Exchange({}), streamed=True, status=200)
    observer.feed(body, 1)
    result = observer.finish()
    assert (result.completed, result.finish_reason, result.error_type, result.error_message) == (
        False,
        "error",
        "overloaded",
        "overloaded",
    )
