"""Several price sources in order (the user's overrides, then genai-prices): the first that knows a model prices it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol

from llm_obs_middleware.pricing._match import UNPRICED_KINDS, canonical_provider

if TYPE_CHECKING:
    from llm_obs_middleware.config.settings import PricingConfig
    from llm_obs_middleware.records.schema import Cost, Usage

__all__ = ["ChainedPriceSource", "ResolvingPriceSource", "build_price_source"]

logger = logging.getLogger("llm_obs_middleware.pricing")

_MAX_CACHED: Final = 4096


class ResolvingPriceSource(Protocol):
    """A :class:`~.base.PriceSource` that can say whether it knows a model, and where its price comes from."""

    def price(self, provider: str, model: str, usage: Usage, *, timestamp: float | None = None) -> Cost | None: ...

    def knows(self, provider: str, model: str) -> bool: ...

    def describe(self, provider: str, model: str) -> str | None: ...


class ChainedPriceSource:
    """Asks each source in turn; implements :class:`~.base.PriceSource`.

    Which source prices a ``(provider, model)`` is decided once and cached, misses included: a model
    no source knows is warned about once (self-hosted kinds excepted) and costs a dict lookup after.

    Args:
        sources: in order of precedence.
        max_cached: ``(provider, model)`` decisions kept at most; the cache is emptied past it.
    """

    def __init__(self, *sources: ResolvingPriceSource, max_cached: int = _MAX_CACHED) -> None:
        self.sources = sources
        self._chosen: dict[tuple[str, str], ResolvingPriceSource | None] = {}
        self._max_cached = max_cached

    def preload(self) -> None:
        """Load every source's data now (the gateway calls this at start-up, in a thread)."""
        for source in self.sources:
            preload = getattr(source, "preload", None)
            if preload is not None:
                preload()

    def price(self, provider: str, model: str, usage: Usage, *, timestamp: float | None = None) -> Cost | None:
        key = (provider, model)
        source = self._chosen[key] if key in self._chosen else self._choose(provider, model)
        if source is None:
            return None
        return source.price(provider, model, usage, timestamp=timestamp)

    def knows(self, provider: str, model: str) -> bool:
        return any(source.knows(provider, model) for source in self.sources)

    def describe(self, provider: str, model: str) -> str | None:
        """Where the model's price comes from: the first source that knows it."""
        for source in self.sources:
            described = source.describe(provider, model)
            if described is not None:
                return described
        return None

    def _choose(self, provider: str, model: str) -> ResolvingPriceSource | None:
        if len(self._chosen) >= self._max_cached:
            self._chosen.clear()
        chosen = next((source for source in self.sources if source.knows(provider, model)), None)
        self._chosen[(provider, model)] = chosen
        if chosen is None and canonical_provider(provider) not in UNPRICED_KINDS:
            logger.warning(
                "no price for %s model %r (pricing.overrides, genai-prices); its records carry no cost "
                "(counted in llm_obs_cost_unknown_total)",
                provider,
                model,
            )
        return chosen


def build_price_source(config: PricingConfig) -> ChainedPriceSource:
    """The price source a config asks for: its overrides (read now), then genai-prices (loaded lazily).

    Raises:
        ConfigurationError: the override table cannot be read or is invalid.
    """
    from llm_obs_middleware.pricing.genai import GenAIPricesSource
    from llm_obs_middleware.pricing.overrides import OverridePriceSource

    sources: list[ResolvingPriceSource] = []
    overrides = OverridePriceSource.from_config(config.overrides)
    if overrides is not None:
        sources.append(overrides)
    if config.genai_prices:
        sources.append(GenAIPricesSource())
    return ChainedPriceSource(*sources)
