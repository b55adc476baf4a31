"""pricing.overrides: the user's table wins over genai-prices, matches like providers name models, fails loudly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from llm_obs_middleware import Config, ConfigurationError, LLMObservability
from llm_obs_middleware.config.settings import PricingConfig
from llm_obs_middleware.pricing import ChainedPriceSource, GenAIPricesSource, OverridePriceSource, build_price_source
from llm_obs_middleware.pricing.overrides import load_table, parse_table
from llm_obs_middleware.records.schema import Usage

# A negotiated price for gpt-4o (list: $2.50 / $1.25 / $10.00), a fine-tune, and a self-hosted model.
PRICES_YAML = """
openai:
  gpt-4o: {input: 2.00, output: 8.00, cache_read: 1.00}
  ft:gpt-4o-mini-2024-07-18:acme::9xYz: {input: 0.30, output: 1.20}
anthropic:
  claude-sonnet-4:
    input: 2.70
    output: 13.50
    cache_read: 0.27
    cache_write: 3.375
    cache_write_1h: 5.40
    aliases: [sonnet, house-writer]
  claude-sonnet-4-20250514: {input: 2.00, output: 10.00}
bedrock:
  claude-3-5-sonnet: {input: 1.00, output: 5.00}
vllm:
  llama-3.1-8b-instruct: {input: 0.05, output: 0.05, per_request: 0.0001}
"*":
  house-embedder: {input: 0.01, output: 0}
"""


async def app(scope: Any, receive: Any, send: Any) -> None:
    """The app the stack wraps (never called here)."""


@pytest.fixture
def prices_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES_YAML)
    return path


@pytest.fixture
def source(prices_file: Path) -> ChainedPriceSource:
    return build_price_source(PricingConfig(overrides=str(prices_file)))


def test_override_wins_over_genai_prices(source: ChainedPriceSource) -> None:
    usage = Usage(input_tokens=10_000, cache_read_tokens=4_000, output_tokens=1_000)
    cost = source.price("openai", "gpt-4o-2024-08-06", usage)  # dated id -> the "gpt-4o" entry
    assert cost is not None
    assert cost.source == "overrides"
    assert cost.input_usd == pytest.approx(0.012)  # 6,000 x 2.00 / 1e6
    assert cost.cache_read_usd == pytest.approx(0.004)  # 4,000 x 1.00 / 1e6
    assert cost.output_usd == pytest.approx(0.008)  # 1,000 x 8.00 / 1e6
    assert cost.total_usd == pytest.approx(0.024)


def test_models_missing_from_the_table_use_genai_prices(source: ChainedPriceSource) -> None:
    cost = source.price("openai", "gpt-4o-mini", Usage(input_tokens=1_000_000))
    assert cost is not None
    assert cost.source == "genai-prices"
    assert cost.total_usd == pytest.approx(0.15)  # list price, $0.15 per million input tokens


@pytest.mark.parametrize(
    ("provider", "model", "total"),
    [
        # exact id of a fine-tune
        ("openai", "ft:gpt-4o-mini-2024-07-18:acme::9xYz", 0.30 + 1.20),
        # a dated entry beats the family entry for its own id...
        ("anthropic", "claude-sonnet-4-20250514", 2.00 + 10.00),
        # ...and the family entry prices the other snapshots, Vertex spelling included
        ("anthropic", "claude-sonnet-4@20250601", 2.70 + 13.50),
        ("anthropic", "sonnet", 2.70 + 13.50),
        ("anthropic", "House-Writer", 2.70 + 13.50),
        # Bedrock: region prefix, vendor prefix, version suffix and date all resolved
        ("bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0", 1.00 + 5.00),
        ("aws.bedrock", "eu.anthropic.claude-3-5-sonnet-20241022-v2:0", 1.00 + 5.00),
        # "*" entries apply to every provider
        ("openai_compatible", "house-embedder", 0.01),
        ("gemini", "house-embedder", 0.01),
        # self-hosted models are priced when the user says so (plus the per-request price)
        ("vllm", "meta-llama/Llama-3.1-8B-Instruct", 0.05 + 0.05 + 0.0001),
    ],
)
def test_matching(source: ChainedPriceSource, provider: str, model: str, total: float) -> None:
    cost = source.price(provider, model, Usage(input_tokens=1_000_000, output_tokens=1_000_000))
    assert cost is not None and cost.source == "overrides"
    assert cost.total_usd == pytest.approx(total)


def test_provider_must_match(source: ChainedPriceSource) -> None:
    # The "bedrock" entry does not price Anthropic's own API (genai-prices does, at list price).
    cost = source.price("anthropic", "claude-3-5-sonnet-20240620", Usage(input_tokens=1_000_000))
    assert cost is not None and cost.source == "genai-prices"
    assert cost.total_usd == pytest.approx(3.00)


def test_one_hour_cache_writes_in_the_table(source: ChainedPriceSource) -> None:
    usage = Usage(input_tokens=3_000, cache_write_tokens=3_000, cache_write_1h_tokens=1_000)
    cost = source.price("anthropic", "claude-sonnet-4-5", usage)  # not in the table: genai-prices
    assert cost is not None and cost.source == "genai-prices"
    cost = source.price("anthropic", "claude-sonnet-4-20250301", usage)
    assert cost is not None and cost.source == "overrides"
    assert cost.cache_write_usd == pytest.approx((2_000 * 3.375 + 1_000 * 5.40) / 1e6)


def test_unset_cache_prices_fall_back_like_providers_bill() -> None:
    table = parse_table({"openai": {"m": {"input": 1.0, "output": 2.0}}}, "t")
    source = OverridePriceSource(table)
    usage = Usage(input_tokens=3_000, cache_read_tokens=1_000, cache_write_tokens=1_000, cache_write_1h_tokens=500)
    cost = source.price("openai", "m", usage)
    assert cost is not None
    assert cost.input_usd == pytest.approx(1_000 / 1e6)
    assert cost.cache_read_usd == pytest.approx(1_000 / 1e6)  # billed as input
    assert cost.cache_write_usd == pytest.approx(1_000 / 1e6)  # 5m and 1h writes billed as input too


def test_resolved_once_misses_included(
    source: ChainedPriceSource, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    overrides, genai = source.sources
    assert isinstance(overrides, OverridePriceSource) and isinstance(genai, GenAIPricesSource)
    calls: list[tuple[str, ...]] = []
    for candidate in source.sources:
        original = candidate.knows

        def counting(provider: str, model: str, original: Any = original, name: str = type(candidate).__name__) -> bool:
            calls.append((name, provider, model))
            return bool(original(provider, model))

        monkeypatch.setattr(candidate, "knows", counting)
    usage = Usage(input_tokens=10, output_tokens=10)
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.pricing"):
        for _ in range(3):
            assert source.price("openai", "no-such-model-x9", usage) is None
            assert source.price("openai", "gpt-4o", usage) is not None
            assert source.price("openai", "gpt-4o-mini", usage) is not None
    assert calls == [
        ("OverridePriceSource", "openai", "no-such-model-x9"),
        ("GenAIPricesSource", "openai", "no-such-model-x9"),
        ("OverridePriceSource", "openai", "gpt-4o"),
        ("OverridePriceSource", "openai", "gpt-4o-mini"),
        ("GenAIPricesSource", "openai", "gpt-4o-mini"),
    ]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no-such-model-x9" in warnings[0]


def test_self_hosted_misses_are_not_warned(source: ChainedPriceSource, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llm_obs_middleware.pricing"):
        assert source.price("ollama", "llama3.2", Usage(input_tokens=1)) is None
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_overrides_only() -> None:
    config = Config.from_dict(
        {"pricing": {"overrides": {"openai": {"mine": {"input": 1, "output": 1}}}, "genai_prices": False}}
    )
    source = build_price_source(config.pricing)
    assert source.price("openai", "mine", Usage(input_tokens=1_000_000)) is not None
    assert source.price("openai", "gpt-4o-mini", Usage(input_tokens=1_000_000)) is None


def test_describe_names_the_source(source: ChainedPriceSource, prices_file: Path) -> None:
    described = source.describe("bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert described == (
        f"override file {prices_file}: provider 'bedrock', model 'claude-3-5-sonnet', matched as 'claude-3-5-sonnet'"
    )
    genai = source.describe("openai", "gpt-4o-mini")
    assert genai is not None and genai.startswith("genai-prices ") and "'gpt-4o-mini'" in genai
    assert source.describe("openai", "no-such-model") is None


def test_inline_table_in_config() -> None:
    config = Config.from_dict({"pricing": {"overrides": {"openai": {"gpt-4o": {"input": 1, "output": 2}}}}})
    cost = build_price_source(config.pricing).price(
        "openai", "gpt-4o", Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    )
    assert cost is not None and cost.total_usd == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"opnai": {"m": {"input": 1, "output": 1}}}, r"pricing\.overrides\.opnai: unknown provider kind"),
        ({"openai": {"m": {"input": 1, "ouptut": 1}}}, r"pricing\.overrides\.openai\.m: .*unknown field `ouptut`"),
        ({"openai": {"m": {"input": "cheap", "output": 1}}}, r"pricing\.overrides\.openai\.m\.input: Expected `float`"),
        ({"openai": {"m": {"input": -1, "output": 1}}}, r"pricing\.overrides\.openai\.m: prices must be numbers >= 0"),
        ({"openai": {"m": {"input": 1}}}, r"pricing\.overrides\.openai\.m: .*missing required field `output`"),
        ({"openai": ["m"]}, r"^pricing\.overrides\.openai: Expected `object`, got `array`$"),
    ],
)
def test_bad_inline_tables_fail_at_load_naming_the_entry(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Config.from_dict({"pricing": {"overrides": overrides}})


def test_duplicate_names_fail() -> None:
    table = parse_table(
        {"openai": {"a": {"input": 1, "output": 1, "aliases": ["b"]}, "b": {"input": 2, "output": 2}}}, "t"
    )
    with pytest.raises(ConfigurationError, match="'b' is given to both 'a' and 'b'"):
        OverridePriceSource(table)


def test_bad_files_fail_when_the_stack_is_built(tmp_path: Path) -> None:
    missing = Config.from_dict({"pricing": {"overrides": str(tmp_path / "nope.yaml")}})
    with pytest.raises(ConfigurationError, match="cannot read price file"):
        LLMObservability(app, config=missing)
    bad = tmp_path / "prices.yaml"
    bad.write_text("openai: {gpt-4o: {input: [}")
    with pytest.raises(ConfigurationError, match="is not valid YAML"):
        build_price_source(PricingConfig(overrides=str(bad)))
    wrong = tmp_path / "prices.ini"
    wrong.write_text("")
    with pytest.raises(ConfigurationError, match=r"unknown format '\.ini'"):
        load_table(wrong)
    listed = tmp_path / "list.yaml"
    listed.write_text("openai: [gpt-4o]")
    with pytest.raises(ConfigurationError, match=r"list\.yaml\.openai: expected a mapping of model -> prices"):
        load_table(listed)
    typo = tmp_path / "prices.json"
    typo.write_text('{"openai": {"gpt-4o": {"input": 1, "output": 1, "cache-read": 1}}}')
    with pytest.raises(ConfigurationError, match=r"prices\.json\.openai\.gpt-4o: .*unknown field `cache-read`"):
        load_table(typo)


def test_toml_and_empty_files(tmp_path: Path) -> None:
    toml = tmp_path / "prices.toml"
    toml.write_text('[openai."gpt-4o"]\ninput = 1.0\noutput = 3.0\n')
    assert load_table(toml)["openai"]["gpt-4o"].output == 3.0
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_table(empty) == {}


def test_the_stack_prices_with_the_configured_overrides(prices_file: Path) -> None:
    stack = LLMObservability(
        app,
        config=Config.from_dict(
            {"pricing": {"overrides": str(prices_file)}, "exporters": {"log_store": {"enabled": False}}}
        ),
    )
    source = stack.exporters.price_source
    assert source is not None
    cost = source.price("openai", "gpt-4o", Usage(input_tokens=1_000_000))
    assert cost is not None and cost.source == "overrides" and cost.total_usd == pytest.approx(2.0)


def test_caches_are_bounded_and_direct_use() -> None:
    table = parse_table({"openai": {"m": {"input": 1, "output": 1}}}, "t")
    overrides = OverridePriceSource(table, max_cached=2)
    for i in range(5):
        assert overrides.price("openai", f"other-{i}", Usage(input_tokens=1)) is None
    assert len(overrides._cache) <= 2
    assert overrides.price("openai", "m", Usage(input_tokens=1_000_000)) is not None
    chain = ChainedPriceSource(overrides, max_cached=2)
    for i in range(5):
        chain.price("openai", f"unknown-{i}", Usage(input_tokens=1))
    assert len(chain._chosen) <= 2
    assert chain.knows("openai", "m") and not chain.knows("openai", "unknown-9")
    with pytest.raises(ConfigurationError, match="t: expected a mapping of provider"):
        parse_table(["openai"], "t")
