"""Our cost against figures computed by hand from the providers' published prices.

Every expected figure below is token count x published USD-per-million price, multiplied out by hand
and written as a literal, so a change in the price data, in model matching or in our arithmetic
fails here. Prices were checked against two places: the genai-prices package data
(``genai_prices/data.py``, version 0.2.3, where the code reads them) and the provider's pricing page
named in each case. Where the two disagree, the case says so and follows the package (it is what
production prices with) and the disagreement is left out of the figure.

Prices go through ``build_price_source(PricingConfig())``: the chain the stack builds by default.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version
from typing import NamedTuple

import pytest

from llm_obs_middleware.config.settings import PricingConfig
from llm_obs_middleware.pricing import ChainedPriceSource, build_price_source
from llm_obs_middleware.records.schema import Usage

CHECKED_WITH = "0.2.3"  # genai-prices version the figures were checked against
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()  # a weekday, 12:00 UTC


class Case(NamedTuple):
    id: str
    provider: str
    model: str
    usage: Usage
    input_usd: float
    cache_read_usd: float
    cache_write_usd: float
    output_usd: float
    at: float = NOW


CASES = [
    # OpenAI gpt-4o (the dated id resolves to the family): $2.50 input, $1.25 cached input, $10.00 output.
    # genai-prices 0.2.3 data.py openai "gpt-4o"; https://openai.com/api/pricing/ (GPT-4o, standard tier).
    Case(
        "openai-gpt-4o-cached-input",
        "openai",
        "gpt-4o-2024-08-06",
        Usage(input_tokens=10_000, cache_read_tokens=6_144, output_tokens=500),
        input_usd=0.00964,  # (10,000 - 6,144) x 2.50 / 1e6
        cache_read_usd=0.00768,  # 6,144 x 1.25 / 1e6
        cache_write_usd=0.0,
        output_usd=0.005,  # 500 x 10.00 / 1e6
    ),
    # OpenAI o3 since the 2025-06-10 price cut: $2.00 input, $0.50 cached, $8.00 output; reasoning tokens
    # are billed as output tokens. genai-prices 0.2.3 data.py openai "o3" (StartDateConstraint 2025-06-10);
    # https://platform.openai.com/docs/pricing (o3) and https://platform.openai.com/docs/guides/reasoning.
    Case(
        "openai-o3-reasoning",
        "openai",
        "o3-2025-04-16",
        Usage(input_tokens=2_000, cache_read_tokens=1_024, output_tokens=6_000, reasoning_tokens=5_200),
        input_usd=0.001952,  # 976 x 2.00 / 1e6
        cache_read_usd=0.000512,  # 1,024 x 0.50 / 1e6
        cache_write_usd=0.0,
        output_usd=0.048,  # 6,000 (5,200 of them reasoning) x 8.00 / 1e6
    ),
    # The same o3 request before the cut (launch price $10.00 input, $40.00 output): dated prices apply at
    # the request's time. No cached tokens here: OpenAI's launch page listed $2.50 cached input where
    # genai-prices 0.2.3 has $0.50 for that period.
    Case(
        "openai-o3-before-2025-06-10",
        "openai",
        "o3",
        Usage(input_tokens=2_000, output_tokens=6_000, reasoning_tokens=5_200),
        input_usd=0.02,  # 2,000 x 10.00 / 1e6
        cache_read_usd=0.0,
        cache_write_usd=0.0,
        output_usd=0.24,  # 6,000 x 40.00 / 1e6
        at=datetime(2025, 5, 1, 12, 0, tzinfo=UTC).timestamp(),
    ),
    # OpenAI o4-mini: $1.10 input, $0.275 cached, $4.40 output (reasoning included).
    # genai-prices 0.2.3 data.py openai "o4-mini"; https://platform.openai.com/docs/pricing (o4-mini).
    Case(
        "openai-o4-mini-reasoning",
        "openai",
        "o4-mini",
        Usage(input_tokens=10_000, cache_read_tokens=4_000, output_tokens=3_000, reasoning_tokens=2_000),
        input_usd=0.0066,  # 6,000 x 1.10 / 1e6
        cache_read_usd=0.0011,  # 4,000 x 0.275 / 1e6
        cache_write_usd=0.0,
        output_usd=0.0132,  # 3,000 x 4.40 / 1e6
    ),
    # Anthropic Claude Sonnet 4: $3 input, $15 output, cache read $0.30 (0.1x), 5-minute cache write
    # $3.75 (1.25x), 1-hour cache write $6 (2x). genai-prices 0.2.3 data.py anthropic "claude-sonnet-4-0"
    # (cache_write_mtok, cache_write_1h_mtok); https://www.anthropic.com/pricing#api and
    # https://docs.claude.com/en/docs/build-with-claude/prompt-caching#pricing.
    # input_tokens counts all input: 2,000 uncached + 10,000 read + 3,000 written (1,000 with ttl 1h).
    Case(
        "anthropic-cache-read-5m-and-1h-writes",
        "anthropic",
        "claude-sonnet-4-20250514",
        Usage(
            input_tokens=15_000,
            cache_read_tokens=10_000,
            cache_write_tokens=3_000,
            cache_write_1h_tokens=1_000,
            output_tokens=800,
        ),
        input_usd=0.006,  # 2,000 x 3.00 / 1e6
        cache_read_usd=0.003,  # 10,000 x 0.30 / 1e6
        cache_write_usd=0.0135,  # 2,000 x 3.75 / 1e6 + 1,000 x 6.00 / 1e6 = 0.0075 + 0.006
        output_usd=0.012,  # 800 x 15.00 / 1e6
    ),
    # Gemini 2.5 Pro, prompt above 200k tokens: every token at the >200k rates, $2.50 input, $0.25
    # cached, $15.00 output "including thinking tokens". Gemini reports thinking apart
    # (thoughtsTokenCount); our output_tokens includes it: 1,000 candidates + 3,000 thoughts.
    # genai-prices 0.2.3 data.py google "gemini-2.5-pro" (TieredPrices, start 200000);
    # https://ai.google.dev/gemini-api/docs/pricing#gemini-2.5-pro. Context-cache storage ($4.50 per
    # million tokens per hour) is billed by the hour, not per request, and is not part of a record.
    Case(
        "gemini-2.5-pro-thinking-above-200k",
        "gemini",
        "gemini-2.5-pro",
        Usage(input_tokens=250_000, cache_read_tokens=50_000, output_tokens=4_000, reasoning_tokens=3_000),
        input_usd=0.5,  # 200,000 x 2.50 / 1e6
        cache_read_usd=0.0125,  # 50,000 x 0.25 / 1e6
        cache_write_usd=0.0,
        output_usd=0.06,  # 4,000 x 15.00 / 1e6
    ),
    # Same model at exactly 200k prompt tokens: "prompts <= 200k tokens" pay $1.25 input, $10.00 output.
    Case(
        "gemini-2.5-pro-thinking-at-200k",
        "gemini",
        "models/gemini-2.5-pro",
        Usage(input_tokens=200_000, output_tokens=2_000, reasoning_tokens=1_500),
        input_usd=0.25,  # 200,000 x 1.25 / 1e6
        cache_read_usd=0.0,
        cache_write_usd=0.0,
        output_usd=0.02,  # 2,000 x 10.00 / 1e6
    ),
    # Bedrock, US cross-region inference profile of Claude Sonnet 4.5: regional endpoints cost 10% more
    # than global ones: $3.30 input, $0.33 cache read, $4.125 cache write, $16.50 output.
    # genai-prices 0.2.3 data.py aws "regional.anthropic.claude-sonnet-4-5-20250929-v1:0";
    # https://aws.amazon.com/bedrock/pricing/ (Anthropic, Claude Sonnet 4.5, geo/in-region).
    Case(
        "bedrock-us-region-prefix",
        "bedrock",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        Usage(input_tokens=20_000, cache_read_tokens=12_000, cache_write_tokens=4_000, output_tokens=1_000),
        input_usd=0.0132,  # 4,000 x 3.30 / 1e6
        cache_read_usd=0.00396,  # 12,000 x 0.33 / 1e6
        cache_write_usd=0.0165,  # 4,000 x 4.125 / 1e6
        output_usd=0.0165,  # 1,000 x 16.50 / 1e6
    ),
    # The global profile of the same model: $3.00, $0.30, $3.75, $15.00 (same sources).
    Case(
        "bedrock-global-prefix",
        "bedrock",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        Usage(input_tokens=20_000, cache_read_tokens=12_000, cache_write_tokens=4_000, output_tokens=1_000),
        input_usd=0.012,  # 4,000 x 3.00 / 1e6
        cache_read_usd=0.0036,  # 12,000 x 0.30 / 1e6
        cache_write_usd=0.015,  # 4,000 x 3.75 / 1e6
        output_usd=0.015,  # 1,000 x 15.00 / 1e6
    ),
    # EU profile of Claude Sonnet 4 (the gen_ai.provider.name spelling of Bedrock): $3.00 / $15.00.
    # genai-prices 0.2.3 data.py aws "regional.anthropic.claude-sonnet-4-20250514-v1:0"; AWS page as above.
    Case(
        "bedrock-eu-region-prefix",
        "aws.bedrock",
        "eu.anthropic.claude-sonnet-4-20250514-v1:0",
        Usage(input_tokens=1_000, output_tokens=1_000),
        input_usd=0.003,  # 1,000 x 3.00 / 1e6
        cache_read_usd=0.0,
        cache_write_usd=0.0,
        output_usd=0.015,  # 1,000 x 15.00 / 1e6
    ),
    # DeepSeek chat, standard hours (UTC 00:30-16:30): cache hit $0.07, cache miss $0.27, output $1.10.
    # genai-prices 0.2.3 data.py deepseek "deepseek-chat" (TimeOfDateConstraint);
    # https://api-docs.deepseek.com/quick_start/pricing.
    Case(
        "deepseek-chat-cache-hits-standard-hours",
        "deepseek",
        "deepseek-chat",
        Usage(input_tokens=1_000_000, cache_read_tokens=800_000, output_tokens=10_000),
        input_usd=0.054,  # 200,000 misses x 0.27 / 1e6
        cache_read_usd=0.056,  # 800,000 hits x 0.07 / 1e6
        cache_write_usd=0.0,
        output_usd=0.011,  # 10,000 x 1.10 / 1e6
    ),
    # The same request off-peak (UTC 16:30-00:30, 50% off): $0.035 hit, $0.135 miss, $0.55 output.
    Case(
        "deepseek-chat-cache-hits-off-peak",
        "deepseek",
        "deepseek-chat",
        Usage(input_tokens=1_000_000, cache_read_tokens=800_000, output_tokens=10_000),
        input_usd=0.027,  # 200,000 x 0.135 / 1e6
        cache_read_usd=0.028,  # 800,000 x 0.035 / 1e6
        cache_write_usd=0.0,
        output_usd=0.0055,  # 10,000 x 0.55 / 1e6
        at=datetime(2026, 11, 20, 20, 0, tzinfo=UTC).timestamp(),
    ),
    # OpenAI text-embedding-3-small: $0.02 per million input tokens, no output.
    # genai-prices 0.2.3 data.py openai "text-embedding-3-small"; https://openai.com/api/pricing/ (Embeddings).
    Case(
        "openai-embedding-small",
        "openai",
        "text-embedding-3-small",
        Usage(input_tokens=12_345, total_tokens=12_345),
        input_usd=0.0002469,  # 12,345 x 0.02 / 1e6
        cache_read_usd=0.0,
        cache_write_usd=0.0,
        output_usd=0.0,
    ),
    # OpenAI text-embedding-3-large: $0.13 per million input tokens (same sources).
    Case(
        "openai-embedding-large",
        "openai",
        "text-embedding-3-large",
        Usage(input_tokens=8_000),
        input_usd=0.00104,  # 8,000 x 0.13 / 1e6
        cache_read_usd=0.0,
        cache_write_usd=0.0,
        output_usd=0.0,
    ),
]


@pytest.fixture(scope="module")
def source() -> ChainedPriceSource:
    source = build_price_source(PricingConfig())
    source.preload()
    return source


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_cost_matches_the_published_price(source: ChainedPriceSource, case: Case) -> None:
    cost = source.price(case.provider, case.model, case.usage, timestamp=case.at)
    installed = version("genai-prices")
    assert cost is not None, f"{case.model} has no price (figures checked with genai-prices {CHECKED_WITH})"
    where = f"figures checked with genai-prices {CHECKED_WITH}, installed {installed}"
    assert cost.input_usd == pytest.approx(case.input_usd, rel=1e-9, abs=1e-15), where
    assert cost.cache_read_usd == pytest.approx(case.cache_read_usd, rel=1e-9, abs=1e-15), where
    assert cost.cache_write_usd == pytest.approx(case.cache_write_usd, rel=1e-9, abs=1e-15), where
    assert cost.output_usd == pytest.approx(case.output_usd, rel=1e-9, abs=1e-15), where
    assert cost.other_usd == 0
    total = case.input_usd + case.cache_read_usd + case.cache_write_usd + case.output_usd
    assert cost.total_usd == pytest.approx(total, rel=1e-9), where
    assert cost.source == "genai-prices"


def test_one_hour_writes_cost_more_than_five_minute_ones(source: ChainedPriceSource) -> None:
    # Without the 1h split every write would be billed at the 5-minute rate (the bug this field fixes).
    usage = Usage(input_tokens=1_000, cache_write_tokens=1_000)
    five_minutes = source.price("anthropic", "claude-sonnet-4-20250514", usage)
    one_hour = source.price(
        "anthropic",
        "claude-sonnet-4-20250514",
        Usage(input_tokens=1_000, cache_write_tokens=1_000, cache_write_1h_tokens=1_000),
    )
    assert five_minutes is not None and one_hour is not None
    assert five_minutes.cache_write_usd == pytest.approx(0.00375)  # 1,000 x 3.75 / 1e6
    assert one_hour.cache_write_usd == pytest.approx(0.006)  # 1,000 x 6.00 / 1e6
