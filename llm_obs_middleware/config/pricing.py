"""The ``pricing`` block of the config: price overrides that win over genai-prices (see ``config``)."""

from __future__ import annotations

from typing import Any

import msgspec

from llm_obs_middleware.errors import ConfigurationError

__all__ = ["PriceOverride", "PricingConfig"]


class PriceOverride(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One model's price in a ``pricing.overrides`` table, in USD per million tokens."""

    input: float
    """Input tokens not read from or written to a cache."""
    output: float
    """Output tokens, reasoning tokens included."""
    cache_read: float | None = None
    """Cached input tokens read (unset: billed as ``input``)."""
    cache_write: float | None = None
    """Input tokens written to the cache, five-minute TTL (unset: billed as ``input``)."""
    cache_write_1h: float | None = None
    """Input tokens written to the cache with a one-hour TTL (unset: billed as ``cache_write``)."""
    per_request: float = 0.0
    """USD per request on top of the tokens (not per million)."""
    aliases: list[str] = []
    """Other names of the model (matched like the model name itself)."""

    def __post_init__(self) -> None:
        prices = (self.input, self.output, self.cache_read, self.cache_write, self.cache_write_1h, self.per_request)
        if any(price is not None and not price >= 0 for price in prices):
            raise ConfigurationError("prices must be numbers >= 0")


class PricingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    overrides: str | dict[str, dict[str, Any]] | None = None
    """Prices that win over genai-prices: a YAML/TOML/JSON file path, or the table inline, as
    ``{provider kind or "*": {model: PriceOverride fields}}``. The file is read when the stack is built."""
    genai_prices: bool = True
    """Price models missing from ``overrides`` with the genai-prices data (false: overrides only)."""

    def __post_init__(self) -> None:
        if isinstance(self.overrides, dict):
            from llm_obs_middleware.pricing.overrides import parse_table

            parse_table(self.overrides, "pricing.overrides")  # fail at load, naming the entry
