"""The record and the client agree, for every Bedrock ``stopReason`` and error kind.

The same upstream answer (the fake Bedrock, told what to answer by ``x-fake-bedrock-*`` headers) goes
through the native route (``/bedrock/model/{id}/converse[-stream]``: the client gets Bedrock's bytes)
and the translated route (``/v1/chat/completions``: the client gets OpenAI's shape), plain and
streamed. The record's ``finish_reason`` is the normalized one, the translated client's is
``openai_finish_reason(record)``; errors carry the same type in the record and in the client's error
``code``; a ``retry-after`` the gateway emits is delta-seconds.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import msgspec
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.codecs.eventstream import EventStreamDecoder
from llm_obs_middleware.providers.bedrock.wire import STOP_REASONS
from llm_obs_middleware.providers.translate_base import openai_finish_reason
from llm_obs_middleware.testing import BackgroundServer, FakeProviderServer
from llm_obs_middleware.testing._fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY
from tests.providers.test_bedrock_sdk import MODEL, fake
from tests.translation._golden import sse_events

__all__ = ["fake"]  # the fake Bedrock fixture, imported for pytest

NATIVE_BODY = msgspec.json.encode({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})


class Served(NamedTuple):
    url: str
    client: httpx.Client

    def native(self, stream: bool, headers: dict[str, str]) -> httpx.Response:
        operation = "converse-stream" if stream else "converse"
        path = f"/bedrock/model/{quote(MODEL, safe='')}/{operation}"
        return self.client.post(path, content=NATIVE_BODY, headers={"content-type": "application/json", **headers})

    def translated(self, stream: bool, headers: dict[str, str]) -> httpx.Response:
        body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        return self.client.post("/v1/chat/completions", json=body, headers=headers)

    def record(self) -> dict[str, Any]:
        """The one record of the one request this gateway served."""
        deadline = time.monotonic() + 10
        while True:
            data: list[dict[str, Any]] = self.client.get("/logs").json()["data"]
            if data or time.monotonic() > deadline:
                [record] = data
                return record
            time.sleep(0.02)


@pytest.fixture
def served(fake: FakeProviderServer, tmp_path: Path) -> Iterator[Any]:
    """A factory of fresh gateways: one request each (a 429 or 403 would cool the key for the next)."""
    servers: list[BackgroundServer] = []
    clients: list[httpx.Client] = []

    def start() -> Served:
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
                "models": {"claude": {"provider": "bedrock", "model": MODEL}},
                "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / f'log{len(servers)}.db'}"}},
                "routing": {"retries": 0},
            }
        )
        server = BackgroundServer(create_gateway(config))
        server.start()
        servers.append(server)
        client = httpx.Client(base_url=server.url, timeout=10)
        clients.append(client)
        return Served(server.url, client)

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def client_finish_reason(response: httpx.Response, stream: bool) -> str | None:
    if not stream:
        return str(response.json()["choices"][0]["finish_reason"])
    events, done = sse_events(response.content)
    assert done
    reasons = [choice["finish_reason"] for event in events for choice in event["choices"] if choice["finish_reason"]]
    assert len(reasons) == 1
    return str(reasons[0])


def native_stop_reason(response: httpx.Response, stream: bool) -> str:
    if not stream:
        return str(response.json()["stopReason"])
    decoder = EventStreamDecoder()
    messages = decoder.feed(response.content)
    decoder.close()
    [stop] = [m for m in messages if m.headers.get(":event-type") == "messageStop"]
    return str(msgspec.json.decode(stop.payload)["stopReason"])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("stop_reason", sorted(STOP_REASONS))
def test_stop_reason(served: Any, stop_reason: str, stream: bool) -> None:
    headers = {"x-fake-bedrock-stop-reason": stop_reason}
    expected = STOP_REASONS[stop_reason]  # the fake offers no tool unless asked: no tool calls here

    native = served()
    response = native.native(stream, headers)
    assert response.status_code == 200
    assert native_stop_reason(response, stream) == stop_reason  # the client gets Bedrock's own value
    record = native.record()
    assert (record["finish_reason"], record["finish_reasons"]) == (expected, [stop_reason])

    translated = served()
    response = translated.translated(stream, headers)
    assert response.status_code == 200
    record = translated.record()
    assert (record["finish_reason"], record["finish_reasons"]) == (expected, [stop_reason])
    assert client_finish_reason(response, stream) == openai_finish_reason(record["finish_reason"])


def test_end_turn_with_a_tool_call_is_tool_calls_for_both(served: Any) -> None:
    """A tool call the model made reads ``tool_calls`` in the record and for the client, whatever the stopReason."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    for stream in (False, True):
        gateway = served()
        body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}], "stream": stream, "tools": tools}
        response = gateway.client.post(
            "/v1/chat/completions", json=body, headers={"x-fake-bedrock-stop-reason": "end_turn"}
        )
        record = gateway.record()
        assert record["finish_reason"] == "tool_calls"
        assert client_finish_reason(response, stream) == "tool_calls"


HTTP_ERRORS = [
    (400, None, "ValidationException"),
    (403, None, "AccessDeniedException"),
    (404, None, "ResourceNotFoundException"),
    (408, None, "ModelTimeoutException"),
    (424, None, "ModelErrorException"),
    (429, None, "ThrottlingException"),
    (429, "ModelNotReadyException", "ModelNotReadyException"),
    (400, "ServiceQuotaExceededException", "ServiceQuotaExceededException"),
    (500, None, "InternalServerException"),
    (503, None, "ServiceUnavailableException"),
]
OPENAI_TYPES = {
    400: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    429: "rate_limit_error",
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(("status", "named", "error_type"), HTTP_ERRORS)
def test_http_error(served: Any, status: int, named: str | None, error_type: str, stream: bool) -> None:
    headers = {"x-fake-status": str(status), **({"x-fake-bedrock-error-type": named} if named else {})}

    native = served()
    response = native.native(stream, headers)
    assert response.status_code == status
    assert response.headers["x-amzn-errortype"].startswith(f"{error_type}:")  # Bedrock's answer, unchanged
    assert set(response.json()) == {"message"}
    record = native.record()
    assert (record["status"], record["finish_reason"], record["error_type"]) == (status, "error", error_type)

    translated = served()
    response = translated.translated(stream, headers)
    assert response.status_code == status
    error = response.json()["error"]
    record = translated.record()
    assert (record["status"], record["finish_reason"], record["error_type"]) == (status, "error", error_type)
    assert error["code"] == record["error_type"]
    assert error["type"] == OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    assert "retry-after" not in response.headers  # Bedrock sends none; the gateway invents none


@pytest.mark.parametrize(
    ("upstream", "low", "high"),
    [("7", 7, 7), ("2.5", 3, 3), ("in 30 s", 28, 31), ("soon", None, None), ("nan", None, None)],
    ids=["seconds", "fraction", "http-date", "garbage", "nan"],
)
def test_retry_after_the_gateway_emits_is_delta_seconds(
    served: Any, upstream: str, low: int | None, high: int | None
) -> None:
    if upstream == "in 30 s":  # an HTTP date, made now (not when the tests were collected)
        upstream = email.utils.formatdate(time.time() + 30, usegmt=True)
    headers = {"x-fake-status": "429", "x-fake-bedrock-retry-after": upstream}
    translated = served()
    response = translated.translated(False, headers)
    assert response.status_code == 429
    assert translated.record()["error_type"] == "ThrottlingException"
    value = response.headers.get("retry-after")
    if low is None:
        assert value is None
    else:
        assert value is not None and value.isdigit(), value
        assert low <= int(value) <= (high or low)


STREAM_EXCEPTIONS = [
    ("throttlingException", "rate_limit_error"),
    ("serviceUnavailableException", "server_error"),
    ("modelStreamErrorException", "server_error"),
    ("internalServerException", "server_error"),
    ("validationException", "invalid_request_error"),
    ("modelTimeoutException", "server_error"),
]


@pytest.mark.parametrize(("exception", "openai_type"), STREAM_EXCEPTIONS)
def test_in_stream_exception(served: Any, exception: str, openai_type: str) -> None:
    headers = {"x-fake-bedrock-fault": "exception", "x-fake-bedrock-error-type": exception}

    native = served()
    response = native.native(True, headers)
    assert response.status_code == 200
    decoder = EventStreamDecoder()
    last = decoder.feed(response.content)[-1]
    assert (last.headers[":message-type"], last.headers[":exception-type"]) == ("exception", exception)
    record = native.record()
    assert (record["finish_reason"], record["error_type"], record["finish_reasons"]) == ("error", exception, [])

    translated = served()
    response = translated.translated(True, headers)
    assert response.status_code == 200
    events, done = sse_events(response.content)
    assert not done  # no [DONE] after an error
    record = translated.record()
    assert (record["finish_reason"], record["error_type"]) == ("error", exception)
    assert events[-1]["error"]["code"] == record["error_type"]
    assert events[-1]["error"]["type"] == openai_type
    assert events[-1]["error"]["message"] == "Too many tokens, please wait before trying again."
    assert not [choice for event in events[:-1] for choice in event["choices"] if choice["finish_reason"]]
