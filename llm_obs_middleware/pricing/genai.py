"""USD prices from the maintained `genai-prices <https://github.com/pydantic/genai-prices>`_ data.

A ``(provider, model)`` pair is resolved against the genai-prices snapshot once and cached, misses
included, so pricing a record is a dict lookup and a few float multiplications: the uncached
genai-prices lookup costs ~57 µs (``benchmarks/pricing_bench.py``), far too much per record. The data
module takes a few hundred milliseconds to import, so it is imported lazily, by :meth:`preload`
(the gateway calls it at start-up) or on the first record.

Each genai-prices ``ModelPrice`` is reduced to :class:`~._rates.Rates`: input, cache read, cache
write (five-minute and one-hour), output and per-request prices, with the long-context tiers
(Gemini, Anthropic) precomputed, so the cost keeps its per-component split. Prices we have no usage
field for beyond those (audio tokens, a separate reasoning price) fall back to genai-prices' own
``ModelPrice.calc_price`` when the usage carries such tokens: correct before fast.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from llm_obs_middleware.pricing._match import UNPRICED_KINDS, canonical_provider, model_candidates
from llm_obs_middleware.pricing._rates import PER_MTOK, Rates
from llm_obs_middleware.records.schema import Cost, Usage

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, ModelPrice, Provider

__all__ = ["GenAIPricesSource"]

logger = logging.getLogger("llm_obs_middleware.pricing")

SOURCE: Final = "genai-prices"
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
# The ModelPrice keys :class:`Rates` holds, in its constructor's order.
_RATE_KEYS: Final = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok")
_AUDIO_PRICE_KEYS: Final = ("input_audio_mtok", "output_audio_mtok", "cache_audio_read_mtok")
# Bound the cache: model names come from clients, so a misbehaving one could send endless names.
_MAX_CACHED: Final = 4096


def _rates(price: ModelPrice) -> Rates:
    """Reduce one ModelPrice to per-token floats, one :class:`Rates` per long-context tier."""
    from genai_prices.types import TieredPrices

    values = [getattr(price, key, None) for key in _RATE_KEYS]
    requests_kcount = getattr(price, "requests_kcount", None)
    per_request = float(requests_kcount) / 1000 if requests_kcount is not None else 0.0

    def at(threshold: int | None) -> dict[str, Any]:
        # A component's price for requests above ``threshold``: its highest tier starting at or below it.
        rates: list[float | None] = []
        for value in values:
            if isinstance(value, TieredPrices):
                chosen = value.base
                for tier in value.tiers:  # ascending
                    if threshold is not None and tier.start <= threshold:
                        chosen = tier.price
                value = chosen
            rates.append(None if value is None else float(value) * PER_MTOK)
        input_rate, output_rate, cache_read, cache_write, cache_write_1h = rates
        return {
            "input": input_rate or 0.0,
            "output": output_rate or 0.0,
            "cache_read": cache_read,
            "cache_write": cache_write,
            "cache_write_1h": cache_write_1h,
            "per_request": per_request,
        }

    thresholds = sorted({tier.start for value in values if isinstance(value, TieredPrices) for tier in value.tiers})
    return Rates(**at(None), tiers=[(threshold, Rates(**at(threshold))) for threshold in thresholds])


class _Priced:
    """A ModelPrice, its rates, and which token kinds need genai-prices' exact calculation."""

    __slots__ = ("audio_priced", "price", "rates", "reasoning_priced")

    def __init__(self, price: ModelPrice) -> None:
        self.price = price
        self.rates = _rates(price)
        self.audio_priced = any(getattr(price, key, None) is not None for key in _AUDIO_PRICE_KEYS)
        self.reasoning_priced = getattr(price, "output_reasoning_mtok", None) is not None


class _Entry:
    """A resolved model: its genai-prices provider and ModelInfo, and the prices seen so far."""

    __slots__ = ("fixed", "model", "priced", "provider")

    def __init__(self, provider: Provider, model: ModelInfo) -> None:
        self.provider = provider
        self.model = model
        # Time-conditional prices (off-peak discounts, announced price changes) are selected per
        # record, at the request's time; the ModelPrice objects live as long as the snapshot, so
        # their rates are cached by identity.
        self.fixed: _Priced | None = None
        self.priced: dict[int, _Priced] = {}
        if not isinstance(model.prices, list):
            self.fixed = _Priced(model.prices)

    def current(self, timestamp: float | None) -> _Priced:
        if self.fixed is not None:
            return self.fixed
        when = datetime.now(tz=UTC) if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC)
        price = self.model.get_prices(when)
        found = self.priced.get(id(price))
        if found is None:
            found = self.priced[id(price)] = _Priced(price)
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

    def price(self, provider: str, model: str, usage: Usage, *, timestamp: float | None = None) -> Cost | None:
        """USD cost of ``usage`` on ``provider``'s ``model`` at ``timestamp`` (Unix seconds, default now).

        ``None`` when the price is unknown (a warning is logged once per model).
        """
        entry = self._cache.get((provider, model), _MISSING)
        if entry is _MISSING:
            entry = self._resolve(provider, model, warn=True)
        if entry is None:
            return None
        assert isinstance(entry, _Entry)
        priced = entry.current(timestamp)
        if (priced.audio_priced and (usage.audio_input_tokens or usage.audio_output_tokens)) or (
            priced.reasoning_priced and usage.reasoning_tokens
        ):
            return self._exact(provider, model, priced.price, usage)
        return priced.rates.cost(usage, SOURCE)

    def knows(self, provider: str, model: str) -> bool:
        """Whether the data has a price for the model (resolved once and cached; no warning on a miss)."""
        entry = self._cache.get((provider, model), _MISSING)
        if entry is _MISSING:
            entry = self._resolve(provider, model, warn=False)
        return entry is not None

    def describe(self, provider: str, model: str) -> str | None:
        """Where the model's price comes from, for people (``llm-obs price``); ``None`` when unknown."""
        if not self.knows(provider, model):
            return None
        entry = self._cache.get((provider, model))
        assert isinstance(entry, _Entry)
        from importlib.metadata import version

        name = f" ({entry.model.name})" if entry.model.name else ""
        where = f"provider {entry.provider.id!r}, model {entry.model.id!r}{name}"
        return f"genai-prices {version('genai-prices')} data: {where}"

    def _resolve(self, provider: str, model: str, *, warn: bool) -> _Entry | None:
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
            self._unpriceable.clear()
        entry = self._lookup(provider, model)
        self._cache[(provider, model)] = entry
        if entry is None and warn and canonical_provider(provider) not in UNPRICED_KINDS:
            logger.warning(
                "no genai-prices price for %s model %r; its records carry no cost (counted as cost unknown)",
                provider,
                model,
            )
        return entry

    def _lookup(self, provider: str, model: str) -> _Entry | None:
        kind = canonical_provider(provider)
        if kind in UNPRICED_KINDS:
            logger.info("not pricing %s model %r: self-hosted models have no list price", provider, model)
            return None
        self.preload()
        snapshot = self._snapshot
        assert snapshot is not None
        # A provider name we do not know may still be a genai-prices id ("openrouter", "together").
        provider_id = _PROVIDER_IDS.get(kind, kind) if kind else None  # "": any provider (llm-obs price)
        found = self._find(snapshot, model, provider_id)
        if found is None and provider_id is not None and kind not in _PROVIDER_IDS:
            found = self._find(snapshot, model, None)
        return None if found is None else _Entry(*found)

    @staticmethod
    def _find(snapshot: DataSnapshot, model: str, provider_id: str | None) -> tuple[Provider, ModelInfo] | None:
        # genai-prices matches many spellings itself; our normalised forms (Bedrock prefixes, dates)
        # are tried only when the name as given is not found.
        for candidate in model_candidates(model):
            try:
                return snapshot.find_provider_model(candidate, None, provider_id, None)
            except LookupError:
                continue
        return None

    def _exact(self, provider: str, model: str, price: ModelPrice, usage: Usage) -> Cost | None:
        from genai_prices.types import Usage as GenAIUsage

        values: dict[str, Any] = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens,
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
            source=SOURCE,
        )
