"""Pricing: how a record's USD cost is found (the interface, genai-prices data, user overrides, and their chain)."""

from __future__ import annotations

from .base import PriceSource
from .chain import ChainedPriceSource, build_price_source
from .genai import GenAIPricesSource
from .overrides import OverridePriceSource

__all__ = ["ChainedPriceSource", "GenAIPricesSource", "OverridePriceSource", "PriceSource", "build_price_source"]
