"""One request must not take a key or a model away from every other client (issue 13, findings 2 and 3).

The gateway runs on loopback with its default transport, in front of the fake provider (whose
``x-fake-status`` header lets a client make the upstream fail) or a scripted upstream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
from llm_obs_middleware.testing import BackgroundServer, FakeProviderServer

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
OK_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


class Scripted:
    """An upstream that answers the first requests from ``answers`` (status, headers), then 200."""

    def __init__(self, answers: list[tuple[int, list[tuple[bytes, bytes]]]]) -> None:
        self.answers = answers
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.calls += 1
        status, headers = self.answers[self.calls - 1] if self.calls <= len(self.answers) else (200, [])
        body = json.dumps(OK_BODY if status == 200 else {"error": {"message": f"status {status}"}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., httpx.Client]]:
    """A gateway on loopback for one provider at ``base_url``: an httpx client on it."""
    servers: list[BackgroundServer] = []
    clients: list[httpx.Client] = []

    def factory(base_url: str, routing: dict[str, Any] | None = None, keys: int = 1) -> httpx.Client:
        config = Config.from_dict(
            {
                "providers": {
                    "openai": {
                        "kind": "openai",
                        "base_url": base_url,
                        "api_keys": [{"key": f"sk-{i}", "name": f"key{i}"} for i in range(keys)],
                    }
                },
                "models": {"gpt-4o": {"provider": "openai"}},
                "routing": {"backoff_base_s": 0.001, "backoff_cap_s": 0.002, **(routing or {})},
                "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / f'log{len(servers)}.db'}"}},
            }
        )
        server = BackgroundServer(create_gateway(config)).start()
        servers.append(server)
        client = httpx.Client(base_url=server.url, timeout=30)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def key_states(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/health/deployments")
    assert response.status_code == 200, response.text
    [deployment] = response.json()["deployments"]
    return {key["key"]: key for key in deployment["keys"]}


@pytest.mark.parametrize("status", [401, 403])
def test_a_key_refused_because_of_one_request_serves_the_next_clients(
    fake: FakeProviderServer, gateway: Callable[..., httpx.Client], status: int
) -> None:
    client = gateway(fake.base_url + "/v1", routing={"retries": 2})
    refused = client.post("/v1/chat/completions", json=CHAT, headers={"x-fake-status": str(status)})
    assert refused.status_code == status, "the client gets the provider's answer"
    assert key_states(client)["key0"]["state"] == "rejected"
    assert 290 < key_states(client)["key0"]["cooling_down_for_s"] <= 300, "routing.auth_cooldown_s"
    # The only key cools down, but nothing else can serve: the next clients still reach the provider.
    for _ in range(3):
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert key_states(client)["key0"]["state"] == "healthy", "a probe that worked ends the cooldown"


def test_identity_and_hop_by_hop_client_headers_do_not_reach_the_provider(
    fake: FakeProviderServer, gateway: Callable[..., httpx.Client]
) -> None:
    withheld = {
        "OpenAI-Organization": "org-bogus",
        "OpenAI-Project": "proj-bogus",
        "X-Forwarded-For": "10.0.0.1",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=10.0.0.1",
        "X-Real-IP": "10.0.0.1",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-Amz-Security-Token": "token",
        "Connection": "keep-alive, X-Private-Hop",
        "X-Private-Hop": "secret",
        "Keep-Alive": "timeout=5",
    }
    kept = {"OpenAI-Beta": "assistants=v2", "X-Stainless-Lang": "python"}
    client = gateway(fake.base_url + "/v1")
    assert client.post("/v1/chat/completions", json=CHAT, headers={**withheld, **kept}).status_code == 200
    arrived = fake.app.requests[-1].headers
    assert not {name.lower() for name in withheld} & set(arrived), arrived
    assert {name: arrived[name.lower()] for name in kept} == kept
    assert arrived["authorization"] == "Bearer sk-0"

    configured = gateway(fake.base_url + "/v1", routing={"forward_headers": ["OpenAI-Organization", "X-Forwarded-For"]})
    assert configured.post("/v1/chat/completions", json=CHAT, headers=withheld).status_code == 200
    arrived = fake.app.requests[-1].headers
    assert (arrived["openai-organization"], arrived["x-forwarded-for"]) == ("org-bogus", "10.0.0.1")
    assert "x-forwarded-host" not in arrived and "openai-project" not in arrived


def test_credentials_can_never_be_configured_to_pass(fake: FakeProviderServer, tmp_path: Path) -> None:
    from llm_obs_middleware.errors import ConfigurationError

    config = Config.from_dict(
        {
            "providers": {"openai": {"kind": "openai", "base_url": fake.base_url, "api_keys": ["sk"]}},
            "routing": {"forward_headers": ["Authorization"]},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    with pytest.raises(ConfigurationError, match="authorization is never forwarded"):
        create_gateway(config)


def test_one_failing_request_does_not_make_a_single_deployment_model_unavailable(
    fake: FakeProviderServer, gateway: Callable[..., httpx.Client]
) -> None:
    client = gateway(fake.base_url + "/v1", routing={"retries": 2})
    failed = client.post("/v1/chat/completions", json=CHAT, headers={"x-fake-status": "500"})
    assert failed.status_code == 500
    [deployment] = client.get("/health/deployments").json()["deployments"]
    assert deployment["healthy"] is False, "three failures in a row: the deployment cools down"
    served = client.post("/v1/chat/completions", json=CHAT)
    assert served.status_code == 200, served.text
    [deployment] = client.get("/health/deployments").json()["deployments"]
    assert deployment["healthy"] is True


@pytest.mark.parametrize("retry_after", [b"1e9", b"inf", b"Fri, 31 Dec 9999 23:59:59 GMT", b"nan"])
def test_a_huge_retry_after_is_clamped(gateway: Callable[..., httpx.Client], retry_after: bytes) -> None:
    upstream = Scripted([(429, [(b"retry-after", retry_after)])])
    with BackgroundServer(upstream) as server:
        client = gateway(server.url + "/v1", routing={"retries": 0, "max_retry_after_s": 20}, keys=2)
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 429
        states = key_states(client)
        cooling = [key for key in states.values() if key["state"] == "cooling_down"]
        assert len(cooling) == 1 and cooling[0]["cooling_down_for_s"] <= 30, states
        assert client.get("/metrics").status_code == 200
        for _ in range(4):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert client.get("/metrics").status_code == 200


def test_a_clamped_retry_after_still_serves_a_single_key_model(gateway: Callable[..., httpx.Client]) -> None:
    upstream = Scripted([(429, [(b"retry-after", b"1e9")])])
    with BackgroundServer(upstream) as server:
        client = gateway(server.url + "/v1", routing={"retries": 0})
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 429
        only = key_states(client)["key0"]
        assert only["state"] == "cooling_down" and 0 < only["cooling_down_for_s"] <= 30
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert upstream.calls == 2
