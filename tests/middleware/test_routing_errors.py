"""Bad input and upstream failures: each gets a clear outcome and a record with the right status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.trace import SpanKind

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.testing import FakeProviderConfig, FakeProviderServer

from ..conftest import GatewayKit, config_dict, drive

MakeKit = Callable[..., Awaitable[GatewayKit]]
CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
STREAM = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'


async def records(gateway: Gateway) -> list[dict[str, Any]]:
    await gateway.pipeline.flush()
    store = gateway.exporters.log_store
    assert store is not None
    return [json.loads(raw) for raw in store.query(limit=100)]


async def test_malformed_json_is_a_400_naming_the_problem(make_kit: MakeKit) -> None:
    kit = await make_kit()
    result = await drive(kit.gateway, "/v1/chat/completions", b'{"model": "gpt-4o-mini", "messages": [')
    assert result.status == 400
    error = json.loads(result.body)["error"]
    assert "not a valid openai.chat_completions request" in error["message"]
    [record] = await records(kit.gateway)
    assert (record["status"], record["outcome"], record["error_type"]) == (400, "rejected", "invalid_request")
    assert kit.fake.requests == [] or len(kit.fake.requests) == 0


async def test_unknown_model_is_a_404_listing_configured_models(make_kit: MakeKit) -> None:
    kit = await make_kit()
    result = await drive(kit.gateway, "/v1/chat/completions", b'{"model":"gpt-9","messages":[]}')
    assert result.status == 404
    message = json.loads(result.body)["error"]["message"]
    assert "'gpt-9'" in message and "fast, gpt-4o-mini" in message
    [record] = await records(kit.gateway)
    assert (record["status"], record["error_type"], record["requested_model"]) == (404, "model_not_found", "gpt-9")


async def test_missing_model_is_a_400(make_kit: MakeKit) -> None:
    kit = await make_kit()
    result = await drive(kit.gateway, "/v1/chat/completions", b'{"messages":[]}')
    assert result.status == 400
    assert json.loads(result.body)["error"]["param"] == "model"


async def test_oversized_body_is_a_413(make_kit: MakeKit) -> None:
    kit = await make_kit(max_request_bytes=100)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 500}]}).encode()
    result = await drive(kit.gateway, "/v1/chat/completions", body, body_parts=4)
    assert result.status == 413
    assert "100 bytes" in json.loads(result.body)["error"]["message"]
    [record] = await records(kit.gateway)
    assert (record["status"], record["error_type"]) == (413, "request_too_large")


async def test_valid_traceparent_is_continued_and_propagated(make_kit: MakeKit) -> None:
    kit = await make_kit()
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    result = await drive(
        kit.gateway, "/v1/chat/completions", CHAT, headers=[(b"traceparent", f"00-{trace_id}-{parent}-01".encode())]
    )
    assert result.status == 200
    [record] = await records(kit.gateway)
    # The gateway's SERVER span continues the caller's trace; the LLM span is its child.
    [server] = [span for span in kit.spans.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert server.parent is not None and format(server.parent.span_id, "016x") == parent
    assert record["trace_id"] == trace_id and record["parent_span_id"] == parent
    assert record["server_span_id"] == format(server.context.span_id, "016x")
    upstream = kit.fake.requests[-1].headers["traceparent"]
    assert upstream == f"00-{trace_id}-{record['span_id']}-01"
    assert result.headers[b"traceparent"].decode() == upstream
    assert result.headers[b"x-request-id"].decode() == record["request_id"]
    [span] = [span for span in kit.spans.get_finished_spans() if span.kind == SpanKind.CLIENT]
    assert span.parent is not None and span.parent.span_id == server.context.span_id


@pytest.mark.parametrize(
    "header",
    [
        b"garbage",
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
        b"ff-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    ],
)
async def test_malformed_traceparent_is_ignored(make_kit: MakeKit, header: bytes) -> None:
    kit = await make_kit()
    result = await drive(kit.gateway, "/v1/chat/completions", CHAT, headers=[(b"traceparent", header)])
    assert result.status == 200
    [record] = await records(kit.gateway)
    [server] = [span for span in kit.spans.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert server.parent is None, "a malformed traceparent starts a new trace"
    assert record["parent_span_id"] is None
    assert record["server_span_id"] == format(server.context.span_id, "016x")
    assert record["trace_id"] not in header.decode()


async def test_session_user_and_metadata_headers_are_recorded(make_kit: MakeKit) -> None:
    kit = await make_kit(trace_context={"metadata_headers": ["x-tenant-id"]})
    headers = [(b"baggage", b"session.id=sess%2042,other=1"), (b"x-user-id", b"u-7"), (b"x-tenant-id", b"acme")]
    await drive(kit.gateway, "/v1/chat/completions", CHAT, headers=headers)
    [record] = await records(kit.gateway)
    assert (record["session_id"], record["user"], record["metadata"]) == ("sess 42", "u-7", {"x-tenant-id": "acme"})


@pytest.mark.parametrize("status", [500, 429, 503])
async def test_upstream_errors_are_passed_back_faithfully(make_kit: MakeKit, status: int) -> None:
    kit = await make_kit()
    result = await drive(kit.gateway, "/v1/chat/completions", CHAT, headers=[(b"x-fake-status", str(status).encode())])
    assert result.status == status
    assert "error" in json.loads(result.body)
    if status == 429:
        assert result.headers[b"retry-after"] == b"1"
    [record] = await records(kit.gateway)
    assert (record["status"], record["outcome"]) == (status, "upstream_error")
    assert record["error_type"]
    assert record["attempts"][0]["status"] == status


@pytest.fixture
def slow_fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FakeProviderConfig(chunks=5, chunk_interval_s=0.08)) as server:
        yield server


@pytest.fixture
async def loopback_gateway(tmp_path: Path, slow_fake: FakeProviderServer) -> AsyncIterator[Gateway]:
    provider = {"kind": "openai", "base_url": slow_fake.url, "api_keys": ["k"], "timeout": {"read": 0.3}}
    config = Config.from_dict(config_dict(tmp_path=tmp_path, providers={"openai": provider}))
    gateway = create_gateway(config)
    await gateway.startup()
    yield gateway
    await gateway.shutdown()


async def test_stream_reaches_the_client_before_the_upstream_finishes(loopback_gateway: Gateway) -> None:
    result = await drive(loopback_gateway, "/v1/chat/completions", STREAM)
    assert result.status == 200
    arrivals = [at for at, chunk, _ in result.bodies if chunk]
    # 5 chunks 80 ms apart: the first must have left long before the last was produced.
    assert len(arrivals) >= 4
    assert arrivals[-1] - arrivals[0] > 0.25
    [record] = await records(loopback_gateway)
    assert record["timing"]["chunks"] >= 4 and record["usage"]["output_tokens"] == 5


async def test_upstream_timeout_is_a_504(loopback_gateway: Gateway) -> None:
    result = await drive(loopback_gateway, "/v1/chat/completions", CHAT, headers=[(b"x-fake-latency-ms", b"1000")])
    assert result.status == 504
    assert json.loads(result.body)["error"]["type"] == "upstream_timeout"
    [record] = await records(loopback_gateway)
    assert (record["status"], record["outcome"], record["error_type"]) == (504, "upstream_error", "upstream_timeout")


async def test_stuck_stream_is_cut_with_an_in_band_error(loopback_gateway: Gateway) -> None:
    headers = [(b"x-fake-chunk-interval-ms", b"1000")]
    result = await drive(loopback_gateway, "/v1/chat/completions", STREAM, headers=headers)
    assert result.status == 200
    assert b'"upstream_timeout"' in result.bodies[-1][1]
    [record] = await records(loopback_gateway)
    assert (record["outcome"], record["error_type"]) == ("upstream_error", "upstream_timeout")


async def test_upstream_dropping_mid_stream_is_recorded(loopback_gateway: Gateway) -> None:
    result = await drive(loopback_gateway, "/v1/chat/completions", STREAM, headers=[(b"x-fake-drop-after", b"2")])
    assert b'"upstream_disconnected"' in result.body
    assert b"[DONE]" not in result.body
    [record] = await records(loopback_gateway)
    assert (record["outcome"], record["error_type"]) == ("upstream_error", "upstream_disconnected")


async def test_client_disconnect_mid_stream_stops_the_relay_and_is_recorded(loopback_gateway: Gateway) -> None:
    result = await drive(
        loopback_gateway,
        "/v1/chat/completions",
        STREAM,
        disconnect=lambda recorded: len([b for b in recorded.bodies if b[1]]) >= 2,
    )
    # Every send is recorded: a relay that kept reading would have passed the rest on, [DONE] included.
    assert b"[DONE]" not in result.body
    [record] = await records(loopback_gateway)
    assert (record["outcome"], record["error_type"]) == ("client_disconnected", "client_disconnected")
    assert record["status"] == 200


async def test_unreachable_upstream_is_a_502(tmp_path: Path) -> None:
    provider = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_keys": ["k"]}
    config = Config.from_dict(config_dict(tmp_path=tmp_path, providers={"openai": provider}))
    gateway = create_gateway(config)
    await gateway.startup()
    try:
        result = await drive(gateway, "/v1/chat/completions", CHAT)
        assert result.status == 502
        assert "could not be reached" in json.loads(result.body)["error"]["message"]
        [record] = await records(gateway)
        assert (record["status"], record["error_type"]) == (502, "upstream_unreachable")
    finally:
        await gateway.shutdown()


async def test_client_credentials_never_reach_the_upstream(make_kit: MakeKit) -> None:
    kit = await make_kit()
    headers = [(b"authorization", b"Bearer client-secret"), (b"x-api-key", b"other-secret"), (b"cookie", b"a=b")]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kit.gateway), base_url="http://g") as client:
        response = await client.post("/v1/chat/completions", content=CHAT, headers=dict(headers))
    assert response.status_code == 200
    sent = kit.fake.requests[-1].headers
    assert "client-secret" not in json.dumps(sent) and "other-secret" not in json.dumps(sent)
    assert "cookie" not in sent


async def test_server_spans_can_be_turned_off(make_kit: MakeKit) -> None:
    kit = await make_kit(exporters={"otlp": {"endpoint": "http://127.0.0.1:9", "server_spans": False}})
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    headers = [(b"traceparent", f"00-{trace_id}-{parent}-01".encode())]
    assert (await drive(kit.gateway, "/v1/chat/completions", CHAT, headers=headers)).status == 200
    await kit.gateway.pipeline.flush()
    spans = kit.spans.get_finished_spans()
    assert {s.kind for s in spans} == {SpanKind.CLIENT, SpanKind.INTERNAL}, "no SERVER span"
    [span] = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent


async def test_the_upstream_request_id_moves_aside_for_ours(make_kit: MakeKit) -> None:
    kit = await make_kit()
    result = await drive(kit.gateway, "/v1/chat/completions", CHAT)
    [record] = await records(kit.gateway)
    ids = [value for name, value in result.start["headers"] if name == b"x-request-id"] if result.start else []
    assert ids == [record["request_id"].encode()]
    assert b"x-upstream-request-id" in result.headers


async def test_upstream_cookies_are_never_kept_or_replayed() -> None:
    import httpx as _httpx

    from llm_obs_middleware import Config, create_gateway

    seen: list[str | None] = []

    def upstream(request: _httpx.Request) -> _httpx.Response:
        seen.append(request.headers.get("cookie"))
        return _httpx.Response(200, json={"choices": []}, headers={"set-cookie": "session=user-a"})

    client = _httpx.AsyncClient(transport=_httpx.MockTransport(upstream))  # a client of the caller's own
    gateway = create_gateway(Config.from_dict(config_dict()), client=client)
    await gateway.startup()
    for _ in range(2):
        await drive(gateway, "/v1/chat/completions", CHAT)
    await gateway.shutdown()
    await client.aclose()
    assert seen == [None, None], "a cookie set for one client must not reach the upstream for the next"
