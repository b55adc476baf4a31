"""GenAIPricesSource: hand-computed prices, fallbacks, cached misses and warnings."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from genai_prices import data_snapshot
from genai_prices.types import TieredPrices, Usage as GenAIUsage

from llm_obs_middleware.pricing import GenAIPricesSource, PriceSource
from llm_obs_middleware.records.schema import Usage

# Published prices in the genai-prices data (genai_prices/data.py, openai "gpt-4o-mini", from
# https://platform.openai.com/docs/pricing): $0.15 per million input tokens, $0.075 per million
# cached input tokens, $0.60 per million output tokens; no cache-write price.
GPT_4O_MINI_INPUT = 0.15 / 1e6
GPT_4O_MINI_CACHED = 0.075 / 1e6
GPT_4O_MINI_OUTPUT = 0.60 / 1e6


@pytest.fixture
def source() -> GenAIPricesSource:
    source = GenAIPricesSource()
    source.preload()
    return source


def test_is_a_price_source(source: GenAIPricesSource) -> None:
    checked: PriceSource = source
    assert checked is source


def test_gpt_4o_mini_with_cached_input(source: GenAIPricesSource) -> None:
    usage = Usage(input_tokens=12_000, cache_read_tokens=8_000, output_tokens=1_500, reasoning_tokens=500)
    cost = source.price("openai", "gpt-4o-mini", usage)
    assert cost is not None
    # 4,000 uncached input + 8,000 cached input + 1,500 output (reasoning is inside output).
    assert cost.input_usd == pytest.approx(4_000 * GPT_4O_MINI_INPUT)  # $0.0006
    assert cost.cache_read_usd == pytest.approx(8_000 * GPT_4O_MINI_CACHED)  # $0.0006
    assert cost.output_usd == pytest.approx(1_500 * GPT_4O_MINI_OUTPUT)  # $0.0009
    assert cost.cache_write_usd == 0
    assert cost.total_usd == pytest.approx(0.0021)
    assert cost.source == "genai-prices"
    assert cost.currency == "USD"


def test_fast_path_agrees_with_genai_prices(source: GenAIPricesSource) -> None:
    usage = Usage(input_tokens=12_000, cache_read_tokens=8_000, output_tokens=1_500)
    cost = source.price("openai", "gpt-4o-mini-2024-07-18", usage)  # a dated snapshot name resolves too
    expected = genai_prices.calc_price(
        GenAIUsage(input_tokens=12_000, cache_read_tokens=8_000, output_tokens=1_500),
        "gpt-4o-mini",
        provider_id="openai",
    )
    assert cost is not None
    assert cost.total_usd == pytest.approx(float(expected.total_price))


def test_cache_write_without_its_own_price_bills_as_input(source: GenAIPricesSource) -> None:
    cost = source.price("openai", "gpt-4o-mini", Usage(input_tokens=1_000, cache_write_tokens=1_000))
    assert cost is not None
    assert cost.input_usd == 0
    assert cost.cache_write_usd == pytest.approx(1_000 * GPT_4O_MINI_INPUT)


def test_provider_kinds_map_to_genai_prices_ids(source: GenAIPricesSource) -> None:
    usage = Usage(input_tokens=1_000_000)
    azure = source.price("azure_openai", "gpt-4o", usage)
    compatible = source.price("openai_compatible", "gpt-4o-mini", usage)
    assert azure is not None and compatible is not None
    assert azure.total_usd == pytest.approx(2.5)
    assert compatible.total_usd == pytest.approx(0.15)
    anthropic = source.price("anthropic", "claude-3-5-haiku-latest", usage)
    assert anthropic is not None and anthropic.total_usd > 0


def test_tiered_prices_use_genai_prices_calculation(source: GenAIPricesSource) -> None:
    _, model = data_snapshot.get_snapshot().find_provider_model("claude-sonnet-4-5", None, "anthropic", None)
    price = model.get_prices(datetime.now(tz=UTC))
    assert isinstance(price.input_mtok, TieredPrices)
    # Above the 200k-token tier every input token is billed at the higher rate.
    usage = Usage(input_tokens=300_000, output_tokens=1_000)
    cost = source.price("anthropic", "claude-sonnet-4-5", usage)
    expected = price.calc_price(GenAIUsage(input_tokens=300_000, output_tokens=1_000))
    assert cost is not None
    assert cost.total_usd == pytest.approx(float(expected["total_price"]))
    tier_rate = price.input_mtok.tiers[-1].price
    assert cost.input_usd == pytest.approx(float(Decimal(300_000) * tier_rate / 1_000_000))
    assert cost.input_usd > 300_000 * float(price.input_mtok.base) / 1e6


def test_audio_tokens_with_their_own_price(source: GenAIPricesSource) -> None:
    # genai-prices data, google "gemini-2.0-flash": $0.10/M text input, $0.70/M audio input, $0.40/M output.
    usage = Usage(input_tokens=1_000, audio_input_tokens=400, output_tokens=100)
    cost = source.price("gemini", "gemini-2.0-flash", usage)
    assert cost is not None
    assert cost.total_usd == pytest.approx((600 * 0.10 + 400 * 0.70 + 100 * 0.40) / 1e6)
    assert cost.output_usd == pytest.approx(100 * 0.40 / 1e6)


def test_tiered_prices_below_the_first_tier_use_the_base_price(source: GenAIPricesSource) -> None:
    _, model = data_snapshot.get_snapshot().find_provider_model("claude-sonnet-4-5", None, "anthropic", None)
    price = model.get_prices(datetime.now(tz=UTC))
    assert isinstance(price.input_mtok, TieredPrices)
    usage = Usage(input_tokens=10_000, cache_read_tokens=4_000, cache_write_tokens=1_000, output_tokens=500)
    cost = source.price("anthropic", "claude-sonnet-4-5", usage)
    expected = price.calc_price(
        GenAIUsage(input_tokens=10_000, cache_read_tokens=4_000, cache_write_tokens=1_000, output_tokens=500)
    )
    assert cost is not None
    assert cost.total_usd == pytest.approx(float(expected["total_price"]))
    assert cost.input_usd == pytest.approx(5_000 * float(price.input_mtok.base) / 1e6)
    assert cost.cache_read_usd > 0 and cost.cache_write_usd > 0  # the split survives on the fast path


def test_unknown_model_is_none_warned_once_and_cached(
    source: GenAIPricesSource, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []
    snapshot = data_snapshot.get_snapshot()
    original = snapshot.find_provider_model

    def counting(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(snapshot, "find_provider_model", counting)
    usage = Usage(input_tokens=10, output_tokens=10)
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.pricing"):
        assert [source.price("openai", "no-such-model-x1", usage) for _ in range(3)] == [None, None, None]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no-such-model-x1" in warnings[0].getMessage()
    assert len(calls) == 1  # the miss is cached
    # Hits are cached too.
    source.price("openai", "gpt-4o-mini", usage)
    source.price("openai", "gpt-4o-mini", usage)
    assert len(calls) == 2


def test_unknown_provider_name_falls_back_to_model_match(source: GenAIPricesSource) -> None:
    cost = source.price("my-company-proxy", "gpt-4o-mini", Usage(output_tokens=1_000_000))
    assert cost is not None
    assert cost.total_usd == pytest.approx(0.60)


def test_self_hosted_is_not_priced_nor_warned(source: GenAIPricesSource, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.pricing"):
        assert source.price("ollama", "gpt-4o-mini", Usage(input_tokens=10)) is None
    assert not caplog.records


def test_loads_lazily_on_first_price() -> None:
    source = GenAIPricesSource()
    assert source._snapshot is None
    assert source.price("openai", "gpt-4o-mini", Usage(input_tokens=1)) is not None
    assert source._snapshot is not None


def test_cache_is_bounded() -> None:
    bounded = GenAIPricesSource(max_cached=3)
    for i in range(10):
        bounded.price("openai", f"unknown-{i}", Usage(input_tokens=1))
    assert len(bounded._cache) <= 3


def test_time_conditional_prices(source: GenAIPricesSource) -> None:
    # deepseek-chat has off-peak prices; the price in force now is the one genai-prices selects now.
    _, model = data_snapshot.get_snapshot().find_provider_model("deepseek-chat", None, "deepseek", None)
    assert isinstance(model.prices, list)
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    cost = source.price("deepseek", "deepseek-chat", usage)
    expected = model.get_prices(datetime.now(tz=UTC)).calc_price(
        GenAIUsage(input_tokens=1_000_000, output_tokens=1_000_000)
    )
    assert cost is not None
    assert cost.total_usd == pytest.approx(float(expected["total_price"]))


def test_unknown_provider_and_model(source: GenAIPricesSource) -> None:
    assert source.price("my-proxy", "no-such-model-x2", Usage(input_tokens=1)) is None


def test_inconsistent_usage_on_the_exact_path_is_none_and_warned_once(
    source: GenAIPricesSource, caplog: pytest.LogCaptureFixture
) -> None:
    # More cached than total input tokens: genai-prices refuses it rather than pricing nonsense.
    usage = Usage(input_tokens=10, cache_read_tokens=100, audio_input_tokens=50)
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.pricing"):
        assert source.price("gemini", "gemini-2.0-flash", usage) is None
        assert source.price("gemini", "gemini-2.0-flash", usage) is None
    assert len(caplog.records) == 1
