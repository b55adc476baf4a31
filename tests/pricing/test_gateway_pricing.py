"""Pricing as a user of the gateway sees it: data loaded at start-up, unknown prices counted, never $0."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from llm_obs_middleware import Config, LLMObservability, create_gateway
from llm_obs_middleware.pricing import ChainedPriceSource, GenAIPricesSource

from ..conftest import GatewayKit, config_dict

MakeKit = Callable[..., Awaitable[GatewayKit]]
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def genai_source(price_source: Any) -> GenAIPricesSource:
    assert isinstance(price_source, ChainedPriceSource)
    [source] = [source for source in price_source.sources if isinstance(source, GenAIPricesSource)]
    return source


def loaded(source: GenAIPricesSource) -> bool:
    """Whether the genai-prices data module has been imported into this source."""
    return source._snapshot is not None


async def app(scope: Any, receive: Any, send: Any) -> None:
    """The app the middleware wraps (never called here)."""


async def test_the_gateway_loads_price_data_at_start_up_the_middleware_lazily(tmp_path: Path) -> None:
    gateway = create_gateway(Config.from_dict(config_dict(tmp_path=tmp_path)))
    source = genai_source(gateway.exporters.price_source)
    assert not loaded(source), "building the gateway loads no price data"
    await gateway.startup()
    try:
        assert loaded(source), "loaded before the first request arrives"
    finally:
        await gateway.shutdown()
    stack = LLMObservability(app, config=Config.from_dict(config_dict(tmp_path=tmp_path)))
    assert not loaded(genai_source(stack.exporters.price_source)), "middleware mode loads on the first record"
    await stack.aclose()


async def test_an_unknown_price_is_null_counted_per_model_and_warned_once(
    make_kit: MakeKit, caplog: pytest.LogCaptureFixture
) -> None:
    models = {"house-llm-7b": {"provider": "openai"}, "gpt-4o-mini": {"provider": "openai"}}
    kit = await make_kit(models=models)
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.pricing"):
        async with kit.client() as client:
            for model in ("house-llm-7b", "gpt-4o-mini", "house-llm-7b", "house-llm-7b"):
                response = await client.post("/v1/chat/completions", json={"model": model, **CHAT})
                assert response.status_code == 200
            await kit.gateway.pipeline.flush()
            records = (await client.get("/logs?model=house-llm-7b")).json()["data"]
    assert len(records) == 3
    for record in records:
        assert record["usage"]["input_tokens"] > 0, "tokens are known"
        assert record.get("cost") is None, "an unknown price is null, never $0"
    unknown = {"provider": "openai", "model": "house-llm-7b"}
    assert kit.metric("llm_obs_cost_unknown_total", **unknown) == 3
    assert kit.metric("llm_obs_cost_unknown_total", provider="openai", model="gpt-4o-mini") == 0
    assert kit.metric("llm_obs_cost_usd_total", **unknown, estimated="false") == 0, "nothing added to the cost"
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "house-llm-7b" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert "llm_obs_cost_unknown_total" in warnings[0]
