"""USD prices from the maintained `genai-prices <https://github.com/pydantic/genai-prices>`_ data.

A ``(provider, model)`` pair is resolved against the genai-prices snapshot once and cached, misses
included, so pricing a record is a dict lookup and a few float multiplications: the uncached
genai-prices lookup costs ~57 µs (see DESIGN.md, section 5), far too much per record. The data
module takes a few hundred milliseconds to import, so it is imported lazily, by :meth:`preload`
(the gateway calls it at start-up) or on the first record.

Cases the float fast path cannot price exactly (requests above a tiered price's threshold, audio or
reasoning tokens with their own price) fall back to genai-prices' own ``ModelPrice.calc_price``:
correct before fast.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ..schema import Cost, Usage

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, ModelPrice

__all__ = ["GenAIPricesSource"]

logger = logging.getLogger("llm_obs_middleware.pricing")

_SOURCE: Final = "genai-prices"
_PER_MTOK: Final = 1e-6
_MISSING: Final = object()

# Our provider kinds (config.ProviderKind) -> genai-prices provider ids. ``None`` means "match on
# the model name alone" (an OpenAI-compatible server may serve anyone's models).
_PROVIDER_IDS: Final[dict[str, str | None]] = {
    "openai": "openai",
    "openai_compatible": None,
    "azure_openai": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
    "bedrock": "aws",
    "cohere": "cohere",
    "mistral": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
}
# Self-hosted servers: a per-token list price for the same model name elsewhere would be wrong.
_UNPRICED_KINDS: Final = frozenset({"ollama", "vllm"})
_AUDIO_PRICE_KEYS: Final = ("input_audio_mtok", "output_audio_mtok", "cache_audio_read_mtok")
# Bound the cache: model names come from clients, so a misbehaving one could send endless names.
_MAX_CACHED: Final = 4096


class _Rates:
    """One ModelPrice reduced to USD-per-token floats (or marked for the exact slow path)."""

    __slots__ = (
        "audio_priced",
        "cache_read",
        "cache_write",
        "input",
        "output",
        "per_request",
        "reasoning_priced",
        "tier_floor",
    )

    def __init__(self, price: ModelPrice) -> None:
        from genai_prices.types import TieredPrices

        fields = (price.input_mtok, price.output_mtok, price.cache_read_mtok, price.cache_write_mtok)
        # Tiered prices are "cliff" prices chosen by the request's total input tokens: at or below the
        # lowest tier start every token pays the base price, so only larger requests need the exact
        # (and ~100x slower) genai-prices calculation.
        starts = [tier.start for value in fields if isinstance(value, TieredPrices) for tier in value.tiers]
        self.tier_floor: float = min(starts, default=float("inf"))
        input_mtok, output_mtok, cache_read_mtok, cache_write_mtok = (
            None if value is None else float(value.base if isinstance(value, TieredPrices) else value)
            for value in fields
        )
        self.input = (input_mtok or 0.0) * _PER_MTOK
        self.output = (output_mtok or 0.0) * _PER_MTOK
        # A model without a separate cache price bills cached tokens as ordinary input.
        self.cache_read = self.input if cache_read_mtok is None else cache_read_mtok * _PER_MTOK
        self.cache_write = self.input if cache_write_mtok is None else cache_write_mtok * _PER_MTOK
        requests_kcount = getattr(price, "requests_kcount", None)
        self.per_request = float(requests_kcount) / 1000 if requests_kcount is not None else 0.0
        self.audio_priced = any(getattr(price, key, None) is not None for key in _AUDIO_PRICE_KEYS)
        self.reasoning_priced = getattr(price, "output_reasoning_mtok", None) is not None


class _Entry:
    """A resolved model: its genai-prices ModelInfo and the rates of each ModelPrice seen so far."""

    __slots__ = ("fixed", "model", "rates")

    def __init__(self, model: ModelInfo) -> None:
        self.model = model
        # Time-conditional prices (off-peak discounts, announced price changes) are re-selected per
        # record; the ModelPrice objects themselves live as long as the snapshot, so their rates
        # are cached by identity.
        self.fixed: tuple[ModelPrice, _Rates] | None = None
        self.rates: dict[int, tuple[ModelPrice, _Rates]] = {}
        if not isinstance(model.prices, list):
            self.fixed = (model.prices, _Rates(model.prices))

    def current(self) -> tuple[ModelPrice, _Rates]:
        if self.fixed is not None:
            return self.fixed
        price = self.model.get_prices(datetime.now(tz=UTC))
        found = self.rates.get(id(price))
        if found is None:
            found = self.rates[id(price)] = (price, _Rates(price))
        return found


class GenAIPricesSource:
    """Prices usage with the genai-prices catalogue; implements :class:`~.base.PriceSource`.

    Args:
        max_cached: ``(provider, model)`` pairs kept resolved at most; the cache is emptied past it.
    """

    def __init__(self, *, max_cached: int = _MAX_CACHED) -> None:
        self._snapshot: DataSnapshot | None = None
        self._cache: dict[tuple[str, str], _Entry | None] = {}
        self._unpriceable: set[tuple[str, str]] = set()
        self._max_cached = max_cached

    def preload(self) -> None:
        """Import the price data now (slow, blocking) so the first record does not pay for it."""
        if self._snapshot is None:
            from genai_prices.data_snapshot import get_snapshot

            self._snapshot = get_snapshot()

    def price(self, provider: str, model: str, usage: Usage) -> Cost | None:
        """USD cost of ``usage`` on ``provider``'s ``model``; ``None`` when the price is unknown."""
        key = (provider, model)
        entry = self._cache.get(key, _MISSING)
        if entry is _MISSING:
            entry = self._resolve(provider, model)
        if entry is None:
            return None
        assert isinstance(entry, _Entry)
        price, rates = entry.current()
        if (
            (usage.input_tokens or 0) > rates.tier_floor
            or (rates.audio_priced and (usage.audio_input_tokens or usage.audio_output_tokens))
            or (rates.reasoning_priced and usage.reasoning_tokens)
        ):
            return self._exact(provider, model, price, usage)
        input_tokens = usage.input_tokens or 0
        cache_read = usage.cache_read_tokens or 0
        cache_write = usage.cache_write_tokens or 0
        input_usd = max(0, input_tokens - cache_read - cache_write) * rates.input
        cache_read_usd = cache_read * rates.cache_read
        cache_write_usd = cache_write * rates.cache_write
        output_usd = (usage.output_tokens or 0) * rates.output  # reasoning tokens are part of output
        return Cost(
            total_usd=input_usd + cache_read_usd + cache_write_usd + output_usd + rates.per_request,
            input_usd=input_usd,
            cache_read_usd=cache_read_usd,
            cache_write_usd=cache_write_usd,
            output_usd=output_usd,
            other_usd=rates.per_request,
            source=_SOURCE,
        )

    def _resolve(self, provider: str, model: str) -> _Entry | None:
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
            self._unpriceable.clear()
        entry = self._lookup(provider, model)
        self._cache[(provider, model)] = entry
        return entry

    def _lookup(self, provider: str, model: str) -> _Entry | None:
        if provider in _UNPRICED_KINDS:
            logger.info("not pricing %s model %r: self-hosted models have no list price", provider, model)
            return None
        self.preload()
        snapshot = self._snapshot
        assert snapshot is not None
        # A provider name we do not know may still be a genai-prices id ("openrouter", "together").
        provider_id = _PROVIDER_IDS.get(provider, provider)
        try:
            _, info = snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            if provider in _PROVIDER_IDS:
                info = None
            else:
                info = self._match_model_only(snapshot, model)
        if info is None:
            logger.warning(
                "no genai-prices price for %s model %r; its records carry no cost (counted as cost unknown)",
                provider,
                model,
            )
            return None
        return _Entry(info)

    @staticmethod
    def _match_model_only(snapshot: DataSnapshot, model: str) -> ModelInfo | None:
        try:
            return snapshot.find_provider_model(model, None, None, None)[1]
        except LookupError:
            return None

    def _exact(self, provider: str, model: str, price: ModelPrice, usage: Usage) -> Cost | None:
        from genai_prices.types import Usage as GenAIUsage

        values: dict[str, Any] = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "input_audio_tokens": usage.audio_input_tokens,
            "output_audio_tokens": usage.audio_output_tokens,
            "output_reasoning_tokens": usage.reasoning_tokens,
        }
        try:
            result = price.calc_price(GenAIUsage(**{k: v for k, v in values.items() if v is not None}))
        except Exception:  # inconsistent counts from a provider must not stop the export worker
            if (provider, model) not in self._unpriceable:
                self._unpriceable.add((provider, model))
                logger.warning("genai-prices could not price %s model %r for usage %r", provider, model, usage)
            return None
        input_usd = float(result["input_price"])
        output_usd = float(result["output_price"])
        total_usd = float(result["total_price"])
        # calc_price does not split cache reads/writes out of input; they stay inside input_usd.
        return Cost(
            total_usd=total_usd,
            input_usd=input_usd,
            output_usd=output_usd,
            other_usd=max(0.0, total_usd - input_usd - output_usd),
            source=_SOURCE,
        )
