"""A provider that bills other counts than it reports (Cohere ``billed_units``) is priced on the billed ones."""

from __future__ import annotations

import pytest

from llm_obs_middleware.config.settings import PricingConfig
from llm_obs_middleware.pricing.chain import build_price_source
from llm_obs_middleware.records.schema import Usage


def test_billed_counts_are_the_cost_basis() -> None:
    # An override table keeps the arithmetic checkable by hand: $2.50 / $10 per million tokens.
    source = build_price_source(
        PricingConfig(overrides={"cohere": {"command-a": {"input": 2.5, "output": 10.0}}}, genai_prices=False)
    )
    raw = Usage(input_tokens=1466, output_tokens=58)
    # Cached tokens are part of the raw count; the billed count is the whole basis, nothing billed twice.
    billed = Usage(
        input_tokens=1466, output_tokens=58, cache_read_tokens=1024, billed_input_tokens=97, billed_output_tokens=58
    )
    raw_cost, billed_cost = source.price("cohere", "command-a", raw), source.price("cohere", "command-a", billed)
    assert raw_cost is not None and billed_cost is not None
    assert raw_cost.input_usd == pytest.approx(1466 * 2.5e-6)
    assert billed_cost.input_usd == pytest.approx(97 * 2.5e-6)
    assert billed_cost.cache_read_usd == 0
    assert billed_cost.total_usd == pytest.approx(97 * 2.5e-6 + 58 * 10e-6)
