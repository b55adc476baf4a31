"""Admin routes: the admin key (401 JSON), loopback-only without a key (403), and the start-up refusal."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, ConfigurationError, create_gateway
from llm_obs_middleware.gateway.admin import check_exposure, is_loopback
from llm_obs_middleware.gateway.cli import main
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.testing import BackgroundServer, create_fake_provider

from ..conftest import config_dict

ADMIN_KEY = "adm-7f3c9e1b-not-a-real-key"
ADMIN_ROUTES = ["/logs", "/logs/stats", "/logs/some-id", "/sessions/some-session"]
CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Gateway] = []
    upstreams: list[httpx.AsyncClient] = []

    async def make(**overrides: Any) -> Gateway:
        upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_fake_provider()))
        upstreams.append(upstream)
        config = Config.from_dict(config_dict(tmp_path=tmp_path, **overrides))
        gateway = create_gateway(config, client=upstream, registry=CollectorRegistry())
        await gateway.startup()
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        await gateway.shutdown()
    for upstream in upstreams:
        await upstream.aclose()


def client(gateway: Gateway, base_url: str = "http://gateway.test") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url=base_url)


async def test_admin_key_is_required_on_every_admin_route(gateways: Callable[..., Any]) -> None:
    gateway = await gateways(admin_key=ADMIN_KEY)
    async with client(gateway) as http:
        for path in ADMIN_ROUTES:
            for headers in (
                {},
                {"authorization": "Bearer wrong"},
                {"x-admin-key": ADMIN_KEY[:-1]},
                {"authorization": ADMIN_KEY},
            ):
                response = await http.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.json() == {
                    "error": {"message": "this route needs the admin key", "type": "authentication_error"}
                }
                assert response.headers["www-authenticate"].startswith("Bearer")
        for headers in ({"authorization": f"Bearer {ADMIN_KEY}"}, {"x-admin-key": ADMIN_KEY}):
            assert (await http.get("/logs", headers=headers)).status_code == 200
            assert (await http.get("/logs/stats", headers=headers)).status_code == 200
            assert (await http.get("/sessions/none", headers=headers)).status_code == 404  # past the guard
        # Health and metrics stay open by default; LLM traffic never needs the admin key.
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_protect_metrics_puts_health_and_metrics_behind_the_key(gateways: Callable[..., Any]) -> None:
    gateway = await gateways(admin_key=ADMIN_KEY, protect_metrics=True)
    async with client(gateway) as http:
        for path in ("/healthz", "/metrics"):
            assert (await http.get(path)).status_code == 401
            assert (await http.get(path, headers={"x-admin-key": ADMIN_KEY})).status_code == 200


async def test_the_key_never_shows_in_records_metrics_or_logs(
    gateways: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await gateways(admin_key=ADMIN_KEY, capture_content=True)
    headers = {"x-admin-key": ADMIN_KEY, "authorization": f"Bearer {ADMIN_KEY}"}
    with caplog.at_level(logging.DEBUG):
        async with client(gateway) as http:
            assert (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code == 200
            await gateway.pipeline.flush()
            logs = (await http.get("/logs", headers=headers)).text
            metrics = (await http.get("/metrics")).text
            health = (await http.get("/healthz")).text
    assert '"request_id"' in logs
    for text in (logs, metrics, health, caplog.text, repr(gateway.config)):
        assert ADMIN_KEY not in text


@pytest.mark.parametrize(
    ("base_url", "overrides", "status"),
    [
        ("http://10.20.30.40", {}, 403),  # reached on a non-loopback address without a key
        ("http://[2001:db8::1]", {}, 403),
        ("http://127.0.0.1", {}, 200),
        ("http://[::1]", {}, 200),
        ("http://10.20.30.40", {"allow_open_admin": True}, 200),
        ("http://10.20.30.40", {"admin_key": ADMIN_KEY}, 401),
    ],
)
async def test_without_a_key_admin_routes_answer_on_loopback_only(
    gateways: Callable[..., Any], base_url: str, overrides: dict[str, Any], status: int
) -> None:
    gateway = await gateways(**overrides)
    async with client(gateway, base_url) as http:
        response = await http.get("/logs")
        assert response.status_code == status
        if status == 403:
            assert response.json()["error"]["type"] == "permission_error"
        assert (await http.get("/healthz")).status_code == 200


def test_over_a_real_socket(tmp_path: Path) -> None:
    config = Config.from_dict(config_dict(tmp_path=tmp_path, admin_key=ADMIN_KEY))
    with BackgroundServer(create_gateway(config, registry=CollectorRegistry())) as server:
        assert httpx.get(server.url + "/logs").status_code == 401
        assert httpx.get(server.url + "/logs", headers={"authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200


def test_check_exposure() -> None:
    bare = Config.from_dict({})
    for host in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        check_exposure(bare, host)
    for host in ("0.0.0.0", "::", "10.0.0.5", "gateway.internal"):
        assert not is_loopback(host)
        with pytest.raises(ConfigurationError, match=rf"refusing to serve .* on {re.escape(host)} without admin_key"):
            check_exposure(bare, host)
    check_exposure(Config.from_dict({"admin_key": ADMIN_KEY}), "0.0.0.0")
    check_exposure(Config.from_dict({"allow_open_admin": True}), "0.0.0.0")


def test_serve_refuses_to_start_open_on_all_interfaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("exporters: {log_store: {enabled: false}}\n")
    assert main(["serve", "--config", str(config), "--host", "0.0.0.0", "--port", "1"]) == 2
    error = capsys.readouterr().err
    assert "refusing to serve" in error and "allow_open_admin" in error


def test_config_checks() -> None:
    with pytest.raises(ConfigurationError, match="admin_key: must not be empty"):
        Config.from_dict({"admin_key": "${KEY}"}, environ={"KEY": ""})
    with pytest.raises(ConfigurationError, match="protect_metrics: needs admin_key"):
        Config.from_dict({"protect_metrics": True})
    assert "adm-" not in repr(Config.from_dict({"admin_key": ADMIN_KEY}))
