"""Pricing: how a record's USD cost is found (the interface and the genai-prices implementation)."""

from __future__ import annotations

from .base import PriceSource
from .genai import GenAIPricesSource

__all__ = ["GenAIPricesSource", "PriceSource"]
