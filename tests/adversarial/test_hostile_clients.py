"""A hostile client against the real gateway on loopback: whatever the body, headers or path, the answer
is a clear JSON error or the upstream's own answer, never a 500 or a leaked key, and every LLM request
leaves exactly one record.

Hypothesis draws the inputs; the example counts keep the whole module within a few seconds of CI.
"""

from __future__ import annotations

import json
import posixpath
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer, FakeProviderServer

from ..conftest import UPSTREAM_KEY, config_dict

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON = st.recursive(
    JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
)
MODELS = st.sampled_from(["gpt-4o-mini", "fast"]) | st.text(max_size=300)


class Gateway:
    """The gateway under uvicorn on loopback in front of the fake provider, and a client for it."""

    def __init__(self, url: str, fake: FakeProviderServer) -> None:
        self.url = url
        self.fake = fake
        self.client = httpx.Client(base_url=url, timeout=30)
        self.llm_requests = 0

    def post(self, path: str, content: bytes, headers: dict[str, Any] | None = None) -> httpx.Response:
        response = self.client.post(path, content=content, headers=headers)
        self.check(response)
        return response

    def check(self, response: httpx.Response) -> None:
        assert response.status_code != 500, response.text[:500]
        assert UPSTREAM_KEY not in response.text
        assert all(UPSTREAM_KEY not in value for value in response.headers.values())
        if response.status_code >= 400:
            error = response.json()["error"]  # a JSON body naming the problem
            assert error["message"], error

    def recorded(self) -> int:
        return int(self.client.get("/logs/stats").json()["totals"]["requests"])

    def wait_recorded(self, count: int) -> int:
        deadline = time.monotonic() + 30
        while (seen := self.recorded()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("hostile")
    with FakeProviderServer() as fake:
        config = Config.from_dict(config_dict(base_url=fake.url, tmp_path=tmp, queue={"flush_interval_s": 0}))
        with BackgroundServer(create_gateway(config)) as server:
            gw = Gateway(server.url, fake)
            yield gw
            gw.client.close()


@SETTINGS
@given(body=JSON, model=MODELS, stream=st.booleans())
def test_any_json_body_gets_an_answer_or_a_clear_error(gateway: Gateway, body: Any, model: str, stream: bool) -> None:
    payload = {"model": model, "messages": body, "stream": stream} if stream else {"model": model, "messages": body}
    before = gateway.recorded()
    gateway.post("/v1/chat/completions", json.dumps(payload).encode())
    assert gateway.wait_recorded(before + 1) == before + 1


@SETTINGS
@given(raw=st.binary(max_size=2000))
def test_any_bytes_as_a_body_are_a_4xx(gateway: Gateway, raw: bytes) -> None:
    before = gateway.recorded()
    response = gateway.post("/v1/chat/completions", raw, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500 or response.status_code == 200
    assert gateway.wait_recorded(before + 1) == before + 1


@pytest.mark.parametrize("depth", [100, 1_000, 100_000])
def test_deeply_nested_json_is_a_4xx(gateway: Gateway, depth: int) -> None:
    nested = b'{"model":"gpt-4o-mini","messages":' + b"[" * depth + b"]" * depth + b"}"
    response = gateway.post("/v1/chat/completions", nested)
    assert response.status_code == 200 or 400 <= response.status_code < 500


HEADER_NAMES = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=40)
# What a client can put on the wire (HTTP trims the whitespace around a value).
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=2000).map(str.strip)


@SETTINGS
@given(headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=8))
def test_any_headers_leave_the_answer_whole(gateway: Gateway, headers: dict[str, str]) -> None:
    headers = {k: v for k, v in headers.items() if k.lower() not in {"content-length", "transfer-encoding", "host"}}
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
    response = gateway.post("/v1/chat/completions", body, headers={"content-type": "application/json", **headers})
    assert response.status_code < 500 or response.json()["error"]["type"] != "internal_error"


@pytest.mark.parametrize(
    "header",
    [
        ("traceparent", "00-" + "f" * 32 + "-" + "f" * 16 + "-01"),
        ("traceparent", "x" * 60_000),
        ("baggage", ",".join(f"k{n}=v{n}" for n in range(5_000))),
        ("x-request-id", "r" * 60_000),
        ("x-session-id", "s" * 60_000),
        ("content-type", "application/json; charset=\u00ff\u00fe"),
    ],
    ids=["all-f traceparent", "huge traceparent", "huge baggage", "huge request id", "huge session", "latin-1 type"],
)
def test_absurd_trace_and_id_headers_are_harmless(gateway: Gateway, header: tuple[str, str]) -> None:
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
    response = gateway.post("/v1/chat/completions", body, headers={header[0]: header[1].encode("latin-1")})
    assert response.status_code == 200
    assert len(response.headers.get("x-request-id", "")) <= 256


PATH_PIECES = ["..", "%2e%2e", ".%2e", "%2E.", "/", "%2f", "%2F", "%5c", "\\", ";", "%3F", "%23", "%252e%252e", "x"]
HOSTILE_PATHS = st.lists(st.sampled_from(PATH_PIECES), max_size=12).map("".join) | st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation, max_size=200
)


@SETTINGS
@example(path="..%2f..%2fx")
@example(path="%2e%2e/x")
@example(path="..%2F..%2Fmodels")
@given(path=HOSTILE_PATHS)
def test_any_native_path_is_refused_or_answered_cleanly(gateway: Gateway, path: str) -> None:
    # The raw request target, as a hostile client sends it (no client-side normalising of "..").
    target = b"/openai/" + path.encode()
    gateway.fake.app.requests.clear()
    response = gateway.client.get("/openai/", extensions={"target": target})
    gateway.check(response)
    for request in gateway.fake.app.requests:  # what reached the upstream, as a server would resolve it
        resolved = posixpath.normpath(unquote(request.path))
        assert resolved == "/v1" or resolved.startswith("/v1/"), (target, request.path)
