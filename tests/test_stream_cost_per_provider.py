"""Streamed and plain versions of one exchange cost the same, for every provider adapter.

Each case sends the same request twice through the gateway to the fake provider, once plain and
once streamed, and compares the two records: same usage, same cost, component by component. The
fake reports cached and reasoning tokens in each provider's own way (Anthropic and Bedrock leave
cache reads out of their input count, Gemini reports thinking apart, Cohere bills less than it
counts), so each adapter's plain and stream readers are exercised on the fields that cost money.
Native routes use the provider's own wire format; the OpenAI API at ``/v1`` reaches the same
providers through translation, where the record still comes from the provider's own bytes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from llm_obs_middleware import Config, create_gateway
from llm_obs_middleware.gateway.standalone import Gateway
from llm_obs_middleware.testing import FakeProviderConfig, create_fake_provider
from llm_obs_middleware.testing._fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

FAKE = FakeProviderConfig(prompt_tokens=3_000, cached_tokens=1_000, completion_tokens=400, reasoning_tokens=150)
FAKE_ROOT = "http://fake.test"
BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HELLO = [{"role": "user", "content": "hi"}]

PROVIDERS: dict[str, Any] = {
    "openai": {"kind": "openai", "base_url": f"{FAKE_ROOT}/v1", "api_keys": ["sk-openai"]},
    "azure": {"kind": "azure_openai", "base_url": FAKE_ROOT, "api_keys": ["azure-key"]},
    "deepseek": {"kind": "deepseek", "base_url": f"{FAKE_ROOT}/v1", "api_keys": ["sk-deepseek"]},
    "anthropic": {"kind": "anthropic", "base_url": FAKE_ROOT, "api_keys": ["sk-ant"]},
    "gemini": {"kind": "gemini", "base_url": FAKE_ROOT, "api_keys": ["gemini-key"]},
    "bedrock": {
        "kind": "bedrock",
        "base_url": FAKE_ROOT,
        "aws_region": "us-east-1",
        "aws_access_key_id": TEST_ACCESS_KEY_ID,
        "aws_secret_access_key": TEST_SECRET_ACCESS_KEY,
    },
    "cohere": {"kind": "cohere", "base_url": FAKE_ROOT, "api_keys": ["co-key"]},
    "ollama": {"kind": "ollama", "base_url": FAKE_ROOT},
}
MODELS: dict[str, Any] = {
    "gpt-4o-mini": {"provider": "openai"},
    "azure-mini": {"provider": "azure", "model": "gpt-4o-mini"},
    "deepseek-chat": {"provider": "deepseek"},
    "claude-sonnet-4-5": {"provider": "anthropic"},
    "gemini-2.5-flash": {"provider": "gemini"},
    "bedrock-sonnet": {"provider": "bedrock", "model": BEDROCK_MODEL},
    "command-a-03-2025": {"provider": "cohere"},
    "llama3.2": {"provider": "ollama"},
}


class Exchange(NamedTuple):
    """One request sent plain and streamed: (path, body) each."""

    id: str
    plain: tuple[str, dict[str, Any]]
    streamed: tuple[str, dict[str, Any]]
    priced: bool = True


def by_model(model: str) -> Exchange:
    body = {"model": model, "messages": HELLO}
    path = "/v1/chat/completions"
    return Exchange(f"v1-chat-{model}", (path, body), (path, {**body, "stream": True}), priced=model != "llama3.2")


def same_path(case_id: str, path: str, body: dict[str, Any], **priced: bool) -> Exchange:
    return Exchange(case_id, (path, body), (path, {**body, "stream": True}), **priced)


GEMINI = "/gemini/v1beta/models/gemini-2.5-flash"
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
BEDROCK = f"/bedrock/model/{BEDROCK_MODEL}"
BEDROCK_BODY = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
AZURE = "/azure/openai/deployments/azure-mini/chat/completions?api-version=2024-10-21"

CASES = [
    *(by_model(model) for model in MODELS),  # OpenAI-compatible kinds as they are, the others translated
    same_path("v1-responses-openai", "/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}),
    same_path("native-azure", AZURE, {"messages": HELLO}),
    same_path(
        "native-anthropic",
        "/anthropic/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": HELLO},
    ),
    Exchange(
        "native-gemini",
        (f"{GEMINI}:generateContent", GEMINI_BODY),
        (f"{GEMINI}:streamGenerateContent?alt=sse", GEMINI_BODY),
    ),
    Exchange("native-bedrock", (f"{BEDROCK}/converse", BEDROCK_BODY), (f"{BEDROCK}/converse-stream", BEDROCK_BODY)),
    same_path("native-cohere", "/cohere/v2/chat", {"model": "command-a-03-2025", "messages": HELLO}),
    Exchange(
        "native-ollama",
        ("/ollama/api/chat", {"model": "llama3.2", "messages": HELLO, "stream": False}),
        ("/ollama/api/chat", {"model": "llama3.2", "messages": HELLO, "stream": True}),
        priced=False,
    ),
]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    fake = create_fake_provider(FAKE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake), base_url=FAKE_ROOT) as upstream:
        config = Config.from_dict(
            {
                "providers": PROVIDERS,
                "models": MODELS,
                "exporters": {"log_store": {"url": f"sqlite:///{tmp_path / 'log.db'}"}},
                "routing": {"retries": 0},
            }
        )
        gateway = create_gateway(config, client=upstream)
        await gateway.startup()
        yield gateway
        await gateway.shutdown()


async def records(gateway: Gateway) -> list[dict[str, Any]]:
    await gateway.pipeline.flush()
    store = gateway.exporters.log_store
    assert store is not None
    return [json.loads(raw) for raw in reversed(store.query(limit=10))]  # oldest first


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_streamed_and_plain_cost_the_same(gateway: Gateway, case: Exchange) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway.test") as client:
        for path, body in (case.plain, case.streamed):
            response = await client.post(path, json=body, headers={"authorization": "Bearer client-key"})
            assert response.status_code == 200, response.text
    plain, streamed = await records(gateway)
    assert (plain["streamed"], streamed["streamed"]) == (False, True)
    for record in (plain, streamed):
        assert (record["outcome"], record["estimated"]) == ("completed", False), record
    # Every cache-read token the fake reported was read, in both (none is lost by either reader).
    if case.priced:  # Ollama reports no cache reads
        assert plain["usage"]["cache_read_tokens"] == FAKE.cached_tokens
    assert plain["usage"] == streamed["usage"]
    if not case.priced:  # self-hosted: no list price, in both; never $0
        assert plain["cost"] is None and streamed["cost"] is None
        return
    assert plain["cost"] is not None and plain["cost"]["total_usd"] > 0
    assert plain["cost"].keys() == streamed["cost"].keys()
    for field, usd in plain["cost"].items():
        assert streamed["cost"][field] == (usd if field == "source" else pytest.approx(usd, rel=1e-12)), field
