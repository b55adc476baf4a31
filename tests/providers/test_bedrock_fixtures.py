"""BedrockAdapter against the shared hand-written wire fixtures (../shared/fixtures/providers/bedrock_converse).

Every case of its expected.json is asserted field by field; a key the schema cannot hold is named,
with the reason, in an ignore list (an unknown key fails). Endpoints come from the fixture's URLs,
decoded as an ASGI server hands the path over. Expected values come from the fixtures, never the code.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from functools import cache
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
import pytest
from _openai_cases import has_images, header_extras
from hypothesis import given, settings, strategies as st

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.errors import SchemaError
from llm_obs_middleware.providers.base import Endpoint
from llm_obs_middleware.providers.bedrock.adapter import CONVERSE, CONVERSE_STREAM, BedrockAdapter
from llm_obs_middleware.providers.registry import adapter_for_kind, match_request
from llm_obs_middleware.records.schema import NormalizedResponse
from tests._fixture_paths import PROVIDER_FIXTURES

FIXTURE = PROVIDER_FIXTURES / "bedrock_converse"
ADAPTER = BedrockAdapter()

# expected.json keys our NormalizedResponse cannot represent, and why they are not asserted.
IGNORED_RESPONSE_KEYS: dict[str, str] = {
    "streamed": "an input here: it selects the stream or JSON observer",
    "frames_file": "the JSON description of the .bin; checked by test_frames_file_describes_the_bin",
    "note": "free text",
}
IGNORED_ERROR_KEYS: dict[str, str] = {
    "status": "an input here: passed to observer(status=...)",
    "retry_after_seconds": "from a retry-after header (Bedrock sends none); observers see only the body",
    "retryable": "a routing decision, not part of the normalized response",
    "note": "free text",
}
IGNORED_REQUEST_KEYS: dict[str, str] = {
    "model_source": "the model is read from the fixture's own URL path (see endpoint_for)",
    "cache_points": "cache markers are not in the schema",
}


@cache
def expected_json() -> dict[str, Any]:
    if not (FIXTURE / "expected.json").is_file():
        raise RuntimeError(f"shared provider fixtures not found at {FIXTURE}")
    return json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def reference_codec() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eventstream_codec", FIXTURE / "eventstream_codec.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def endpoint_for(streamed: bool) -> tuple[Endpoint, str]:
    """The fixture's (stream) URL path as an ASGI server passes it: percent-decoded."""
    url = expected_json()["endpoint"]["stream_url" if streamed else "url"]
    path = unquote(urlsplit(url).path)
    endpoint = ADAPTER.match("POST", path)
    assert endpoint is not None, path
    return endpoint, path


def request_body() -> bytes:
    return (FIXTURE / "request.json").read_bytes()


def new_exchange(streamed: bool, *, capture: bool = True) -> Exchange:
    """An exchange as AccountingMiddleware leaves it before the response starts."""
    endpoint, _ = endpoint_for(streamed)
    exchange = Exchange({})
    exchange.request = ADAPTER.decode_request(endpoint, request_body(), capture_content=capture)
    exchange.requested_model = exchange.request.model
    return exchange


CASES = list(expected_json()["cases"].items())
SUCCESS = [pytest.param(name, expected, id=name) for name, expected in CASES if "status" not in expected]
ERRORS = [pytest.param(name, expected, id=name) for name, expected in CASES if "status" in expected]
STREAMS = [pytest.param(name, expected, id=name) for name, expected in CASES if expected.get("streamed")]


def observe(name: str, chunks: list[bytes], exchange: Exchange | None = None) -> NormalizedResponse:
    """Feed ``chunks`` (now_ns = 1, 2, 3...) to a fresh observer of the case and finish it."""
    streamed = bool(expected_json()["cases"][name]["streamed"])
    exchange = exchange if exchange is not None else new_exchange(streamed)
    observer = ADAPTER.observer(endpoint_for(streamed)[0], exchange, streamed=streamed, status=200)
    for i, chunk in enumerate(chunks, start=1):
        observer.feed(chunk, i)
    return observer.finish()


def assert_matches_expected(result: NormalizedResponse, expected: dict[str, Any]) -> None:
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
        "error_type": result.error_type,
        "latency_ms": result.extra.get("bedrock.latency_ms"),
    }
    if usage is not None and usage.input_tokens is not None:
        uncached = usage.input_tokens - (usage.cache_read_tokens or 0) - (usage.cache_write_tokens or 0)
        actual["uncached_input_tokens"] = uncached
        actual["provider_input_tokens"] = uncached  # Bedrock's own inputTokens excludes the cache
    if usage is not None and usage.cache_write_1h_tokens is not None:
        actual["cache_write_5m_tokens"] = (usage.cache_write_tokens or 0) - usage.cache_write_1h_tokens
    unknown = set(expected) - set(actual) - set(IGNORED_RESPONSE_KEYS)
    assert not unknown, f"expected.json keys neither asserted nor in IGNORED_RESPONSE_KEYS: {sorted(unknown)}"
    wanted = {key: value for key, value in expected.items() if key not in IGNORED_RESPONSE_KEYS}
    assert {key: actual.get(key) for key in wanted} == wanted
    if "error_type" not in expected:
        assert result.error_type is None
        assert result.error_message is None


def test_every_listed_case_is_covered() -> None:
    assert {name for name, _ in CASES} == {
        "response.json",
        "stream.bin",
        "error_429.json",
        "variants/stream_exception.bin",
    }
    for name, _ in CASES:
        assert (FIXTURE / name).is_file(), name


# --- endpoints ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "api", "model"),
    [
        (
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/converse",
            CONVERSE,
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        ("/model/amazon.nova-lite-v1:0/converse-stream", CONVERSE_STREAM, "amazon.nova-lite-v1:0"),
        (
            "/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0/converse",
            CONVERSE,
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0",
        ),
    ],
)
def test_match_and_path_model(path: str, api: str, model: str) -> None:
    endpoint = ADAPTER.match("POST", path)
    assert endpoint is not None
    assert (endpoint.api, endpoint.operation) == (api, "chat")
    assert ADAPTER.path_model(endpoint, path) == model
    assert ADAPTER.decode_request(endpoint, b"{}", capture_content=False).model == model


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/model/m/converse"),
        ("POST", "/model/m/invoke"),
        ("POST", "/model/converse"),
        ("POST", "/model//converse"),
        ("POST", "/model/m/converse/x"),
        ("POST", "/v1/chat/completions"),
    ],
)
def test_match_rejects(method: str, path: str) -> None:
    assert ADAPTER.match(method, path) is None


def test_fixture_urls_are_recognised() -> None:
    plain, plain_path = endpoint_for(False)
    stream, stream_path = endpoint_for(True)
    assert (plain.api, stream.api) == (CONVERSE, CONVERSE_STREAM)
    assert expected_json()["operation"] == plain.operation == stream.operation
    model = expected_json()["request"]["model"]
    assert ADAPTER.path_model(plain, plain_path) == ADAPTER.path_model(stream, stream_path) == model


def test_upstream_path_encodes_the_model_as_botocore_does() -> None:
    endpoint, path = endpoint_for(False)
    # Unchanged model: the fixture's own (encoded) URL path again.
    assert (
        ADAPTER.upstream_path(endpoint, path, expected_json()["request"]["model"])
        == urlsplit(expected_json()["endpoint"]["url"]).path
    )
    assert (
        ADAPTER.upstream_path(endpoint, path, "arn:aws:bedrock:x/y z")
        == "/model/arn%3Aaws%3Abedrock%3Ax%2Fy%20z/converse"
    )
    stream, stream_path = endpoint_for(True)
    assert ADAPTER.upstream_path(stream, stream_path, "m.v1:0") == "/model/m.v1%3A0/converse-stream"


def test_registry_routes_the_bedrock_kind_here() -> None:
    assert isinstance(adapter_for_kind("bedrock"), BedrockAdapter)
    found = match_request("POST", "/aws/model/m.v1:0/converse-stream", {"aws": "bedrock"})
    assert found is not None
    assert (found.provider, found.path, found.endpoint.api) == ("aws", "/model/m.v1:0/converse-stream", CONVERSE_STREAM)
    assert found.adapter.provider_name == expected_json()["provider"] == "aws.bedrock"


def test_stream_content_type() -> None:
    assert ADAPTER.is_stream(expected_json()["endpoint"]["stream_content_type"].encode())
    assert not ADAPTER.is_stream(expected_json()["endpoint"]["response_content_type"].encode())
    assert not ADAPTER.is_stream(b"text/event-stream")


def test_body_and_auth() -> None:
    endpoint, _ = endpoint_for(False)
    request = ADAPTER.decode_request(endpoint, request_body(), capture_content=False)
    prepared = ADAPTER.prepare_body(endpoint, request, request_body(), "another-model")
    assert prepared == (request_body(), False)  # the model travels in the URL
    assert ADAPTER.auth_headers("key-1") == [(b"authorization", b"Bearer key-1")]


# --- requests -------------------------------------------------------------------------------------


def test_decode_request() -> None:
    expected = expected_json()["request"]
    endpoint, _ = endpoint_for(False)
    request = ADAPTER.decode_request(endpoint, request_body(), capture_content=True)
    params = request.params
    messages = request.messages or []
    view = {
        "model": request.model,
        "stream": request.stream,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stop_sequences": len(params.stop or ()),
        "system": bool(messages) and messages[0].role == "system",
        "messages": request.message_count,
        "tool_result_blocks": sum(1 for message in messages if message.role == "tool"),
        "tool_definitions": params.tool_definitions,
        "tool_choice": params.tool_choice,
        "has_images": has_images(request),
    }
    unknown = set(expected) - set(view) - set(IGNORED_REQUEST_KEYS)
    assert not unknown, f"request keys neither asserted nor in IGNORED_REQUEST_KEYS: {sorted(unknown)}"
    wanted = {key: value for key, value in expected.items() if key not in IGNORED_REQUEST_KEYS}
    assert {key: view[key] for key in wanted} == wanted
    assert request.operation == expected_json()["operation"]
    assert params.stop == json.loads(request_body())["inferenceConfig"]["stopSequences"]


def test_stream_request_differs_only_by_url() -> None:
    assert "converse-stream" in expected_json()["stream_request_overrides"]["url"]
    plain = ADAPTER.decode_request(endpoint_for(False)[0], request_body(), capture_content=True)
    streamed = ADAPTER.decode_request(endpoint_for(True)[0], request_body(), capture_content=True)
    assert streamed.stream is True
    assert msgspec.structs.replace(streamed, stream=False) == plain


def test_captured_messages() -> None:
    endpoint, _ = endpoint_for(False)
    request = ADAPTER.decode_request(endpoint, request_body(), capture_content=True)
    body = json.loads(request_body())
    assert request.messages is not None
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool", "assistant", "user"]
    system, _, call, result, _, last = request.messages
    assert system.content == body["system"][0]["text"]
    tool_use = body["messages"][1]["content"][0]["toolUse"]
    assert [(c.id, c.name, json.loads(c.arguments)) for c in call.tool_calls] == [
        (tool_use["toolUseId"], tool_use["name"], tool_use["input"])
    ]
    tool_result = body["messages"][2]["content"][0]["toolResult"]
    assert result.tool_call_id == tool_result["toolUseId"]
    assert json.loads(result.content or "") == tool_result["content"][0]["json"]
    assert last.content == body["messages"][4]["content"][1]["text"]  # the image block is left out


def test_decode_request_without_capture_keeps_params() -> None:
    endpoint, _ = endpoint_for(False)
    captured = ADAPTER.decode_request(endpoint, request_body(), capture_content=True)
    plain = ADAPTER.decode_request(endpoint, request_body(), capture_content=False)
    assert plain.messages is None
    assert msgspec.structs.replace(captured, messages=None) == plain


@pytest.mark.parametrize(
    ("choice", "expected"), [({"auto": {}}, "auto"), ({"any": {}}, "any"), ({"tool": {"name": "x"}}, "tool")]
)
def test_tool_choice_is_the_union_member(choice: dict[str, Any], expected: str) -> None:
    body = json.dumps(
        {"messages": [], "toolConfig": {"tools": [{"cachePoint": {"type": "default"}}], "toolChoice": choice}}
    )
    request = ADAPTER.decode_request(endpoint_for(False)[0], body.encode(), capture_content=False)
    assert (request.params.tool_choice, request.params.tool_definitions) == (expected, 0)


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[1, 2]", b'{"messages": 3}', b'{"inferenceConfig": {"maxTokens": "x"}}', b"\xff\xfe"]
)
@pytest.mark.parametrize("capture", [False, True])
def test_decode_request_rejects_malformed(body: bytes, capture: bool) -> None:
    with pytest.raises(SchemaError):
        ADAPTER.decode_request(endpoint_for(False)[0], body, capture_content=capture)


# --- responses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), SUCCESS)
def test_success_case_whole_body(name: str, expected: dict[str, Any]) -> None:
    result = observe(name, [(FIXTURE / name).read_bytes()])
    assert_matches_expected(result, expected)
    if not expected["streamed"]:
        assert result.events == 0


@pytest.mark.parametrize(("name", "expected"), SUCCESS)
def test_success_case_without_capture_has_no_text(name: str, expected: dict[str, Any]) -> None:
    exchange = new_exchange(bool(expected["streamed"]), capture=False)
    result = observe(name, [(FIXTURE / name).read_bytes()], exchange)
    assert result.output_text is None
    assert_matches_expected(result, dict(expected, output_text=None))
    assert result.output_chars >= len(expected["output_text"])  # still counted, for token estimation


def test_json_body_in_several_chunks() -> None:
    body = (FIXTURE / "response.json").read_bytes()
    third = len(body) // 3
    result = observe("response.json", [body[:third], body[third : 2 * third], b"", body[2 * third :]])
    assert_matches_expected(result, expected_json()["cases"]["response.json"])


def test_response_model_is_the_served_model() -> None:
    """Bedrock names no model in its answers: the record gets the one the request was sent to."""
    exchange = new_exchange(False)
    exchange.served_model = "upstream.model-v2:0"
    result = observe("response.json", [(FIXTURE / "response.json").read_bytes()], exchange)
    assert result.model == "upstream.model-v2:0"


def test_frames_file_describes_the_bin() -> None:
    codec = reference_codec()
    for name, expected in CASES:
        if "frames_file" not in expected:
            continue
        frames = json.loads((FIXTURE / expected["frames_file"]).read_text(encoding="utf-8"))["frames"]
        assert codec.encode_frames(frames) == (FIXTURE / name).read_bytes()
        assert len(frames) == expected["events"]


@pytest.mark.parametrize(("name", "expected"), ERRORS)
@pytest.mark.parametrize("streamed", [False, True])
def test_error_envelope(name: str, expected: dict[str, Any], streamed: bool) -> None:
    envelope = json.loads((FIXTURE / name).read_text(encoding="utf-8"))
    unknown = set(expected) - {"error_type", "error_code", "request_id"} - set(IGNORED_ERROR_KEYS)
    assert not unknown, f"error keys neither asserted nor in IGNORED_ERROR_KEYS: {sorted(unknown)}"
    assert envelope["status"] == expected["status"]
    assert expected["error_code"] is None
    body = json.dumps(envelope["body"]).encode()
    exchange = new_exchange(streamed)
    exchange.response_headers = [(name.encode(), value.encode()) for name, value in envelope["headers"].items()]
    observer = ADAPTER.observer(endpoint_for(streamed)[0], exchange, streamed=streamed, status=429)
    observer.feed(body[:10], 1)
    observer.feed(body[10:], 2)
    result = observer.finish()
    assert result.error_type == expected["error_type"]  # from x-amzn-errortype ("Type:namespace")
    assert result.error_message == envelope["body"]["message"]
    assert (result.completed, result.finish_reason, result.usage, result.tool_calls) == (False, "error", None, [])
    assert header_extras(ADAPTER, envelope["headers"]) == {"bedrock.request_id": expected["request_id"]}


def test_error_type_from_the_header_beats_the_status_guess() -> None:
    """A 400 is a ValidationException by default; x-amzn-errortype can say it is a quota error."""
    exchange = Exchange({})
    exchange.response_headers = [(b"X-Amzn-ErrorType", b"ServiceQuotaExceededException:http://internal.amazon.com/")]
    observer = ADAPTER.observer(endpoint_for(False)[0], exchange, streamed=False, status=400)
    observer.feed(b'{"message": "quota"}', 1)
    result = observer.finish()
    assert (result.error_type, result.error_message) == ("ServiceQuotaExceededException", "quota")


@pytest.mark.parametrize(
    ("status", "body", "error_type", "message"),
    [
        (
            400,
            b'{"__type": "com.amazon.coral.validate#ValidationException", "message": "bad"}',
            "ValidationException",
            "bad",
        ),
        (
            400,
            b'{"code": "ServiceQuotaExceededException", "Message": "quota"}',
            "ServiceQuotaExceededException",
            "quota",
        ),
        (424, b'{"message": "model failed"}', "ModelErrorException", "model failed"),
        (503, b"", "ServiceUnavailableException", None),
        (502, b"<html>Bad gateway</html>", "http_502", None),
    ],
)
def test_error_observer_fallbacks(status: int, body: bytes, error_type: str, message: str | None) -> None:
    observer = ADAPTER.observer(endpoint_for(False)[0], Exchange({}), streamed=False, status=status)
    observer.feed(body, 1)
    result = observer.finish()
    assert (result.error_type, result.error_message, result.completed) == (error_type, message, False)


# --- streams: any chunking ------------------------------------------------------------------------


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]
    assert b"".join(chunks) == data
    return chunks


@pytest.mark.parametrize(("name", "expected"), STREAMS)
@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=40))
def test_random_splits_match_whole_body(name: str, expected: dict[str, Any], cuts: list[int]) -> None:
    body = (FIXTURE / name).read_bytes()
    split_result = observe(name, split(body, cuts))
    assert split_result == observe(name, [body])
    assert_matches_expected(split_result, expected)


@pytest.mark.parametrize(("name", "expected"), STREAMS)
def test_byte_by_byte(name: str, expected: dict[str, Any]) -> None:
    body = (FIXTURE / name).read_bytes()
    assert_matches_expected(observe(name, [body[i : i + 1] for i in range(len(body))]), expected)


# (case) -> (first, last frame carrying output tokens, number of such frames), read off the frames
# files by hand: text deltas and the tool's contentBlockStart count; the empty `"input": ""` does not.
TOKEN_FRAMES = {"stream.bin": (1, 8, 6), "variants/stream_exception.bin": (1, 1, 1)}


@pytest.mark.parametrize(("name", "expected"), STREAMS)
def test_tokens_marked_per_frame(name: str, expected: dict[str, Any]) -> None:
    first, last, count = TOKEN_FRAMES[name]
    codec = reference_codec()
    frames = json.loads((FIXTURE / expected["frames_file"]).read_text(encoding="utf-8"))["frames"]
    exchange = new_exchange(True)
    observer = ADAPTER.observer(endpoint_for(True)[0], exchange, streamed=True, status=200)
    for i, frame in enumerate(frames):
        observer.feed(codec.encode_frame(frame["headers"], frame["payload"]), 1_000 * (i + 1))
        if i < first:
            assert exchange.first_token_ns == 0
    assert_matches_expected(observer.finish(), expected)
    assert (exchange.first_token_ns, exchange.last_token_ns) == (1_000 * (first + 1), 1_000 * (last + 1))
    assert exchange.token_gaps == count - 1


# --- stream edge cases ----------------------------------------------------------------------------


def frames_of(name: str) -> list[bytes]:
    codec = reference_codec()
    frames = json.loads((FIXTURE / name).read_text(encoding="utf-8"))["frames"]
    return [codec.encode_frame(frame["headers"], frame["payload"]) for frame in frames]


def event(event_type: str, payload: bytes, message_type: str = "event") -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": message_type}
    return reference_codec().encode_frame(headers, payload)  # type: ignore[no-any-return]


def test_unknown_event_type_is_noted_not_fatal() -> None:
    frames = frames_of("stream.json")
    extra = event("citationsSummary", b'{"contentBlockIndex": 0}')
    result = observe("stream.bin", [*frames[:3], extra, *frames[3:]])
    expected = expected_json()["cases"]["stream.bin"]
    assert result.completed is True
    assert result.error_type is None
    assert result.error_message == "unknown ConverseStream event 'citationsSummary' ignored"
    assert result.events == expected["events"] + 1
    assert result.usage == observe("stream.bin", frames).usage


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda f: [*f[:5], flip(f[5], -1), *f[6:]], "message CRC mismatch"),
        (lambda f: [*f[:5], flip(f[5], 9), *f[6:]], "prelude CRC mismatch"),
        (lambda f: [*f[:-1], f[-1][:-7]], "stream ended inside a message"),
    ],
    ids=["message-crc", "prelude-crc", "truncated"],
)
def test_framing_errors_end_parsing_and_are_noted(mutate: Any, problem: str) -> None:
    frames = frames_of("stream.json")
    result = observe("stream.bin", [b"".join(mutate(frames))])
    assert result.completed is False
    assert result.error_type == "invalid_response"
    assert result.error_message is not None and problem in result.error_message
    assert result.usage is None  # the metadata frame was never parsed
    assert result.events == (5 if "CRC" in problem else len(frames) - 1)


def test_undecodable_known_event_is_invalid() -> None:
    frames = frames_of("stream.json")
    broken = event("contentBlockDelta", b'{"contentBlockIndex": 0, "delta": {"text": "cut')
    result = observe("stream.bin", [frames[0], broken, *frames[1:]])
    assert (result.completed, result.error_type) == (False, "invalid_response")
    assert result.error_message is not None and "undecodable contentBlockDelta event" in result.error_message
    assert result.usage == observe("stream.bin", frames).usage  # later frames are still read


def test_error_message_type_and_unknown_message_type() -> None:
    frames = frames_of("stream.json")
    headers = {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}
    error = reference_codec().encode_frame(headers, b"")
    odd = reference_codec().encode_frame({":message-type": "surprise"}, b"{}")
    result = observe("stream.bin", [*frames[:2], odd, error])
    assert (result.completed, result.finish_reason, result.error_type) == (False, "error", "InternalFailure")
    assert result.error_message == "boom; unknown event-stream message type 'surprise'"


def test_truncated_json_body_is_noted() -> None:
    body = (FIXTURE / "response.json").read_bytes()
    result = observe("response.json", [body[: len(body) // 2]])
    assert (result.completed, result.error_type) == (False, "invalid_response")
    assert result.error_message is not None and result.error_message.startswith("converse body:")
    assert observe("response.json", [b""]).completed is False


STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "other",
    "malformed_tool_use": "other",
    "tool_use": "tool_calls",
}


@pytest.mark.parametrize(("raw", "normalized"), list(STOP_REASONS.items()))
def test_stop_reasons(raw: str, normalized: str) -> None:
    body = json.dumps({"output": {"message": {"role": "assistant", "content": []}}, "stopReason": raw})
    result = observe("response.json", [body.encode()])
    assert (result.finish_reasons, result.finish_reason) == ([raw], normalized)


def test_cache_ttls_reasoning_and_missing_total() -> None:
    body = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s"}}},
                    {"text": "Hi"},
                ],
            }
        },
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 10,
            "outputTokens": 4,
            "cacheWriteInputTokens": 120,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 100}, {"ttl": "5m", "inputTokens": 20}],
        },
    }
    result = observe("response.json", [json.dumps(body).encode()])
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.total_tokens) == (130, 134)
    assert (result.usage.cache_read_tokens, result.usage.cache_write_tokens, result.usage.cache_write_1h_tokens) == (
        None,
        120,
        100,
    )
    assert result.output_text == "Hi"  # reasoning is not visible output
    assert result.output_chars == len("hmm") + len("Hi")


def test_captured_roles_survive_non_text_content() -> None:
    """An image-only message keeps its place (content None); a tool-results-only one becomes "tool" messages."""
    body = {
        "messages": [
            {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "AAAA"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "ok"}]}}]},
        ]
    }
    request = ADAPTER.decode_request(endpoint_for(False)[0], json.dumps(body).encode(), capture_content=True)
    assert request.messages is not None
    assert [(m.role, m.content, m.tool_call_id) for m in request.messages] == [
        ("user", None, None),
        ("tool", "ok", "t1"),
    ]
