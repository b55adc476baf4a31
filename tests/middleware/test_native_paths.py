"""A client's path never moves a proxied request outside its provider's base path (issue 13, finding 13).

Every provider kind gets a base URL with a path; hostile request targets go to the real gateway over
loopback (uvicorn decodes them as it does in production) and every request that reaches the upstream
(an ``httpx.MockTransport``, which sees the exact encoded path) must sit under that base path with no
query or fragment the client smuggled in, or the gateway must have refused it without calling upstream.
"""

from __future__ import annotations

import http.client
import json
import posixpath
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.testing import BackgroundServer

from ..conftest import drive

KEY = "sk-upstream-secret-path"
# (provider name = kind, base URL path); the host is {name}.test.
PROVIDERS = {
    "openai": "/openai-base/v1",
    "openai_compatible": "/compat-base/v1",
    "azure_openai": "/azure-base",
    "anthropic": "/anthropic-base",
    "gemini": "/gemini-base",
    "bedrock": "/bedrock-base",
    "cohere": "/cohere-base",
    "ollama": "/ollama-base",
}
# Request targets after /{provider}: dot segments however encoded, backslashes, path parameters, and an
# encoded "?" or "#" that must not become a query or a fragment upstream.
ATTACKS = [
    "/..%2f..%2f..%2fx",
    "/..%2F..%2F..%2Fx",
    "/%2e%2e/%2e%2e/%2e%2e/x",
    "/%2E%2E/%2E%2E/%2E%2E/x",
    "/.%2e/.%2e/.%2e/x",
    "/%2e./%2e./%2e./x",
    "/..%5c..%5c..%5cx",
    "/..\\..\\..\\x",
    "/%252e%252e/%252e%252e/%252e%252e/x",
    "/..%252f..%252f..%252fx",
    "/%25252e%25252e/x",
    "/..;/..;/..;/x",
    "/v1/..;a=b/..;/..;/..;/x",
    "/models/..%2f..%2f..%2f..%2fx",
    "/models/%2e",
    "/models%3Fkey=evil",
    "/models%23key=evil",
    "/models%253Fkey=evil",
    "/%2e%2e%3Fkey=evil",
    "/v1/models%3Fkey=evil",
]
# Model paths the native LLM routes match (or nearly): the model segment carries the traversal.
MODEL_ATTACKS = {
    "gemini": ["/v1beta/models/..%2f..%2f..%2fx:generateContent", "/v1beta/models/%2e%2e:generateContent"],
    "bedrock": ["/model/..%2f..%2f..%2fx/converse", "/model/%2e%2e/converse"],
    "azure_openai": ["/openai/deployments/%2e%2e/chat/completions", "/openai/deployments/..%2f..%2fx/embeddings"],
    "anthropic": ["/v1/messages/..%2f..%2f..%2fx", "/v1/messages%3Fkey=evil"],
}
CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "contents": []}'
CASES = [(name, "GET", target) for name in PROVIDERS for target in ATTACKS] + [
    (name, "POST", target) for name, targets in MODEL_ATTACKS.items() for target in targets
]


class Upstream(NamedTuple):
    host: str
    raw_path: bytes


class Served(NamedTuple):
    server: BackgroundServer
    seen: list[Upstream]
    lock: threading.Lock


def provider_config(name: str, base_path: str) -> dict[str, Any]:
    config: dict[str, Any] = {"kind": name, "base_url": f"http://{name}.test{base_path}", "api_keys": [KEY]}
    if name == "bedrock":  # SigV4 with static test credentials instead of a bearer key
        del config["api_keys"]
        config.update(aws_access_key_id="AKIDTEST", aws_secret_access_key="secret", aws_region="us-east-1")
    return config


def gateway_config(tmp_path: Path, **provider_extra: Any) -> Config:
    providers = {name: {**provider_config(name, base), **provider_extra} for name, base in PROVIDERS.items()}
    # Routed by model too: "gemini/<model>" and "bedrock/<model>" put the client's model in the path.
    return Config.from_dict(
        {"providers": providers, "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}}}
    )


# The default passthrough lists refuse most of these paths before containment matters; with every
# path allowed, containment alone keeps them under the base path.
@pytest.fixture(scope="module", params=["default_endpoints", "every_endpoint"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    seen: list[Upstream] = []
    lock = threading.Lock()

    def upstream(sent: httpx.Request) -> httpx.Response:
        with lock:
            seen.append(Upstream(sent.url.host, sent.url.raw_path))
        return httpx.Response(200, json={"ok": True})

    extra = {"passthrough_endpoints": ["GET,POST /**"]} if request.param == "every_endpoint" else {}
    config = gateway_config(tmp_path_factory.mktemp("paths"), **extra)
    app = create_gateway(config, client=httpx.AsyncClient(transport=httpx.MockTransport(upstream)))
    with BackgroundServer(app) as server:
        yield Served(server, seen, lock)


def send_raw(served: Served, method: str, target: str, body: bytes = b"") -> int:
    """One request with ``target`` sent byte for byte (no client-side normalisation)."""
    connection = http.client.HTTPConnection(served.server.host, served.server.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        connection.putheader("content-type", "application/json")
        connection.putheader("content-length", str(len(body)))
        connection.putheader("authorization", "Bearer client-key")
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def assert_under_base(upstream: Upstream) -> None:
    assert_path_under(upstream.raw_path, PROVIDERS[upstream.host.removesuffix(".test")])


def assert_path_under(raw_path: bytes, base: str) -> None:
    upstream = raw_path.decode("ascii")
    path, _, query = upstream.partition("?")
    assert "evil" not in query and "#" not in upstream, upstream
    # However often a server behind decodes it, with "\" taken as "/", the path stays under the base.
    decoded = path
    for _ in range(4):
        decoded = unquote(decoded)
    normalized = posixpath.normpath(decoded.replace("\\", "/").replace(";", "/;"))
    assert normalized == base or normalized.startswith(base + "/"), upstream


@pytest.mark.parametrize(("name", "method", "target"), CASES)
def test_hostile_paths_stay_under_the_base_path_or_are_refused(
    served: Served, name: str, method: str, target: str
) -> None:
    with served.lock:
        served.seen.clear()
    body = CHAT if method == "POST" else b""
    status = send_raw(served, method, f"/{name}{target}", body)
    with served.lock:
        seen = list(served.seen)
    check(status, seen)


def check(status: int, seen: list[Upstream]) -> None:
    if status in (400, 404, 405):
        assert seen == [], f"refused with {status} but still sent upstream: {seen}"
    for upstream in seen:
        assert_under_base(upstream)


@pytest.mark.parametrize("model", ["gemini/../../../x", "gemini/..%2f..%2fx", "gemini/x?key=evil#", "bedrock/../../x"])
def test_model_names_routed_by_model_stay_under_the_base_path(served: Served, model: str) -> None:
    with served.lock:
        served.seen.clear()
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    status = send_raw(served, "POST", "/v1/chat/completions", body)
    with served.lock:
        seen = list(served.seen)
    check(status, seen)


async def test_a_refused_path_is_a_400_json_error_and_recorded(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    gateway = create_gateway(gateway_config(tmp_path), client=client)
    await gateway.startup()
    try:
        result = await drive(gateway, "/openai/../../../x", method="GET")  # uvicorn's decoding of ..%2f..
        assert result.status == 400 and calls == []
        error = json.loads(result.body)["error"]
        assert error["code"] == "invalid_path" and KEY not in result.body.decode()
        await gateway.pipeline.flush()
        store = gateway.exporters.log_store
        assert store is not None
        [record] = [json.loads(raw) for raw in store.query(limit=10)]
        assert (record["status"], record["outcome"], record["error_type"], record["route"]) == (
            400,
            "rejected",
            "invalid_path",
            "openai",
        )
    finally:
        await gateway.shutdown()


_SEGMENT_PARTS = st.sampled_from(
    [".", "..", "%2e", "%2E", "%252e", "/", "%2f", "%2F", "%252f", "\\", "%5c", ";", "%3F", "%23", "%25", "x", "models"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_SEGMENT_PARTS, min_size=1, max_size=12), name=st.sampled_from(sorted(PROVIDERS)))
def test_any_mix_of_dots_separators_and_escapes_stays_under_the_base_path(
    served: Served, parts: list[str], name: str
) -> None:
    with served.lock:
        served.seen.clear()
    status = send_raw(served, "GET", f"/{name}/{''.join(parts)}")
    with served.lock:
        seen = list(served.seen)
    check(status, seen)


async def test_encoded_question_marks_and_hashes_stay_in_the_path(tmp_path: Path) -> None:
    paths: list[bytes] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(200, json={})

    client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    gateway = create_gateway(gateway_config(tmp_path), client=client)
    await gateway.startup()
    try:
        # uvicorn decodes /openai/files/file-1%3Fpurpose=x%23y%25 into this path
        result = await drive(gateway, "/openai/files/file-1?purpose=x#y%", method="GET")
        assert result.status == 200
        assert paths == [b"/openai-base/v1/files/file-1%3Fpurpose=x%23y%25"]
    finally:
        await gateway.shutdown()


class RawPathRecorder:
    """An upstream that keeps each request's path exactly as it came off the wire."""

    def __init__(self) -> None:
        self.raw_paths: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.raw_paths.append(scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b""))
        body = b'{"ok": true}'
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def test_the_default_transport_sends_the_contained_path_byte_for_byte(tmp_path: Path) -> None:
    recorder = RawPathRecorder()
    with BackgroundServer(recorder, lifespan="off") as upstream:
        providers = {
            "openai": {"kind": "openai", "base_url": f"{upstream.url}/openai-base/v1", "api_keys": [KEY]},
            "anthropic": {"kind": "anthropic", "base_url": f"{upstream.url}/anthropic-base", "api_keys": [KEY]},
        }
        everything = {"passthrough_endpoints": ["GET /**"]}
        config = Config.from_dict(
            {
                "providers": {name: {**provider, **everything} for name, provider in providers.items()},
                "exporters": {"log_store": {"enabled": False}},
            }
        )
        with BackgroundServer(create_gateway(config)) as gateway:
            served = Served(gateway, [], threading.Lock())
            statuses = [send_raw(served, "GET", f"/{name}{target}") for name in providers for target in ATTACKS]
            assert send_raw(served, "GET", "/openai/files/a%3Fb%23c%25d") == 200
    # Refused: every target with a dot segment (15 of 20); the others reach the upstream, contained.
    assert (statuses.count(400), statuses.count(200)) == (2 * 15, 2 * 5)
    assert len(recorder.raw_paths) == 2 * 5 + 1
    assert recorder.raw_paths[-1] == b"/openai-base/v1/files/a%3Fb%23c%25d"
    for raw in recorder.raw_paths:
        assert_path_under(raw, "/openai-base/v1" if raw.startswith(b"/openai-base/") else "/anthropic-base")
