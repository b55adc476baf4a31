"""AnthropicAdapter against the shared hand-written wire fixtures (../shared/fixtures/providers/anthropic_messages).

Table-driven over every case listed in expected.json (variants included). Expected values come from
the fixtures, never from the code; every key is asserted or named, with the reason, in an ignore list.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import pytest
from _openai_cases import SHARED_FIXTURES, has_images, header_extras, load_expected, read_bytes
from hypothesis import given, settings, strategies as st

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers.anthropic.adapter import ADAPTERS, MESSAGES, AnthropicAdapter
from llm_obs_middleware.providers.anthropic.observe import anthropic_usage, finish_reason
from llm_obs_middleware.providers.anthropic.wire import AnthropicUsage
from llm_obs_middleware.providers.registry import adapter_for_kind, match_request
from llm_obs_middleware.records.schema import NormalizedRequest, NormalizedResponse

FIXTURE = "anthropic_messages"
EXPECTED = load_expected(FIXTURE)
ADAPTER = AnthropicAdapter()

# expected.json keys our NormalizedResponse cannot represent, and why they are not asserted.
IGNORED_RESPONSE_KEYS = {
    "streamed": "an input here: it selects the stream or JSON observer",
    "done_sentinel": "Anthropic streams have none (asserted: no [DONE] in the bytes); completion is message_stop",
    "note": "free text",
    "thinking_blocks": "not in the schema (thinking text counts in output_chars, never in output_text)",
}
IGNORED_ERROR_KEYS = {
    "status": "an input here: passed to observer(status=...)",
    "error_code": "Anthropic errors carry a type and no code (asserted null): the type is the record's error_type",
    "retry_after_seconds": "from the retry-after header, not the body the observer sees",
    "retryable": "a routing decision, not part of the normalized response",
}
IGNORED_REQUEST_KEYS = {
    "tool_result_blocks": "not in the schema",
    "thinking_budget_tokens": "not in the schema",
    "cache_control_breakpoints": "not in the schema",
}
CASES = sorted(EXPECTED["cases"])
ERRORS = [name for name in CASES if "status" in EXPECTED["cases"][name]]
SUCCESS = [name for name in CASES if name not in ERRORS]
STREAMS = [name for name in SUCCESS if EXPECTED["cases"][name]["streamed"]]
JSON_BODIES = [name for name in SUCCESS if name not in STREAMS]


def new_exchange(*, capture: bool = True) -> Exchange:
    exchange = Exchange({})
    exchange.request = ADAPTER.decode_request(MESSAGES, read_bytes(FIXTURE, "request.json"), capture_content=capture)
    return exchange


def observe(name: str, chunks: list[bytes], exchange: Exchange | None = None) -> NormalizedResponse:
    """Feed ``chunks`` (now_ns = 1, 2, 3...) to a fresh observer for case ``name`` and finish it."""
    exchange = exchange if exchange is not None else new_exchange()
    streamed = bool(EXPECTED["cases"][name]["streamed"])
    observer = ADAPTER.observer(MESSAGES, exchange, streamed=streamed, status=200)
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
        "cache_write_1h_tokens": usage.cache_write_1h_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "finish_reason": result.finish_reason,
        "finish_reason_raw": result.finish_reasons,
        "tool_calls": len(result.tool_calls),
        "tool_call_names": [call.name for call in result.tool_calls],
        "tool_call_ids": [call.id for call in result.tool_calls],
        "tool_call_arguments": [json.loads(call.arguments) for call in result.tool_calls],
        "output_text": result.output_text,
        "events": result.events,
        "error_type": result.error_type,
        "service_tier": result.extra.get("anthropic.service_tier"),
    }
    assert usage.input_tokens is not None
    uncached = usage.input_tokens - (usage.cache_read_tokens or 0) - (usage.cache_write_tokens or 0)
    actual["uncached_input_tokens"] = actual["provider_input_tokens"] = uncached  # Anthropic's own input_tokens
    if usage.cache_write_1h_tokens is not None:
        actual["cache_write_5m_tokens"] = (usage.cache_write_tokens or 0) - usage.cache_write_1h_tokens
    unknown = set(expected) - set(actual) - set(IGNORED_RESPONSE_KEYS)
    assert not unknown, f"expected.json keys neither asserted nor in IGNORED_RESPONSE_KEYS: {sorted(unknown)}"
    wanted = {key: value for key, value in expected.items() if key not in IGNORED_RESPONSE_KEYS}
    assert {key: actual[key] for key in wanted} == wanted
    if "error_type" not in expected:
        assert result.error_type is None and result.error_message is None


def test_every_fixture_file_is_a_listed_case() -> None:
    directory = SHARED_FIXTURES / FIXTURE
    files = {str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()}
    assert files - {"request.json", "expected.json"} == set(CASES)
    assert set(CASES) == {
        "response.json",
        "stream.txt",
        "error_429.json",
        "variants/error_529.json",
        "variants/stream_error.txt",
    }
    assert EXPECTED["provider"] == ADAPTER.provider_name
    assert EXPECTED["operation"] == MESSAGES.operation


# --- endpoints, registry, auth --------------------------------------------------------------------


def test_match() -> None:
    assert ADAPTER.match("POST", "/v1/messages") is MESSAGES
    for method, path in [
        ("GET", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),  # proxied by the router, unobserved
        ("POST", "/v1/messages/batches"),
        ("POST", "/messages"),
        ("POST", "/v1/complete"),
        ("POST", "/v1/chat/completions"),
    ]:
        assert ADAPTER.match(method, path) is None, (method, path)


def test_registry_discovers_the_adapter() -> None:
    assert isinstance(adapter_for_kind("anthropic"), AnthropicAdapter)
    assert ADAPTERS == {"anthropic": adapter_for_kind("anthropic")}
    kinds = {"claude": "anthropic"}
    matched = match_request("POST", "/claude/v1/messages", kinds)
    assert matched is not None and (matched.endpoint, matched.provider, matched.path) == (
        MESSAGES,
        "claude",
        "/v1/messages",
    )
    assert match_request("POST", "/claude/v1/messages/count_tokens", kinds) is None


def test_auth_and_paths() -> None:
    assert ADAPTER.auth_headers("sk-ant-1") == [(b"x-api-key", b"sk-ant-1")]
    assert ADAPTER.path_model(MESSAGES, "/v1/messages") is None
    assert ADAPTER.upstream_path(MESSAGES, "/v1/messages", "other") == "/v1/messages"
    assert ADAPTER.is_stream(b"text/event-stream; charset=utf-8")
    assert not ADAPTER.is_stream(b"application/json")
    assert ADAPTER.openai_compatible is False


# --- requests -------------------------------------------------------------------------------------


def _request_view(request: NormalizedRequest) -> dict[str, Any]:
    params = request.params
    messages = request.messages or []
    return {
        "model": request.model,
        "stream": request.stream,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "messages": request.message_count,
        "tool_definitions": params.tool_definitions,
        "tool_choice": params.tool_choice,
        # Captured, the system prompt becomes a leading system message.
        "system": bool(messages) and messages[0].role == "system" and bool(messages[0].content),
        "has_images": has_images(request),
    }


def test_decode_request() -> None:
    expected = EXPECTED["request"]
    request = new_exchange().request
    assert request is not None
    view = _request_view(request)
    unknown = set(expected) - set(view) - set(IGNORED_REQUEST_KEYS)
    assert not unknown, f"request keys neither asserted nor in IGNORED_REQUEST_KEYS: {sorted(unknown)}"
    wanted = {key: value for key, value in expected.items() if key not in IGNORED_REQUEST_KEYS}
    assert {key: view[key] for key in wanted} == wanted
    assert request.operation == "chat"
    assert request.user == "user_8f2a91"  # metadata.user_id
    assert request.include_usage is True


def test_decode_request_without_capture_keeps_everything_else() -> None:
    captured, plain = new_exchange(capture=True).request, new_exchange(capture=False).request
    assert captured is not None and plain is not None and plain.messages is None
    assert msgspec.structs.replace(captured, messages=None) == plain


def test_decode_request_captures_messages() -> None:
    request = new_exchange().request
    assert request is not None and request.messages is not None
    messages = request.messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0].content is not None and messages[0].content.startswith("You are a concise travel assistant.")
    assert messages[1].content == "What's the weather in Lyon?"
    [call] = messages[2].tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "toolu_01Bv6Np3Qs8Xw1Ty4Mk7Jc2R",
        "get_weather",
        {"city": "Lyon"},
    )
    assert messages[3].tool_call_id == "toolu_01Bv6Np3Qs8Xw1Ty4Mk7Jc2R"
    assert json.loads(messages[3].content or "") == {"temp_c": 22, "condition": "sunny"}
    assert messages[5].content == "Which city is this photo from? Check its weather too."  # the image is left out


def test_decode_request_stream_and_stop_sequences() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "stream": True,
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "messages": [],
    }
    request = ADAPTER.decode_request(MESSAGES, json.dumps(body).encode(), capture_content=True)
    assert (request.stream, request.params.stop, request.params.temperature) == (True, ["END"], 0.2)
    assert request.messages == [] and request.message_count == 0
    system = {"model": "m", "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]}
    captured = ADAPTER.decode_request(MESSAGES, json.dumps(system).encode(), capture_content=True).messages
    assert captured is not None and [(m.role, m.content) for m in captured] == [("system", "Be brief."), ("user", "hi")]


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b'{"model": 3}', b'{"messages": [{"content": 5}]}', b"\xff"])
def test_decode_request_rejects_malformed(body: bytes) -> None:
    with pytest.raises(SchemaError):
        ADAPTER.decode_request(MESSAGES, body, capture_content=True)


_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def test_prepare_body_keeps_the_bytes_unless_the_model_changes() -> None:
    body = read_bytes(FIXTURE, "request.json")
    request = ADAPTER.decode_request(MESSAGES, body, capture_content=False)
    assert ADAPTER.prepare_body(MESSAGES, request, body, EXPECTED["request"]["model"]) == (body, False)
    out, hide = ADAPTER.prepare_body(MESSAGES, request, body, "claude-haiku-4-5")
    assert hide is False
    before, after = _top_level(body), _top_level(out)
    assert list(after) == list(before)
    assert bytes(after["model"]) == b'"claude-haiku-4-5"'
    for key, raw in before.items():
        if key != "model":
            assert bytes(after[key]) == bytes(raw), key  # the client's own bytes, pretty-printing included


# --- responses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUCCESS)
def test_success_case_whole_body(name: str) -> None:
    body = read_bytes(FIXTURE, name)
    result = observe(name, [body])
    assert_matches(result, EXPECTED["cases"][name])
    # Text, tool names and arguments count, and thinking too (more than the visible output).
    visible = len(result.output_text or "") + sum(len(call.name) + len(call.arguments) for call in result.tool_calls)
    assert result.output_chars >= visible
    assert (result.output_chars > visible) is bool(EXPECTED["cases"][name].get("thinking_blocks"))
    if name in STREAMS:
        assert (b"[DONE]" in body) is EXPECTED["cases"][name]["done_sentinel"]


@pytest.mark.parametrize("name", SUCCESS)
def test_success_case_without_capture_has_no_text(name: str) -> None:
    result = observe(name, [read_bytes(FIXTURE, name)], Exchange({}))
    assert result.output_text is None
    assert_matches(result, dict(EXPECTED["cases"][name], output_text=None))


@pytest.mark.parametrize("name", JSON_BODIES)
def test_json_body_in_several_chunks(name: str) -> None:
    body = read_bytes(FIXTURE, name)
    third = len(body) // 3
    assert_matches(
        observe(name, [body[:third], body[third : 2 * third], b"", body[2 * third :]]), EXPECTED["cases"][name]
    )


@pytest.mark.parametrize("name", ERRORS)
@pytest.mark.parametrize("streamed", [False, True])
def test_error_envelope(name: str, streamed: bool) -> None:
    envelope = json.loads(read_bytes(FIXTURE, name))
    expected = EXPECTED["cases"][name]
    unknown = set(expected) - {"error_type", "request_id"} - set(IGNORED_ERROR_KEYS)
    assert not unknown, f"error keys neither asserted nor in IGNORED_ERROR_KEYS: {sorted(unknown)}"
    assert envelope["status"] == expected["status"] and expected["error_code"] is None
    body = json.dumps(envelope["body"]).encode()
    observer = ADAPTER.observer(MESSAGES, new_exchange(), streamed=streamed, status=expected["status"])
    observer.feed(body[:7], 1)
    observer.feed(body[7:], 2)
    result = observer.finish()
    assert result.error_type == expected["error_type"]
    assert result.error_message == envelope["body"]["error"]["message"]
    assert (result.completed, result.finish_reason, result.usage, result.tool_calls) == (False, "error", None, [])
    assert header_extras(ADAPTER, envelope["headers"]) == {"anthropic.request_id": expected["request_id"]}


@pytest.mark.parametrize("body", [b"<html>Bad gateway</html>", b"", b'{"error": {"message": "m"}}', b'"text"'])
def test_error_observer_fallbacks(body: bytes) -> None:
    observer = ADAPTER.observer(MESSAGES, Exchange({}), streamed=False, status=529)
    observer.feed(body, 1)
    result = observer.finish()
    assert (result.error_type, result.completed, result.finish_reason) == ("http_529", False, "error")
    assert result.error_message == ("m" if b"message" in body else None)


def test_truncated_json_body_is_noted() -> None:
    body = read_bytes(FIXTURE, "response.json")
    result = observe("response.json", [body[: len(body) // 2]])
    assert (result.completed, result.error_type, result.usage) == (False, "invalid_response", None)
    assert result.error_message is not None and "unparsable" in result.error_message


# --- streams: completion, errors, parse problems ---------------------------------------------------


def _events(body: bytes) -> list[bytes]:
    """Split an LF-framed fixture stream into raw events (terminator kept), independently of _sse."""
    assert b"\r" not in body
    parts = body.split(b"\n\n")
    assert parts[-1] == b""
    return [part + b"\n\n" for part in parts[:-1]]


def test_stream_without_message_stop_is_not_completed() -> None:
    events = _events(read_bytes(FIXTURE, "stream.txt"))
    assert events[-1].startswith(b"event: message_stop")
    result = observe("stream.txt", [b"".join(events[:-1])])
    expected = EXPECTED["cases"]["stream.txt"]
    assert result.completed is False
    assert result.usage is not None and result.usage.output_tokens == expected["output_tokens"]
    assert result.finish_reason == expected["finish_reason"] and result.error_type is None


def test_stream_cut_before_message_delta_keeps_the_start_usage() -> None:
    events = _events(read_bytes(FIXTURE, "stream.txt"))
    result = observe("stream.txt", [b"".join(events[:5])])
    assert result.completed is False and result.finish_reason is None
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (2204, 8)


def test_unknown_event_types_pass_through_and_are_noted() -> None:
    events = _events(read_bytes(FIXTURE, "stream.txt"))
    extra = [b'event: brand_new_event\ndata: {"type":"brand_new_event"}\n\n', b'data: {"type":"other_new"}\n\n']
    result = observe("stream.txt", [b"".join([events[0], *extra, *events[1:]])])
    expected = EXPECTED["cases"]["stream.txt"]
    # Not an error: the record only notes what it could not read.
    assert result.error_message == "unknown stream events passed through: brand_new_event, other_new"
    assert_matches(msgspec.structs.replace(result, error_message=None), dict(expected, events=expected["events"] + 2))


def test_unparsable_stream_event_is_an_invalid_response() -> None:
    events = _events(read_bytes(FIXTURE, "stream.txt"))
    broken = events[-2][: len(events[-2]) // 2] + b"\n\n"  # message_delta, JSON cut in half
    result = observe("stream.txt", [b"".join([*events[:-2], broken, events[-1]])])
    assert (result.completed, result.error_type) == (True, "invalid_response")
    assert result.error_message == "unparsable stream events: message_delta"
    assert result.usage is not None and result.usage.output_tokens == 8  # message_start's count: the delta was lost


def test_in_band_error_keeps_the_usage_seen() -> None:
    result = observe("variants/stream_error.txt", [read_bytes(FIXTURE, "variants/stream_error.txt")])
    assert result.error_message == "Overloaded"


# --- usage and finish reasons ------------------------------------------------------------------------


def test_one_hour_cache_writes() -> None:
    usage = anthropic_usage(
        msgspec.convert(
            {
                "input_tokens": 10,
                "cache_creation_input_tokens": 150,
                "cache_read_input_tokens": 5,
                "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 50},
                "output_tokens": 7,
            },
            AnthropicUsage,
        )
    )
    assert usage is not None
    assert (usage.input_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens, usage.total_tokens) == (
        165,
        150,
        50,
        172,
    )
    only_breakdown = anthropic_usage(
        msgspec.convert({"input_tokens": 1, "cache_creation": {"ephemeral_5m_input_tokens": 3}}, AnthropicUsage)
    )
    assert only_breakdown is not None and (only_breakdown.input_tokens, only_breakdown.cache_write_tokens) == (4, 3)
    assert anthropic_usage(AnthropicUsage()) == anthropic_usage(AnthropicUsage(output_tokens=None))
    assert anthropic_usage(None) is None


@pytest.mark.parametrize(
    ("raw", "tools", "expected"),
    [
        ("end_turn", False, "stop"),
        ("stop_sequence", False, "stop"),
        ("max_tokens", False, "length"),
        ("model_context_window_exceeded", False, "length"),
        ("tool_use", True, "tool_calls"),
        ("refusal", False, "content_filter"),
        ("pause_turn", False, "other"),
        (None, False, None),
    ],
)
def test_finish_reasons(raw: str | None, tools: bool, expected: str | None) -> None:
    assert finish_reason(raw, tools) == expected


# --- TTFT and chunking -------------------------------------------------------------------------------

# stream.txt: event 2 is the first thinking_delta; event 14 the last input_json_delta. Token-carrying
# events: 2 thinking deltas, 2 text deltas, the tool_use start (its name) and 2 non-empty JSON deltas.
# The empty text block start, the signature delta, ping and the empty partial_json carry none.
TOKEN_EVENTS = {"stream.txt": (2, 14, 7), "variants/stream_error.txt": (2, 2, 1)}


@pytest.mark.parametrize("name", list(TOKEN_EVENTS))
def test_ttft_marked_at_the_first_token_event(name: str) -> None:
    first, last, count = TOKEN_EVENTS[name]
    exchange = new_exchange()
    observer = ADAPTER.observer(MESSAGES, exchange, streamed=True, status=200)
    for i, event in enumerate(_events(read_bytes(FIXTURE, name))):
        observer.feed(event, 1_000 * (i + 1))
        if i < first:
            assert exchange.first_token_ns == 0, f"token marked by event {i}"
    assert_matches(observer.finish(), EXPECTED["cases"][name])
    assert (exchange.first_token_ns, exchange.last_token_ns) == (1_000 * (first + 1), 1_000 * (last + 1))
    assert exchange.token_gaps == count - 1


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    assert b"".join(chunks) == data
    return chunks


_cuts = st.lists(st.integers(min_value=0, max_value=20_000), max_size=40)
_ENDINGS = {"lf": lambda b: b, "crlf": lambda b: b.replace(b"\n", b"\r\n"), "cr": lambda b: b.replace(b"\n", b"\r")}


@pytest.mark.parametrize("ending", list(_ENDINGS))
@pytest.mark.parametrize("name", STREAMS)
@settings(max_examples=100, deadline=None)
@given(cuts=_cuts)
def test_any_split_gives_the_same_result(name: str, ending: str, cuts: list[int]) -> None:
    body = _ENDINGS[ending](read_bytes(FIXTURE, name))
    whole = observe(name, [body])
    split = observe(name, _split(body, cuts))
    assert split == whole
    assert_matches(split, EXPECTED["cases"][name])


@pytest.mark.parametrize("name", STREAMS)
def test_byte_by_byte(name: str) -> None:
    body = read_bytes(FIXTURE, name).replace(b"\n", b"\r\n")  # every CRLF split between CR and LF too
    assert_matches(observe(name, [body[i : i + 1] for i in range(len(body))]), EXPECTED["cases"][name])


def test_error_object_in_a_200_body() -> None:
    body = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    result = observe("response.json", [body])
    assert (result.completed, result.finish_reason, result.error_type, result.error_message) == (
        False,
        "error",
        "overloaded_error",
        "Overloaded",
    )
