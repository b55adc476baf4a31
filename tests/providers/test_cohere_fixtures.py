"""CohereAdapter against the shared hand-written wire fixtures (../shared/fixtures/providers/cohere_v2).

Table-driven over every case listed in expected.json. Expected values come from the fixtures, never
from the code; every key is asserted or named, with the reason, in an ignore list.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import pytest
from _openai_cases import SHARED_FIXTURES, has_images, load_expected, read_bytes
from hypothesis import given, settings, strategies as st

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers.cohere.adapter import ADAPTERS, CHAT, EMBED, CohereAdapter
from llm_obs_middleware.providers.cohere.observe import finish_reason
from llm_obs_middleware.providers.registry import adapter_for_kind, match_request
from llm_obs_middleware.records.schema import NormalizedRequest, NormalizedResponse

FIXTURE = "cohere_v2"
EXPECTED = load_expected(FIXTURE)
ADAPTER = CohereAdapter()

IGNORED_RESPONSE_KEYS = {
    "streamed": "an input here: it selects the stream or JSON observer",
    "note": "free text",
    "tool_plan": "not in the schema (never part of output_text; counted in output_chars)",
}
IGNORED_ERROR_KEYS = {
    "status": "an input here: passed to observer(status=...)",
    "error_code": "Cohere error bodies carry no code (asserted null)",
    "retry_after_seconds": "from the retry-after header, not the body the observer sees",
    "retryable": "a routing decision, not part of the normalized response",
}
IGNORED_REQUEST_KEYS = {
    "top_k": "not in the schema",
    "tool_result_messages": "not in the schema",
}
CASES = sorted(EXPECTED["cases"])
ERRORS = [name for name in CASES if "status" in EXPECTED["cases"][name]]
SUCCESS = [name for name in CASES if name not in ERRORS]
STREAMS = [name for name in SUCCESS if EXPECTED["cases"][name]["streamed"]]
JSON_BODIES = [name for name in SUCCESS if name not in STREAMS]


def new_exchange(*, capture: bool = True) -> Exchange:
    exchange = Exchange({})
    exchange.request = ADAPTER.decode_request(CHAT, read_bytes(FIXTURE, "request.json"), capture_content=capture)
    return exchange


def observe(name: str, chunks: list[bytes], exchange: Exchange | None = None) -> NormalizedResponse:
    exchange = exchange if exchange is not None else new_exchange()
    observer = ADAPTER.observer(CHAT, exchange, streamed=bool(EXPECTED["cases"][name]["streamed"]), status=200)
    for i, chunk in enumerate(chunks, start=1):
        observer.feed(chunk, i)
    return observer.finish()


def assert_matches(result: NormalizedResponse, expected: dict[str, Any]) -> None:
    usage = result.usage
    assert usage is not None and usage.input_tokens is not None
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
        "billed_input_tokens": usage.billed_input_tokens,
        "billed_output_tokens": usage.billed_output_tokens,
        "uncached_input_tokens": usage.input_tokens - (usage.cache_read_tokens or 0) - (usage.cache_write_tokens or 0),
        "finish_reason": result.finish_reason,
        "finish_reason_raw": result.finish_reasons,
        "tool_calls": len(result.tool_calls),
        "tool_call_names": [call.name for call in result.tool_calls],
        "tool_call_ids": [call.id for call in result.tool_calls],
        "tool_call_arguments": [json.loads(call.arguments) for call in result.tool_calls],
        "output_text": result.output_text,
        "events": result.events,
        "done_sentinel": None,  # filled in by the caller, from the bytes
    }
    unknown = set(expected) - set(actual) - set(IGNORED_RESPONSE_KEYS)
    assert not unknown, f"expected.json keys neither asserted nor in IGNORED_RESPONSE_KEYS: {sorted(unknown)}"
    wanted = {k: v for k, v in expected.items() if k not in IGNORED_RESPONSE_KEYS and k != "done_sentinel"}
    assert {key: actual[key] for key in wanted} == wanted
    assert result.error_type is None and result.error_message is None


def test_every_fixture_file_is_a_listed_case() -> None:
    directory = SHARED_FIXTURES / FIXTURE
    files = {str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()}
    assert files - {"request.json", "expected.json"} == set(CASES) == {"response.json", "stream.txt", "error_429.json"}
    assert EXPECTED["provider"] == ADAPTER.provider_name
    assert EXPECTED["operation"] == CHAT.operation


def test_match_registry_and_auth() -> None:
    assert ADAPTER.match("POST", "/v2/chat") is CHAT
    assert ADAPTER.match("POST", "/v2/embed") is EMBED
    for method, path in [("GET", "/v2/chat"), ("POST", "/v1/chat"), ("GET", "/v2/embed"), ("POST", "/chat")]:
        assert ADAPTER.match(method, path) is None, (method, path)
    assert isinstance(adapter_for_kind("cohere"), CohereAdapter)
    assert ADAPTERS == {"cohere": adapter_for_kind("cohere")}
    matched = match_request("POST", "/co/v2/chat", {"co": "cohere"})
    assert matched is not None and (matched.endpoint, matched.provider, matched.path) == (CHAT, "co", "/v2/chat")
    assert match_request("POST", "/co/v2/rerank", {"co": "cohere"}) is None  # proxied by the router
    assert ADAPTER.auth_headers("co-key") == [(b"authorization", b"Bearer co-key")]
    assert ADAPTER.upstream_path(CHAT, "/v2/chat", "x") == "/v2/chat" and ADAPTER.path_model(CHAT, "/v2/chat") is None
    assert ADAPTER.is_stream(b"text/event-stream") and not ADAPTER.is_stream(b"application/json")


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
        "seed": params.seed,
        "messages": request.message_count,
        "tool_definitions": params.tool_definitions,
        "tool_choice": params.tool_choice,
        "system": bool(messages) and messages[0].role == "system",
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
    assert (request.operation, request.include_usage) == ("chat", True)


def test_decode_request_without_capture_keeps_everything_else() -> None:
    captured, plain = new_exchange(capture=True).request, new_exchange(capture=False).request
    assert captured is not None and plain is not None and plain.messages is None
    assert msgspec.structs.replace(captured, messages=None) == plain


def test_decode_request_captures_messages() -> None:
    request = new_exchange().request
    assert request is not None and request.messages is not None
    messages = request.messages
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool", "assistant", "user"]
    [call] = messages[2].tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "get_weather_p3ks8x1v2m4a",
        "get_weather",
        {"city": "Toronto"},
    )
    assert messages[3].tool_call_id == "get_weather_p3ks8x1v2m4a"
    assert json.loads(messages[3].content or "") == {"data": {"temp_c": -3, "condition": "light snow"}}
    assert messages[4].content == "It's -3°C with light snow in Toronto."
    assert messages[5].content == "And Montreal, today and tomorrow?"


def test_decode_request_other_params() -> None:
    body = {
        "model": "command-r",
        "stream": True,
        "messages": [],
        "stop_sequences": ["END"],
        "tool_choice": "REQUIRED",
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "response_format": {"type": "json_object"},
    }
    request = ADAPTER.decode_request(CHAT, json.dumps(body).encode(), capture_content=True)
    params = request.params
    assert (request.stream, params.stop, params.tool_choice, params.response_format) == (
        True,
        ["END"],
        "required",
        "json_object",
    )
    assert (params.frequency_penalty, params.presence_penalty, request.messages) == (0.1, 0.2, [])


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b'{"model": 3}', b'{"messages": [{"role": 1}]}', b"\xff"])
def test_decode_request_rejects_malformed(body: bytes) -> None:
    with pytest.raises(SchemaError):
        ADAPTER.decode_request(CHAT, body, capture_content=True)


def test_prepare_body_keeps_the_bytes_unless_the_model_changes() -> None:
    body = read_bytes(FIXTURE, "request.json")
    request = ADAPTER.decode_request(CHAT, body, capture_content=False)
    assert ADAPTER.prepare_body(CHAT, request, body, EXPECTED["request"]["model"]) == (body, False)
    out, hide = ADAPTER.prepare_body(CHAT, request, body, "command-r-plus")
    assert hide is False
    top_level = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
    before, after = top_level(body), top_level(out)
    assert list(after) == list(before) and bytes(after["model"]) == b'"command-r-plus"'
    assert all(bytes(after[key]) == bytes(raw) for key, raw in before.items() if key != "model")


# --- responses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUCCESS)
def test_success_case_whole_body(name: str) -> None:
    body = read_bytes(FIXTURE, name)
    expected = EXPECTED["cases"][name]
    result = observe(name, [body])
    assert_matches(result, expected)
    if name in STREAMS:
        assert (b"data: [DONE]" in body) is expected["done_sentinel"]
    # The tool plan is generated output: it counts in output_chars (never in output_text).
    visible = sum(len(call.name) + len(call.arguments) for call in result.tool_calls)
    assert result.output_chars > visible


@pytest.mark.parametrize("name", SUCCESS)
def test_response_model_is_the_one_sent_upstream(name: str) -> None:
    """Cohere responses name no model: an aliased request reports the upstream model it was sent to."""
    exchange = new_exchange(capture=False)
    exchange.served_model = "command-a-upstream"
    result = observe(name, [read_bytes(FIXTURE, name)], exchange)
    assert result.model == "command-a-upstream"
    assert observe(name, [read_bytes(FIXTURE, name)], Exchange({})).model is None


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
    # Cohere names no error type (expected null): the record falls back to the status.
    assert expected["error_type"] is None
    body = json.dumps(envelope["body"]).encode()
    observer = ADAPTER.observer(CHAT, new_exchange(), streamed=streamed, status=expected["status"])
    observer.feed(body[:9], 1)
    observer.feed(body[9:], 2)
    result = observer.finish()
    assert result.error_type == f"http_{expected['status']}"
    assert result.error_message == envelope["body"]["message"]
    assert (result.completed, result.finish_reason, result.usage) == (False, "error", None)
    assert result.extra == {"cohere.request_id": expected["request_id"]}  # the body's id


@pytest.mark.parametrize("body", [b"<html>x</html>", b"", b"[1]"])
def test_error_observer_without_a_message(body: bytes) -> None:
    observer = ADAPTER.observer(CHAT, Exchange({}), streamed=False, status=503)
    observer.feed(body, 1)
    result = observer.finish()
    assert (result.error_type, result.error_message, result.completed) == ("http_503", None, False)


def test_truncated_json_body_is_noted() -> None:
    body = read_bytes(FIXTURE, "response.json")
    result = observe("response.json", [body[:-20]])
    assert (result.completed, result.error_type, result.usage) == (False, "invalid_response", None)
    assert result.error_message is not None and result.error_message.startswith("unparsable chat body")


def test_float_token_counts() -> None:
    body = b'{"id": "x", "finish_reason": "COMPLETE", "usage": {"tokens": {"input_tokens": 5.0, "output_tokens": 2}}}'
    result = observe("response.json", [body])
    assert result.usage is not None and (result.usage.input_tokens, result.usage.total_tokens) == (5, 7)
    assert isinstance(result.usage.input_tokens, int)
    assert (result.finish_reason, result.usage.cache_read_tokens) == ("stop", None)


# --- streams ---------------------------------------------------------------------------------------


def _events(body: bytes) -> list[bytes]:
    assert b"\r" not in body
    parts = body.split(b"\n\n")
    assert parts[-1] == b""
    return [part + b"\n\n" for part in parts[:-1]]


def test_stream_without_done_is_still_completed() -> None:
    events = _events(read_bytes(FIXTURE, "stream.txt"))
    assert events[-1] == b"data: [DONE]\n\n"
    assert_matches(observe("stream.txt", [b"".join(events[:-1])]), EXPECTED["cases"]["stream.txt"])


def test_stream_without_message_end_is_not_completed() -> None:
    events = _events(read_bytes(FIXTURE, "stream.txt"))
    result = observe("stream.txt", [b"".join(events[:-2])])
    assert (result.completed, result.usage, result.finish_reason, result.error_type) == (False, None, None, None)
    assert [call.name for call in result.tool_calls] == ["get_weather", "get_forecast"]


_TEXT_STREAM = (
    b'event: message-start\ndata: {"id":"m1","type":"message-start","delta":{"message":{"role":"assistant",'
    b'"content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}\n\n'
    b'event: content-start\ndata: {"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text",'
    b'"text":""}}}}\n\n'
    b'event: content-delta\ndata: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hel"}}}}\n\n'
    b'event: content-delta\ndata: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"lo"}}}}\n\n'
    b'event: content-end\ndata: {"type":"content-end","index":0}\n\n'
)


def _end(reason: str, error: str | None = None) -> bytes:
    delta: dict[str, Any] = {"finish_reason": reason, "usage": {"tokens": {"input_tokens": 9, "output_tokens": 2}}}
    if error is not None:
        delta["error"] = error
    return b"event: message-end\ndata: " + json.dumps({"type": "message-end", "delta": delta}).encode() + b"\n\n"


def test_text_stream_marks_tokens_and_captures_text() -> None:
    exchange = new_exchange()
    observer = ADAPTER.observer(CHAT, exchange, streamed=True, status=200)
    for i, event in enumerate(_events(_TEXT_STREAM + _end("COMPLETE") + b"data: [DONE]\n\n")):
        observer.feed(event, 10 * (i + 1))
    result = observer.finish()
    assert (exchange.first_token_ns, exchange.last_token_ns, exchange.token_gaps) == (30, 40, 1)
    assert (result.output_text, result.finish_reason, result.finish_reasons, result.completed) == (
        "Hello",
        "stop",
        ["COMPLETE"],
        True,
    )
    assert (result.id, result.events, result.output_chars) == ("m1", 6, 5)


@pytest.mark.parametrize(("reason", "error"), [("ERROR", "internal failure"), ("TIMEOUT", None), ("COMPLETE", "boom")])
def test_in_band_error_at_message_end(reason: str, error: str | None) -> None:
    result = observe("stream.txt", [_TEXT_STREAM + _end(reason, error)])
    assert (result.completed, result.finish_reason, result.error_type, result.error_message) == (
        False,
        "error",
        reason,
        error,
    )
    assert result.usage is not None and result.usage.input_tokens == 9


def test_unknown_and_unparsable_events_are_noted() -> None:
    unknown = b'event: brand-new\ndata: {"type":"brand-new"}\n\ndata: {"type":"other-new"}\n\n'
    noted = observe("stream.txt", [_TEXT_STREAM + unknown + _end("COMPLETE")])
    assert (noted.completed, noted.error_type, noted.output_text) == (True, None, "Hello")
    assert noted.error_message == "unknown stream events passed through: brand-new, other-new"
    broken = observe("stream.txt", [_TEXT_STREAM + _end("COMPLETE")[:-30] + b"\n\n"])
    assert (broken.completed, broken.error_type, broken.usage) == (False, "invalid_response", None)
    assert broken.error_message == "unparsable stream events: message-end"


@pytest.mark.parametrize(
    ("raw", "tools", "expected"),
    [
        ("COMPLETE", False, "stop"),
        ("COMPLETE", True, "tool_calls"),
        ("STOP_SEQUENCE", False, "stop"),
        ("MAX_TOKENS", False, "length"),
        ("TOOL_CALL", True, "tool_calls"),
        ("ERROR", False, "error"),
        ("TIMEOUT", False, "error"),
        ("ERROR_TOXIC", False, "content_filter"),
        ("SOMETHING_NEW", False, "other"),
        (None, False, None),
    ],
)
def test_finish_reasons(raw: str | None, tools: bool, expected: str | None) -> None:
    assert finish_reason(raw, tools) == expected


# stream.txt: events 1-4 are tool-plan deltas, 5 and 9 tool-call starts, 6-7 and 10-11 argument deltas.
TOKEN_EVENTS = {"stream.txt": (1, 11, 10)}


@pytest.mark.parametrize("name", list(TOKEN_EVENTS))
def test_ttft_marked_at_the_first_token_event(name: str) -> None:
    first, last, count = TOKEN_EVENTS[name]
    exchange = new_exchange()
    observer = ADAPTER.observer(CHAT, exchange, streamed=True, status=200)
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
    body = read_bytes(FIXTURE, name).replace(b"\n", b"\r\n")
    assert_matches(observe(name, [body[i : i + 1] for i in range(len(body))]), EXPECTED["cases"][name])
