"""Shared factories: configs, the fake provider, stacks and a scripted ASGI driver."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.testing import FakeProvider, FakeProviderConfig, create_fake_provider

from ._fixture_paths import PROVIDER_FIXTURES

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = PROVIDER_FIXTURES
UPSTREAM_KEY = "sk-upstream-secret-1234"


def config_dict(
    base_url: str = "http://fake.test/v1", tmp_path: Path | None = None, **overrides: Any
) -> dict[str, Any]:
    """The config most tests use: one OpenAI provider, two models, log store in ``tmp_path``."""
    data: dict[str, Any] = {
        "providers": {"openai": {"kind": "openai", "base_url": base_url, "api_keys": [UPSTREAM_KEY]}},
        "models": {"gpt-4o-mini": {"provider": "openai"}, "fast": {"provider": "openai", "model": "gpt-4o"}},
        "exporters": {
            "log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"} if tmp_path else {"enabled": False},
        },
    }
    data.update(overrides)
    return data


class GatewayKit:
    """A gateway wired to an in-process fake provider, with in-memory spans and a private registry."""

    def __init__(self, gateway: Gateway, fake: FakeProvider, spans: InMemorySpanExporter, registry: CollectorRegistry):
        self.gateway = gateway
        self.fake = fake
        self.spans = spans
        self.registry = registry

    def client(self, base_url: str = "http://gateway.test") -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.gateway), base_url=base_url)

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
async def make_kit(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[GatewayKit]]]:
    kits: list[GatewayKit] = []
    clients: list[httpx.AsyncClient] = []

    async def factory(fake_config: FakeProviderConfig | None = None, **overrides: Any) -> GatewayKit:
        fake = create_fake_provider(fake_config)
        upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake))
        clients.append(upstream)
        spans = InMemorySpanExporter()
        registry = CollectorRegistry()
        config = Config.from_dict(config_dict(tmp_path=tmp_path, **overrides))
        gateway = create_gateway(config, client=upstream, span_exporter=spans, registry=registry)
        await gateway.startup()
        kit = GatewayKit(gateway, fake, spans, registry)
        kits.append(kit)
        return kit

    yield factory
    for kit in kits:
        await kit.gateway.shutdown()
    for client in clients:
        await client.aclose()


class Recorded:
    """What a scripted ASGI call sent: the start message and each body message with its arrival time."""

    def __init__(self) -> None:
        self.start: dict[str, Any] | None = None
        self.bodies: list[tuple[float, bytes, bool]] = []

    @property
    def status(self) -> int:
        assert self.start is not None
        return int(self.start["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        assert self.start is not None
        return dict(self.start["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(chunk for _, chunk, _ in self.bodies)


async def drive(
    app: Any,
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
    disconnect: Callable[[Recorded], bool] | None = None,
    body_parts: int = 1,
) -> Recorded:
    """Call an ASGI app with a scripted ``receive`` and a recording ``send`` (no buffering anywhere).

    ``disconnect`` is polled each time the app waits on ``receive`` after the body: once it returns
    true the client is reported gone (``http.disconnect``).
    """
    import asyncio

    recorded = Recorded()
    size = max(1, len(body) // body_parts + 1)
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        # Polls a caller-supplied predicate over what was sent so far; an Event would need a hook in send.
        while not (disconnect and disconnect(recorded)) and not (recorded.bodies and not recorded.bodies[-1][2]):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            recorded.start = message
        elif message["type"] == "http.response.body":
            recorded.bodies.append((time.perf_counter(), message.get("body", b""), message.get("more_body", False)))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"gateway.test"), (b"content-type", b"application/json"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("gateway.test", 80),
    }
    await app(scope, receive, send)
    return recorded
