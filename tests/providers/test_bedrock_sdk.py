"""boto3's bedrock-runtime client through the gateway to the fake Bedrock over loopback.

The fake checks SigV4 signatures against its own test credentials, so a request only succeeds if
the gateway signed it again (the client signs with throwaway keys for the gateway's host). Each test
checks what the client got and what /logs, /metrics and the CLIENT span recorded.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3  # type: ignore[import-untyped]
import httpx
import pytest
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.exceptions import ClientError, EventStreamError  # type: ignore[import-untyped]
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.asgi.aliases import Message, Receive, Scope, Send
from llm_obs_middleware.config.settings import ProviderConfig
from llm_obs_middleware.errors import ConfigurationError, MissingDependencyError
from llm_obs_middleware.providers.bedrock.adapter import BedrockAdapter
from llm_obs_middleware.testing import BackgroundServer, FakeProviderConfig, FakeProviderServer
from llm_obs_middleware.testing._fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY
from llm_obs_middleware.testing._payloads import text_pieces

OUTPUT_TOKENS = 6
FAKE = FakeProviderConfig(
    prompt_tokens=40, cached_tokens=10, completion_tokens=OUTPUT_TOKENS, reasoning_tokens=2, chunks=3
)
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
TEXT = "".join(text_pieces(FAKE.chunks))
MESSAGES = [{"role": "user", "content": [{"text": "What's the weather in Seattle?"}]}]
TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
            }
        }
    ],
    "toolChoice": {"auto": {}},
}


class _TeeStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, sink: bytearray) -> None:
        self.inner = inner
        self.sink = sink

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.sink += chunk
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class Tee(httpx.AsyncBaseTransport):
    """The gateway's upstream transport, keeping a copy of every response body as it arrived."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.bodies: list[bytearray] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        sink = bytearray()
        self.bodies.append(sink)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        stream = _TeeStream(response.stream, sink)
        return httpx.Response(
            response.status_code, headers=response.headers, stream=stream, extensions=response.extensions
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _ClosingClient:
    """Closes the upstream client we gave the gateway (which it does not own) when it shuts down."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def closing_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.client.aclose()
            await send(message)

        await self.app(scope, receive, closing_send if scope["type"] == "lifespan" else send)


class Kit:
    """A gateway with one bedrock provider, served by uvicorn, with its sinks at hand."""

    def __init__(self, config: Config, fake: FakeProviderServer) -> None:
        self.fake = fake
        self.tee = Tee()
        self.spans = InMemorySpanExporter()
        self.registry = CollectorRegistry()
        client = httpx.AsyncClient(transport=self.tee)
        gateway = create_gateway(config, client=client, span_exporter=self.spans, registry=self.registry)
        self.server = BackgroundServer(_ClosingClient(gateway, client))
        self.clients: list[Any] = []

    @property
    def url(self) -> str:
        return self.server.url

    def boto(self, headers: dict[str, str] | None = None, url: str | None = None, **credentials: str) -> Any:
        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=url or f"{self.url}/bedrock",
            region_name="us-east-1",
            aws_access_key_id=credentials.get("key", "client"),
            aws_secret_access_key=credentials.get("secret", "client"),
            config=BotoConfig(
                retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=10, connect_timeout=5
            ),
        )
        self.clients.append(client)
        if headers:

            def add_headers(request: Any, **_: Any) -> None:
                for name, value in headers.items():
                    request.headers[name] = value

            client.meta.events.register("before-sign.bedrock-runtime.*", add_headers)
        return client

    def logs(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while True:
            data: list[dict[str, Any]] = httpx.get(f"{self.url}/logs").json()["data"]
            if len(data) >= count or time.monotonic() > deadline:
                assert len(data) == count, data
                return list(reversed(data))  # oldest first
            time.sleep(0.02)

    def client_spans(self, count: int) -> list[ReadableSpan]:
        deadline = time.monotonic() + 10
        while True:
            spans = [span for span in self.spans.get_finished_spans() if span.kind == SpanKind.CLIENT]
            if len(spans) >= count or time.monotonic() > deadline:
                assert len(spans) == count
                return spans
            time.sleep(0.02)

    def metric(self, name: str, expected: float, **labels: str) -> float:
        """The sum of the samples with these labels (others, e.g. ``estimated``, summed over), once
        it reaches ``expected`` or after a few seconds: each sink drains its own queue."""
        deadline = time.monotonic() + 5
        while True:
            value = sum(
                sample.value
                for family in self.registry.collect()
                for sample in family.samples
                if sample.name == name and labels.items() <= sample.labels.items()
            )
            if value == expected or time.monotonic() > deadline:
                return value
            time.sleep(0.02)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer(FAKE) as server:
        yield server


@pytest.fixture
def make_kit(fake: FakeProviderServer, tmp_path: Path) -> Iterator[Callable[..., Kit]]:
    kits: list[Kit] = []

    def factory(routing: dict[str, Any] | None = None, **provider: Any) -> Kit:
        settings = {
            "kind": "bedrock",
            "base_url": fake.base_url,
            "aws_access_key_id": TEST_ACCESS_KEY_ID,
            "aws_secret_access_key": TEST_SECRET_ACCESS_KEY,
            "aws_region": "us-east-1",
        }
        settings.update(provider)
        config = Config.from_dict(
            {
                "providers": {"bedrock": {k: v for k, v in settings.items() if v is not None}},
                "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / f'log{len(kits)}.db'}"}},
                "routing": routing or {},
            }
        )
        kit = Kit(config, fake)
        kit.server.start()
        kits.append(kit)
        return kit

    yield factory
    for kit in kits:
        for client in kit.clients:
            client.close()
        kit.server.stop()


def assert_signed_by_gateway(fake: FakeProviderServer, key: str = TEST_ACCESS_KEY_ID) -> dict[str, str]:
    headers = fake.app.requests[-1].headers
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={key}/")
    assert "/us-east-1/bedrock/aws4_request" in headers["authorization"]
    assert "Credential=client/" not in headers["authorization"]
    return headers


def test_converse_plain_agrees_across_logs_metrics_and_spans(make_kit: Callable[..., Kit]) -> None:
    kit = make_kit()
    response = kit.boto().converse(modelId=MODEL, messages=MESSAGES, inferenceConfig={"temperature": 0.2})
    content = response["output"]["message"]["content"]
    assert [block["text"] for block in content if "text" in block] == [TEXT]
    assert "reasoningContent" in content[0]
    assert response["usage"]["inputTokens"] == FAKE.prompt_tokens - FAKE.cached_tokens
    assert response["stopReason"] == "end_turn"
    sent = kit.fake.app.requests[-1]
    assert sent.path == f"/model/{MODEL}/converse"
    assert_signed_by_gateway(kit.fake)
    [record] = kit.logs(1)
    assert (record["provider"], record["route"], record["status"], record["outcome"]) == (
        "aws.bedrock",
        "bedrock",
        200,
        "completed",
    )
    assert (record["requested_model"], record["response_model"], record["streamed"]) == (MODEL, MODEL, False)
    assert record["api"] == "bedrock.converse"
    assert record["usage"]["input_tokens"] == FAKE.prompt_tokens  # inputTokens + cache reads
    assert record["usage"]["output_tokens"] == OUTPUT_TOKENS
    assert record["usage"]["cache_read_tokens"] == FAKE.cached_tokens
    assert record["usage"]["total_tokens"] == FAKE.prompt_tokens + OUTPUT_TOKENS
    assert (record["finish_reason"], record["finish_reasons"]) == ("stop", ["end_turn"])
    assert record["params"]["temperature"] == 0.2
    assert record["extra"] == {
        "bedrock.latency_ms": response["metrics"]["latencyMs"],
        "bedrock.request_id": response["ResponseMetadata"]["RequestId"],  # from x-amzn-requestid
    }
    labels = {"provider": "aws.bedrock", "model": MODEL, "operation": "chat"}
    assert kit.metric("llm_obs_tokens_total", FAKE.prompt_tokens, **labels, type="input") == FAKE.prompt_tokens
    assert kit.metric("llm_obs_tokens_total", OUTPUT_TOKENS, **labels, type="output") == OUTPUT_TOKENS
    assert kit.metric("llm_obs_tokens_total", FAKE.cached_tokens, **labels, type="cache_read") == FAKE.cached_tokens
    assert 'provider="aws.bedrock"' in httpx.get(f"{kit.url}/metrics").text
    [span] = kit.client_spans(1)
    assert span.name == f"chat {MODEL}"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert attributes["gen_ai.request.model"] == attributes["gen_ai.response.model"] == MODEL
    assert attributes["gen_ai.usage.input_tokens"] == FAKE.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == OUTPUT_TOKENS
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == FAKE.cached_tokens
    assert attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert format(span.context.trace_id, "032x") == record["trace_id"]


def test_converse_stream(make_kit: Callable[..., Kit]) -> None:
    kit = make_kit()
    response = kit.boto({"x-fake-ttft-ms": "40"}).converse_stream(modelId=MODEL, messages=MESSAGES)
    events = list(response["stream"])
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    assert text == TEXT
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    assert events[-1]["metadata"]["usage"]["outputTokens"] == OUTPUT_TOKENS
    assert kit.fake.app.requests[-1].path == f"/model/{MODEL}/converse-stream"
    assert_signed_by_gateway(kit.fake)
    [record] = kit.logs(1)
    assert (record["api"], record["streamed"], record["outcome"]) == ("bedrock.converse_stream", True, "completed")
    assert record["usage"]["input_tokens"] == FAKE.prompt_tokens
    assert record["usage"]["output_tokens"] == OUTPUT_TOKENS
    assert record["finish_reason"] == "stop"
    assert record["error_type"] is None
    assert record["timing"]["time_to_first_token_s"] >= 0.04
    assert record["timing"]["first_byte_s"] < record["timing"]["time_to_first_token_s"]
    labels = {"provider": "aws.bedrock", "model": MODEL, "operation": "chat"}
    assert kit.metric("llm_obs_tokens_total", OUTPUT_TOKENS, **labels, type="output") == OUTPUT_TOKENS
    assert kit.metric("llm_obs_streamed_requests_total", 1, **labels) == 1
    [span] = kit.client_spans(1)
    assert (span.attributes or {})["gen_ai.provider.name"] == "aws.bedrock"
    assert (span.attributes or {})["gen_ai.usage.output_tokens"] == OUTPUT_TOKENS


def test_tools_plain_and_streamed(make_kit: Callable[..., Kit]) -> None:
    kit = make_kit()
    client = kit.boto()
    plain = client.converse(modelId=MODEL, messages=MESSAGES, toolConfig=TOOLS)
    [call] = [block["toolUse"] for block in plain["output"]["message"]["content"] if "toolUse" in block]
    assert call["name"] == "get_weather" and set(call["input"]) == {"city"}
    assert plain["stopReason"] == "tool_use"
    events = list(client.converse_stream(modelId=MODEL, messages=MESSAGES, toolConfig=TOOLS)["stream"])
    [start] = [e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e]
    pieces = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "toolUse" in str(e.get("contentBlockDelta"))
    ]
    assert start["name"] == "get_weather"
    assert json.loads("".join(pieces)) == call["input"]
    records = kit.logs(2)
    assert [r["finish_reason"] for r in records] == ["tool_calls", "tool_calls"]
    assert [r["finish_reasons"] for r in records] == [["tool_use"], ["tool_use"]]
    assert [r["tool_calls"] for r in records] == [1, 1]
    assert [(r["params"]["tool_definitions"], r["params"]["tool_choice"]) for r in records] == [(1, "auto")] * 2
    assert [r["streamed"] for r in records] == [False, True]


def gateway_path(operation: str) -> str:
    return f"/bedrock/model/{quote(MODEL, safe='')}/{operation}"


@pytest.mark.parametrize("operation", ["converse", "converse-stream"])
def test_client_gets_the_upstream_bytes(make_kit: Callable[..., Kit], operation: str) -> None:
    kit = make_kit()
    body = {"messages": MESSAGES, "toolConfig": TOOLS}
    response = httpx.post(f"{kit.url}{gateway_path(operation)}", json=body, headers={"x-fake-chunks": "7"})
    assert response.status_code == 200
    assert response.content == bytes(kit.tee.bodies[-1])
    assert len(response.content) > 200
    expected = "application/vnd.amazon.eventstream" if operation == "converse-stream" else "application/json"
    assert response.headers["content-type"] == expected
    assert response.headers["x-amzn-requestid"]
    [record] = kit.logs(1)
    assert record["usage"]["output_tokens"] == OUTPUT_TOKENS
    assert record["finish_reason"] == "tool_calls"


def test_the_fake_verifies_signatures(make_kit: Callable[..., Kit]) -> None:
    """Direct calls prove the fake would refuse a forwarded client signature (and accept botocore's)."""
    kit = make_kit()
    url = kit.fake.base_url
    with pytest.raises(ClientError) as unknown_key:
        kit.boto(url=url).converse(modelId=MODEL, messages=MESSAGES)
    assert unknown_key.value.response["Error"]["Code"] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as wrong_secret:
        kit.boto(url=url, key=TEST_ACCESS_KEY_ID, secret="not-the-secret").converse(modelId=MODEL, messages=MESSAGES)
    assert wrong_secret.value.response["Error"]["Code"] == "InvalidSignatureException"
    direct = kit.boto(url=url, key=TEST_ACCESS_KEY_ID, secret=TEST_SECRET_ACCESS_KEY)
    assert direct.converse(modelId=MODEL, messages=MESSAGES)["stopReason"] == "end_turn"
    unsigned = httpx.post(f"{url}/model/m/converse", json={"messages": MESSAGES})
    assert (unsigned.status_code, unsigned.headers["x-amzn-errortype"].partition(":")[0]) == (
        403,
        "MissingAuthenticationTokenException",
    )


def test_gateway_with_the_wrong_secret_is_refused(make_kit: Callable[..., Kit]) -> None:
    kit = make_kit(aws_secret_access_key="wrong-secret")
    with pytest.raises(ClientError) as refused:
        kit.boto().converse(modelId=MODEL, messages=MESSAGES)
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    [record] = kit.logs(1)
    assert (record["status"], record["outcome"], record["finish_reason"]) == (403, "upstream_error", "error")
    assert record["error_message"] is None  # the provider's text is content: capture is off


def test_session_token_is_signed(make_kit: Callable[..., Kit]) -> None:
    kit = make_kit(aws_session_token="session-token-1")
    assert kit.boto().converse(modelId=MODEL, messages=MESSAGES)["stopReason"] == "end_turn"
    headers = assert_signed_by_gateway(kit.fake)
    assert headers["x-amz-security-token"] == "session-token-1"
    assert "x-amz-security-token" in headers["authorization"].partition("SignedHeaders=")[2].split(",")[0]


def test_environment_credentials(make_kit: Callable[..., Kit], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    kit = make_kit(aws_access_key_id=None, aws_secret_access_key=None, aws_region=None)
    events = list(kit.boto().converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    assert "metadata" in events[-1]
    assert_signed_by_gateway(kit.fake)


def test_api_key_goes_upstream_as_bearer(make_kit: Callable[..., Kit]) -> None:
    kit = make_kit(aws_access_key_id=None, aws_secret_access_key=None, api_keys=["bedrock-api-key-1"])
    assert kit.boto().converse(modelId=MODEL, messages=MESSAGES)["stopReason"] == "end_turn"
    headers = kit.fake.app.requests[-1].headers
    assert headers["authorization"] == "Bearer bedrock-api-key-1"
    assert "x-amz-date" not in headers  # the client's signing headers stay behind


def test_upstream_http_error(make_kit: Callable[..., Kit]) -> None:
    kit = make_kit(routing={"retries": 0})
    with pytest.raises(ClientError) as throttled:
        kit.boto({"x-fake-status": "429"}).converse_stream(modelId=MODEL, messages=MESSAGES)
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    [record] = kit.logs(1)
    assert (record["status"], record["outcome"], record["error_type"]) == (429, "upstream_error", "ThrottlingException")
    assert record["error_message"] is None  # the provider's text is content: capture is off
    labels = {"provider": "aws.bedrock", "model": MODEL, "operation": "chat"}
    assert kit.metric("llm_obs_errors_total", 1, **labels, error_type="ThrottlingException") == 1
    [span] = kit.client_spans(1)
    assert (span.attributes or {})["error.type"] == "ThrottlingException"


def test_in_band_exception_ends_the_stream(make_kit: Callable[..., Kit]) -> None:
    kit = make_kit()
    response = kit.boto({"x-fake-bedrock-fault": "exception"}).converse_stream(modelId=MODEL, messages=MESSAGES)
    with pytest.raises(EventStreamError) as ended:
        list(response["stream"])
    response["stream"].close()  # botocore leaves the connection checked out after an exception event
    assert ended.value.response["Error"]["Code"] == "throttlingException"
    [record] = kit.logs(1)
    assert (record["status"], record["finish_reason"], record["error_type"]) == (200, "error", "throttlingException")
    assert record["error_message"] is None  # the provider's text is content: capture is off
    assert record["finish_reasons"] == []


@pytest.mark.parametrize(
    ("fault", "operation", "error_type", "note"),
    [
        ("truncated-json", "converse", "invalid_response", "converse body:"),
        ("truncated-json", "converse-stream", "invalid_response", "undecodable contentBlockDelta event"),
        ("bad-crc", "converse-stream", "invalid_response", "event stream: message CRC mismatch at byte"),
        ("bad-prelude", "converse-stream", "invalid_response", "event stream: prelude CRC mismatch at byte"),
        ("unknown-event", "converse-stream", None, "unknown ConverseStream event 'fakeFutureEvent' ignored"),
    ],
)
def test_malformed_upstream_payloads_pass_through_and_are_noted(
    make_kit: Callable[..., Kit], fault: str, operation: str, error_type: str | None, note: str
) -> None:
    kit = make_kit()
    response = httpx.post(
        f"{kit.url}{gateway_path(operation)}", json={"messages": MESSAGES}, headers={"x-fake-bedrock-fault": fault}
    )
    assert response.status_code == 200
    assert response.content == bytes(kit.tee.bodies[-1])
    [record] = kit.logs(1)
    assert (record["status"], record["outcome"], record["error_type"]) == (200, "completed", error_type)
    assert note in record["error_message"]
    if error_type is None:  # an unknown event is only noted: everything else was read
        assert record["usage"]["output_tokens"] == OUTPUT_TOKENS
        assert record["finish_reason"] == "stop"


def test_unknown_event_does_not_bother_the_sdk(make_kit: Callable[..., Kit]) -> None:
    kit = make_kit()
    events = list(
        kit.boto({"x-fake-bedrock-fault": "unknown-event"}).converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]
    )
    assert events[-1]["metadata"]["usage"]["outputTokens"] == OUTPUT_TOKENS
    [record] = kit.logs(1)
    assert record["usage"]["input_tokens"] == FAKE.prompt_tokens


def test_upstream_drop_mid_stream_is_recorded(make_kit: Callable[..., Kit], caplog: pytest.LogCaptureFixture) -> None:
    kit = make_kit()
    caplog.set_level(logging.CRITICAL, logger="uvicorn.error")  # both servers log the aborted response
    response = kit.boto({"x-fake-drop-after": "3"}).converse_stream(modelId=MODEL, messages=MESSAGES)
    # The cut came after a whole message, so the router ends the stream with an exception message of
    # its own, as Bedrock reports a stream that failed: the SDK raises it after the events that arrived.
    received: list[str] = []
    with pytest.raises(EventStreamError) as raised:
        for event in response["stream"]:
            received.append(next(iter(event)))
    response["stream"].close()  # the SDK raised mid-iteration: release its connection now, not at GC
    assert received == ["messageStart", "contentBlockDelta", "contentBlockDelta"]
    assert raised.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert "closed the connection" in raised.value.response["Error"]["Message"]
    [record] = kit.logs(1)
    assert record["streamed"] is True
    assert (record["outcome"], record["error_type"]) == ("upstream_error", "upstream_disconnected")
    assert record["error_message"] == raised.value.response["Error"]["Message"]
    assert record["finish_reason"] == "error"
    assert record["timing"]["time_to_first_token_s"] is not None


# --- signing, unit level --------------------------------------------------------------------------


def verify(request: httpx.Request, access_key: str, secret: str, region: str, token: str | None = None) -> None:
    """Recompute the SigV4 signature of a signed httpx request with botocore and compare."""
    authorization = request.headers["authorization"]
    fields = dict(part.strip().split("=", 1) for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(","))
    assert fields["Credential"].split("/")[0] == access_key
    assert fields["Credential"].split("/")[2:] == [region, "bedrock", "aws4_request"]
    signed = fields["SignedHeaders"].split(";")
    aws = AWSRequest(
        method=request.method,
        url=str(request.url),
        headers={name: request.headers[name] for name in signed},
        data=request.content,
    )
    aws.context["timestamp"] = request.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(access_key, secret, token), "bedrock", region)
    assert signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws) == fields["Signature"]


def upstream_request(base_url: str = "http://upstream.test") -> httpx.Request:
    return httpx.Client().build_request(
        "POST",
        f"{base_url}/model/{quote(MODEL, safe='')}/converse",
        content=b'{"messages": []}',
        headers={
            "content-type": "application/json",
            "x-amz-date": "20200101T000000Z",  # the client's, signed for the gateway
            "x-amz-security-token": "client-token",
            "x-amz-content-sha256": "abc",
        },
    )


def provider(**fields: Any) -> ProviderConfig:
    config = Config.from_dict({"providers": {"b": {"kind": "bedrock", "base_url": "http://upstream.test", **fields}}})
    return config.providers["b"]


def test_sign_with_config_credentials_replaces_the_client_headers() -> None:
    request = upstream_request()
    config = provider(aws_access_key_id="AKID", aws_secret_access_key="s3cret", aws_region="eu-central-1")
    BedrockAdapter(environ={"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "x"}).sign(request, config)
    verify(request, "AKID", "s3cret", "eu-central-1")
    assert request.headers["x-amz-date"] != "20200101T000000Z"
    assert "x-amz-security-token" not in request.headers
    assert "x-amz-content-sha256" not in request.headers
    assert "%3A" in str(request.url)  # signed as sent: the model id stays encoded


def test_region_from_the_endpoint_host() -> None:
    request = upstream_request("https://bedrock-runtime.eu-west-3.amazonaws.com")
    environ = {"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_REGION": "us-west-2"}
    config = provider(base_url="https://bedrock-runtime.eu-west-3.amazonaws.com")
    BedrockAdapter(environ=environ).sign(request, config)
    verify(request, "ENVKEY", "envsecret", "eu-west-3")


def test_environment_session_token_and_region() -> None:
    request = upstream_request()
    environ = {
        "AWS_ACCESS_KEY_ID": "ENVKEY",
        "AWS_SECRET_ACCESS_KEY": "envsecret",
        "AWS_SESSION_TOKEN": "envtoken",
        "AWS_DEFAULT_REGION": "ap-south-1",
    }
    BedrockAdapter(environ=environ).sign(request, provider())
    assert request.headers["x-amz-security-token"] == "envtoken"
    verify(request, "ENVKEY", "envsecret", "ap-south-1", "envtoken")


def test_credentials_are_resolved_once_per_provider() -> None:
    environ = {"AWS_ACCESS_KEY_ID": "FIRST", "AWS_SECRET_ACCESS_KEY": "one", "AWS_REGION": "us-east-1"}
    adapter, config = BedrockAdapter(environ=environ), provider()
    adapter.sign(upstream_request(), config)
    environ.update(AWS_ACCESS_KEY_ID="SECOND", AWS_SECRET_ACCESS_KEY="two")
    request = upstream_request()
    adapter.sign(request, config)
    verify(request, "FIRST", "one", "us-east-1")
    other = upstream_request()
    adapter.sign(other, provider())  # another provider config: resolved afresh
    verify(other, "SECOND", "two", "us-east-1")


def test_bedrock_api_key_from_the_environment() -> None:
    request = upstream_request()
    BedrockAdapter(environ={"AWS_BEARER_TOKEN_BEDROCK": "abk-1"}).sign(request, provider())
    assert request.headers["authorization"] == "Bearer abk-1"
    assert "x-amz-date" not in request.headers


def test_config_api_key_is_left_to_the_router() -> None:
    request = upstream_request()
    request.headers["authorization"] = "Bearer configured-key"  # what auth_headers() put there
    BedrockAdapter(environ={"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "x"}).sign(
        request, provider(api_keys=["configured-key"])
    )
    assert request.headers["authorization"] == "Bearer configured-key"
    assert "x-amz-date" not in request.headers


def test_no_credentials_warns_and_forwards_unsigned(caplog: pytest.LogCaptureFixture) -> None:
    request = upstream_request()
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.providers.bedrock.adapter"):
        BedrockAdapter(environ={}).sign(request, provider())
    assert "has no credentials" in caplog.text
    assert "authorization" not in request.headers and "x-amz-date" not in request.headers


_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK")
_CHAIN_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def isolate_credential_chain(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """botocore's credential chain sees only files in ``folder`` and never the instance metadata endpoint."""
    for name in _CHAIN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "aws-config"))


def test_gateway_without_credentials_fails_at_start_naming_the_provider(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    isolate_credential_chain(monkeypatch, tmp_path)  # botocore's chain is asked too: let it find nothing
    config = Config.from_dict(
        {
            "providers": {
                "aws-east": {"kind": "bedrock", "base_url": "http://upstream.test", "aws_region": "us-east-1"}
            },
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    with pytest.raises(ConfigurationError, match=r"bedrock provider 'aws-east' has no credentials.*AWS_ACCESS_KEY_ID"):
        create_gateway(config)


def test_environment_credentials_are_read_at_start_up() -> None:
    """Credentials in force when the gateway starts sign every request; later changes do not leak in."""
    environ = {"AWS_ACCESS_KEY_ID": "AT-START", "AWS_SECRET_ACCESS_KEY": "one", "AWS_REGION": "us-east-1"}
    adapter, config = BedrockAdapter(environ=environ), provider()
    adapter.prepare("b", config)
    environ.clear()
    request = upstream_request()
    adapter.sign(request, config)
    verify(request, "AT-START", "one", "us-east-1")


def test_start_up_check_names_a_missing_region() -> None:
    adapter = BedrockAdapter(environ={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    with pytest.raises(ConfigurationError, match="aws_region"):
        adapter.prepare("b", provider())


def test_no_region_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="aws_region"):
        BedrockAdapter(environ={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}).sign(
            upstream_request(), provider()
        )


def test_half_configured_credentials_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="aws_secret_access_key"):
        Config.from_dict({"providers": {"b": {"kind": "bedrock", "base_url": "http://x", "aws_access_key_id": "k"}}})


def test_missing_botocore_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore.auth", None)
    environ = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}
    with pytest.raises(MissingDependencyError, match=r"llm-obs-middleware\[bedrock\]"):
        BedrockAdapter(environ=environ).sign(upstream_request(), provider())


# --- the fake's own checks ------------------------------------------------------------------------


def signed_headers(url: str, body: bytes, token: str | None = None, service: str = "bedrock") -> dict[str, str]:
    aws = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, token), service, "us-east-1").add_auth(aws)
    return {name.lower(): value.decode() if isinstance(value, bytes) else value for name, value in aws.headers.items()}


def tamper_date(headers: dict[str, str]) -> None:
    headers["x-amz-date"] = headers["x-amz-date"][:8] + "Tnope"


def unsign_host(headers: dict[str, str]) -> None:
    headers["authorization"] = headers["authorization"].replace(";host;", ";")


@pytest.mark.parametrize(
    ("change", "error_type", "message"),
    [
        (lambda h: h.update({"x-amz-security-token": "t"}), "InvalidSignatureException", "must be signed"),
        (unsign_host, "InvalidSignatureException", "Host, X-Amz-Date"),
        (tamper_date, "InvalidSignatureException", "Invalid X-Amz-Date"),
        (lambda h: h.update({"authorization": h["authorization"] + "0"}), "InvalidSignatureException", "calculated"),
        (lambda h: h.update({"authorization": "Basic abc"}), "MissingAuthenticationTokenException", "Missing"),
    ],
    ids=["unsigned-token", "unsigned-host", "bad-date", "bad-signature", "not-sigv4"],
)
def test_fake_refuses_what_aws_refuses(fake: FakeProviderServer, change: Any, error_type: str, message: str) -> None:
    url = f"{fake.base_url}/model/m/converse"
    body = json.dumps({"messages": MESSAGES}).encode()
    headers = signed_headers(url, body)
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    change(headers)
    refused = httpx.post(url, content=body, headers=headers)
    assert (refused.status_code, refused.headers["x-amzn-errortype"].partition(":")[0]) == (403, error_type)
    assert message in refused.json()["message"]


def test_fake_refuses_other_services_and_old_signatures(
    fake: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime

    import botocore.auth  # type: ignore[import-untyped]

    url = f"{fake.base_url}/model/m/converse"
    body = b'{"messages": []}'
    wrong_service = httpx.post(url, content=body, headers=signed_headers(url, body, service="s3"))
    assert (wrong_service.status_code, "scoped" in wrong_service.json()["message"]) == (403, True)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: datetime.datetime(2020, 1, 1))
    expired = httpx.post(url, content=body, headers=signed_headers(url, body))
    assert (expired.status_code, expired.json()["message"].startswith("Signature expired")) == (403, True)


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type"),
    [
        ("/model/fail-503-model/converse", b'{"messages": []}', 503, "ServiceUnavailableException"),
        ("/model/fail-418/converse-stream", b'{"messages": []}', 418, "ValidationException"),
        ("/model/m/converse", b"{not json", 400, "ValidationException"),
    ],
)
def test_fake_failures(fake: FakeProviderServer, path: str, body: bytes, status: int, error_type: str) -> None:
    url = f"{fake.base_url}{path}"
    response = httpx.post(url, content=body, headers=signed_headers(url, body))
    assert (response.status_code, response.headers["x-amzn-errortype"].partition(":")[0]) == (status, error_type)
    assert response.json()["message"]
    assert httpx.get(url).status_code == 405


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=ünïcode".encode(), b"application/json; x=\xfc"],
    ids=["utf-8", "not-utf-8"],
)
def test_header_bytes_go_upstream_as_signed_by_the_default_transport(
    fake: FakeProviderServer, tmp_path: Path, content_type: bytes
) -> None:
    """A non-ASCII client Content-Type once broke the signature (aiohttp re-encoded the header after
    signing): the provider answered 403 and the key was out for good. Now every client is served."""
    config = Config.from_dict(
        {
            "providers": {
                "bedrock": {
                    "kind": "bedrock",
                    "base_url": fake.base_url,
                    "aws_access_key_id": TEST_ACCESS_KEY_ID,
                    "aws_secret_access_key": TEST_SECRET_ACCESS_KEY,
                    "aws_region": "us-east-1",
                }
            },
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    body = json.dumps({"messages": MESSAGES}).encode()
    with BackgroundServer(create_gateway(config)) as server, httpx.Client(base_url=server.url) as client:
        odd = client.post(gateway_path("converse"), content=body, headers=[(b"content-type", content_type)])
        assert odd.status_code == 200, odd.text
        assert_signed_by_gateway(fake)
        assert client.post(gateway_path("converse"), json={"messages": MESSAGES}).status_code == 200
