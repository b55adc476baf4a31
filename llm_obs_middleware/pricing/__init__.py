"""Pricing: how a record's USD cost is found (the interface, genai-prices data, user overrides, and their chain)."""

from __future__ import annotations

from llm_obs_middleware.pricing.base import PriceSource
from llm_obs_middleware.pricing.chain import ChainedPriceSource, build_price_source
from llm_obs_middleware.pricing.genai import GenAIPricesSource
from llm_obs_middleware.pricing.overrides import OverridePriceSource

__all__ = ["ChainedPriceSource", "GenAIPricesSource", "OverridePriceSource", "PriceSource", "build_price_source"]
