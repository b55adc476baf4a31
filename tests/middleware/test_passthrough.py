"""Provider endpoints we do not observe (issue 13, finding 14): forwarded only when the provider's
passthrough list allows them, and every call made with a configured key is recorded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.errors import ConfigurationError
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.routing.passthrough_rules import PassthroughRules
from llm_obs_middleware.testing import BackgroundServer, FakeProviderServer

from ..conftest import drive

KEY = "sk-upstream-passthrough-secret"
Handler = Callable[[httpx.Request], httpx.Response]


def config(tmp_path: Path, **openai_extra: Any) -> Config:
    provider = {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": [KEY], **openai_extra}
    return Config.from_dict(
        {"providers": {"openai": provider}, "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}}}
    )


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    made: list[Gateway] = []

    async def factory(handler: Handler, **openai_extra: Any) -> Gateway:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        gateway = create_gateway(config(tmp_path, **openai_extra), client=client)
        await gateway.startup()
        made.append(gateway)
        return gateway

    yield factory
    for gateway in made:
        await gateway.shutdown()


async def records(gateway: Gateway) -> list[dict[str, Any]]:
    await gateway.pipeline.flush()
    store = gateway.exporters.log_store
    assert store is not None
    return [json.loads(raw) for raw in store.query(limit=100)]


class Upstream:
    """A MockTransport handler that answers 200 and keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(200, json={"id": "file-abc", "object": "file", "deleted": True})


async def test_every_proxied_call_is_recorded(make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    upstream = Upstream()
    gateway = await make_gateway(upstream)
    for _ in range(5):
        result = await drive(gateway, "/openai/files/file-abc", method="DELETE")
        assert result.status == 200
    assert [r.url.path for r in upstream.sent] == ["/v1/files/file-abc"] * 5
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in upstream.sent)
    rows = await records(gateway)
    assert len(rows) == 5
    for row in rows:
        assert (row["operation"], row["method"], row["path"], row["status"], row["outcome"]) == (
            "http",
            "DELETE",
            "/openai/files/file-abc",
            200,
            "completed",
        )
        assert (row["provider"], row["route"], row["key_id"], row["usage"]) == ("openai", "openai", "openai#0", None)
        assert row["timing"]["duration_s"] >= row["attempts"][0]["latency_s"] >= 0
        assert KEY not in json.dumps(row)


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/openai/organization/costs", 404, None),
        ("POST", "/openai/v1/../../admin", 400, None),
        ("PUT", "/openai/files/file-abc", 405, b"DELETE, GET"),
        ("POST", "/openai/models", 405, b"GET"),
    ],
)
async def test_what_the_list_leaves_out_never_reaches_the_provider(
    make_gateway: Callable[..., Awaitable[Gateway]], method: str, path: str, status: int, allow: bytes | None
) -> None:
    upstream = Upstream()
    gateway = await make_gateway(upstream)
    result = await drive(gateway, path, method=method)
    assert (result.status, result.headers.get(b"allow"), upstream.sent) == (status, allow, [])
    assert "error" in json.loads(result.body)


async def test_the_list_is_configurable_per_provider(make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    upstream = Upstream()
    narrow = await make_gateway(upstream, passthrough_endpoints=["GET /models", "GET,POST /custom/**"])
    assert (await drive(narrow, "/openai/models", method="GET")).status == 200
    assert (await drive(narrow, "/openai/v1/custom/a/b", method="POST")).status == 200
    assert (await drive(narrow, "/openai/files/file-abc", method="DELETE")).status == 404
    assert [r.url.path for r in upstream.sent] == ["/v1/models", "/v1/custom/a/b"]
    nothing = await make_gateway(upstream, passthrough_endpoints=[])
    assert (await drive(nothing, "/openai/models", method="GET")).status == 404
    assert len(upstream.sent) == 2


@pytest.mark.parametrize(
    ("pattern", "path", "methods"),
    [
        ("GET /models", "/models", {"GET"}),
        ("GET /models", "/models/x", set()),
        ("GET,DELETE /files/*", "/files/file-1", {"GET", "DELETE"}),
        ("GET,DELETE /files/*", "/files/a/b", set()),
        ("GET,DELETE /files/*", "/files", set()),
        ("POST /v1*/models/*:countTokens", "/v1beta/models/gemini-2.5-flash:countTokens", {"POST"}),
        ("POST /v1*/models/*:countTokens", "/v1beta/models/x/y:countTokens", set()),
        ("GET,POST /batches/**", "/batches", {"GET", "POST"}),
        ("GET,POST /batches/**", "/batches/b1/cancel", {"GET", "POST"}),
        ("GET,POST /batches/**", "/batchesX", set()),
        ("POST /model/**/invoke", "/model/arn:aws:x/us.m/invoke", {"POST"}),
        ("GET /a.b", "/aXb", set()),  # literal characters are literal
    ],
)
def test_patterns(pattern: str, path: str, methods: set[str]) -> None:
    assert PassthroughRules([pattern], where="test").allowed_methods(path) == methods


@pytest.mark.parametrize("pattern", ["models", "get /models", "GET models", "GET,/models"])
def test_a_malformed_pattern_fails_at_start_up(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(ConfigurationError, match=r"providers\.openai\.passthrough_endpoints"):
        create_gateway(config(tmp_path, passthrough_endpoints=[pattern]))


async def test_an_unreachable_provider_is_recorded(make_gateway: Callable[..., Awaitable[Gateway]]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    gateway = await make_gateway(refuse)
    result = await drive(gateway, "/openai/models", method="GET")
    assert result.status == 502
    [row] = await records(gateway)
    assert (row["operation"], row["status"], row["outcome"], row["error_type"]) == (
        "http",
        502,
        "upstream_error",
        "upstream_unreachable",
    )
    assert row["attempts"][0]["error_type"] == "upstream_unreachable"


# --- the official openai SDK, over loopback --------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, FakeProviderServer]]:
    with FakeProviderServer() as fake:
        gateway = create_gateway(config(tmp_path, base_url=fake.url))
        with BackgroundServer(gateway) as server:
            yield server.url, fake


@pytest.mark.parametrize("prefix", ["/openai/v1", "/openai"])
def test_openai_sdk_lists_models_through_the_native_route(served: tuple[str, FakeProviderServer], prefix: str) -> None:
    url, fake = served
    with openai.OpenAI(base_url=url + prefix, api_key="client-key", max_retries=0) as client:
        listed = client.models.list()
        one = client.models.retrieve("gpt-4o")
    assert {model.id for model in listed.data} >= {"gpt-4o-mini", "gpt-4o"} and one.id == "gpt-4o"
    assert [r.path for r in fake.app.requests][-2:] == ["/v1/models", "/v1/models/gpt-4o"]  # /v1 once
    assert fake.app.requests[-1].headers["authorization"] == f"Bearer {KEY}"
