"""Native routes: `/{provider}/<the provider's own path>` forwarded to that provider, observed in its format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.testing import FakeProvider, FakeProviderConfig, create_fake_provider

FAKE = FakeProviderConfig(prompt_tokens=17, completion_tokens=3, chunks=3)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Gateway, FakeProvider]]:
    fake = create_fake_provider(FAKE)
    config = Config.from_dict(
        {
            "providers": {
                "azure": {"kind": "azure_openai", "base_url": "http://azure.test", "api_keys": ["azure-key"]},
                "groq": {"kind": "groq", "base_url": "http://groq.test/openai/v1", "api_keys": ["groq-key"]},
                "openai": {"kind": "openai", "base_url": "http://openai.test/v1", "api_keys": ["openai-key"]},
            },
            "models": {"prod": {"provider": "azure", "model": "gpt-4o-deployment"}},
            "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
        }
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake)) as upstream:
        gateway = create_gateway(config, client=upstream)
        await gateway.startup()
        yield gateway, fake
        await gateway.shutdown()


async def records(gateway: Gateway) -> list[dict[str, Any]]:
    await gateway.pipeline.flush()
    store = gateway.exporters.log_store
    assert store is not None
    return [json.loads(raw) for raw in store.query(limit=100)]


def http(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway))


async def test_azure_sdk_on_a_deployment_url(setup: tuple[Gateway, FakeProvider]) -> None:
    gateway, fake = setup
    client = openai.AsyncAzureOpenAI(
        azure_endpoint="http://gateway.test/azure",
        api_version="2024-10-21",
        api_key="client-key",
        http_client=http(gateway),
        max_retries=0,
    )
    plain = await client.chat.completions.create(model="my-deployment", messages=[{"role": "user", "content": "hi"}])
    stream = await client.chat.completions.create(
        model="my-deployment", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert (
        "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        == plain.choices[0].message.content
    )
    await client.close()
    sent = fake.requests[-1]
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.headers["api-key"] == "azure-key" and "authorization" not in sent.headers
    rows = await records(gateway)
    assert {(r["provider"], r["route"], r["rule"], r["requested_model"]) for r in rows} == {
        ("azure.ai.openai", "azure", "native", "my-deployment")
    }
    assert sorted(r["streamed"] for r in rows) == [False, True]
    assert all(r["usage"]["input_tokens"] == 17 for r in rows)


async def test_alias_of_the_native_provider_rewrites_the_deployment(setup: tuple[Gateway, FakeProvider]) -> None:
    gateway, fake = setup
    async with http(gateway) as client:
        response = await client.post(
            "http://gateway.test/azure/openai/deployments/prod/chat/completions?api-version=2024-10-21",
            json={"messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 200
    assert fake.requests[-1].path == "/openai/deployments/gpt-4o-deployment/chat/completions"
    [row] = await records(gateway)
    assert (row["requested_model"], row["rule"], row["response_model"]) == ("prod", "prod", "gpt-4o-deployment")


async def test_openai_compatible_provider_under_its_own_prefix(setup: tuple[Gateway, FakeProvider]) -> None:
    gateway, fake = setup
    client = openai.AsyncOpenAI(base_url="http://gateway.test/groq/v1", api_key="k", http_client=http(gateway))
    await client.chat.completions.create(model="llama-3.3-70b", messages=[{"role": "user", "content": "hi"}])
    await client.close()
    assert fake.requests[-1].path == "/openai/v1/chat/completions"
    assert fake.requests[-1].headers["authorization"] == "Bearer groq-key"
    [row] = await records(gateway)
    assert (row["provider"], row["route"], row["response_model"]) == ("groq", "groq", "llama-3.3-70b")


async def test_other_provider_endpoints_are_proxied_and_recorded(setup: tuple[Gateway, FakeProvider]) -> None:
    gateway, fake = setup
    async with http(gateway) as client:
        response = await client.get("http://gateway.test/openai/models", headers={"authorization": "Bearer client"})
    assert response.status_code == 200
    assert {m["id"] for m in response.json()["data"]} >= {"gpt-4o-mini"}
    assert fake.requests[-1].headers["authorization"] == "Bearer openai-key"
    [row] = await records(gateway)
    assert (row["operation"], row["method"], row["path"], row["status"], row["outcome"]) == (
        "http",
        "GET",
        "/openai/models",
        200,
        "completed",
    )
    assert (row["route"], row["key_id"], row["usage"], row["estimated"]) == ("openai", "openai#0", None, False)
    assert row["timing"]["duration_s"] > 0 and row["attempts"][0]["status"] == 200
