"""The user's own price table (``pricing.overrides``): custom models, fine-tunes, negotiated prices.

The table maps a provider kind (or ``"*"``, any provider) to models and their prices in USD per
million tokens::

    openai:
      ft:gpt-4o-mini-2024-07-18:acme::9xYz: {input: 0.30, output: 1.20, cache_read: 0.15}
    anthropic:
      claude-sonnet-4: {input: 2.70, output: 13.50, cache_read: 0.27, cache_write: 3.375,
                        cache_write_1h: 5.40, aliases: [sonnet]}

A requested model is matched by provider and by name: the name as given, then its normalised forms
(Bedrock region/vendor prefixes and version suffixes, date suffixes, ``-latest``; see
:func:`~._match.model_candidates`), each against the provider's entries and then the ``"*"`` ones.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec

from llm_obs_middleware.config.extras import load_yaml
from llm_obs_middleware.config.settings import PROVIDER_KINDS, PriceOverride
from llm_obs_middleware.errors import ConfigurationError, MissingDependencyError
from llm_obs_middleware.pricing._match import canonical_provider, model_candidates
from llm_obs_middleware.pricing._rates import PER_MTOK, Rates
from llm_obs_middleware.records.schema import Cost, Usage

__all__ = ["OverridePriceSource", "load_table", "parse_table"]

SOURCE: Final = "overrides"
ANY_PROVIDER: Final = "*"
_MISSING: Final = object()
_MAX_CACHED: Final = 4096

PriceTable = dict[str, dict[str, PriceOverride]]


def parse_table(data: Any, where: str) -> PriceTable:
    """Validate a raw ``{provider: {model: prices}}`` mapping; errors name the entry at fault."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{where}: expected a mapping of provider -> model -> prices")
    table: PriceTable = {}
    for provider, models in data.items():
        kind = canonical_provider(str(provider))
        if kind != ANY_PROVIDER and kind not in PROVIDER_KINDS:
            raise ConfigurationError(
                f"{where}.{provider}: unknown provider kind (use one of {', '.join(PROVIDER_KINDS)}, or '*' for any)"
            )
        if not isinstance(models, Mapping):
            raise ConfigurationError(f"{where}.{provider}: expected a mapping of model -> prices")
        for model, fields in models.items():
            try:
                entry = msgspec.convert(fields, PriceOverride)
            except (msgspec.ValidationError, ConfigurationError) as exc:
                # msgspec says "Expected `float`, got `str` - at `$.input`": name the entry instead of "$".
                text, _, at = str(exc).partition(" - at `$")
                raise ConfigurationError(f"{where}.{provider}.{model}{at.rstrip('`')}: {text}") from None
            table.setdefault(kind, {})[str(model)] = entry
    return table


def load_table(path: str | os.PathLike[str]) -> PriceTable:
    """Read a price table from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"pricing.overrides: cannot read price file {file}: {exc.strerror}") from None
    suffix = file.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = load_yaml(text) or {}
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigurationError(f"price file {file}: unknown format {suffix!r} (use .yaml, .toml or .json)")
    except (ConfigurationError, MissingDependencyError):
        raise
    except Exception as exc:  # each parser has its own error type; all mean the same to the user
        raise ConfigurationError(f"price file {file} is not valid {suffix.lstrip('.').upper()}: {exc}") from None
    return parse_table(data, str(file))


class _Match(NamedTuple):
    provider: str
    """The table's provider key (a provider kind or ``"*"``)."""
    model: str
    """The table's model name (an alias may have matched)."""
    matched_as: str
    """The form of the requested name that matched."""
    rates: Rates


class OverridePriceSource:
    """Prices from a user price table; implements :class:`~.base.PriceSource`.

    Args:
        table: ``{provider kind or "*": {model: PriceOverride}}`` (see :func:`parse_table`).
        origin: where the table came from, for ``llm-obs price`` (a file path or "inline table").
        max_cached: ``(provider, model)`` lookups kept at most; the cache is emptied past it.

    Raises:
        ConfigurationError: two entries of one provider share a name or alias.
    """

    def __init__(
        self,
        table: Mapping[str, Mapping[str, PriceOverride]],
        *,
        origin: str = "inline table",
        max_cached: int = _MAX_CACHED,
    ) -> None:
        self.origin = origin
        self._index: dict[tuple[str, str], tuple[str, str, Rates]] = {}
        self._by_name: dict[str, tuple[str, str, Rates]] = {}  # for lookups naming no provider
        for provider, models in table.items():
            for model, entry in models.items():
                rates = Rates(
                    input=entry.input * PER_MTOK,
                    output=entry.output * PER_MTOK,
                    cache_read=None if entry.cache_read is None else entry.cache_read * PER_MTOK,
                    cache_write=None if entry.cache_write is None else entry.cache_write * PER_MTOK,
                    cache_write_1h=None if entry.cache_write_1h is None else entry.cache_write_1h * PER_MTOK,
                    per_request=entry.per_request,
                )
                for name in (model, *entry.aliases):
                    key = (provider, name.strip().lower())
                    if key in self._index and self._index[key][1] != model:
                        raise ConfigurationError(
                            f"{origin}: {provider} model name {name!r} is given to both "
                            f"{self._index[key][1]!r} and {model!r}"
                        )
                    self._index[key] = (provider, model, rates)
                    self._by_name.setdefault(key[1], (provider, model, rates))
        self._cache: dict[tuple[str, str], _Match | None] = {}
        self._max_cached = max_cached

    @classmethod
    def from_config(cls, overrides: str | Mapping[str, Any] | None) -> OverridePriceSource | None:
        """The source for ``pricing.overrides`` (a path or an inline table); ``None`` when unset."""
        if overrides is None:
            return None
        if isinstance(overrides, str):
            return cls(load_table(overrides), origin=f"override file {Path(overrides).expanduser()}")
        return cls(parse_table(overrides, "pricing.overrides"), origin="pricing.overrides (inline table)")

    def price(self, provider: str, model: str, usage: Usage, *, timestamp: float | None = None) -> Cost | None:
        """USD cost of ``usage`` at the table's prices; ``None`` when the model is not in the table."""
        found = self._cache.get((provider, model), _MISSING)
        if found is _MISSING:
            found = self._resolve(provider, model)
        if found is None:
            return None
        assert isinstance(found, _Match)
        return found.rates.cost(usage, SOURCE)

    def knows(self, provider: str, model: str) -> bool:
        """Whether the table prices the model (resolved once and cached, misses too)."""
        found = self._cache.get((provider, model), _MISSING)
        if found is _MISSING:
            found = self._resolve(provider, model)
        return found is not None

    def describe(self, provider: str, model: str) -> str | None:
        """Which entry prices the model, for people (``llm-obs price``); ``None`` when none does."""
        if not self.knows(provider, model):
            return None
        found = self._cache[(provider, model)]
        assert found is not None
        via = f", matched as {found.matched_as!r}" if found.matched_as != model.strip().lower() else ""
        return f"{self.origin}: provider {found.provider!r}, model {found.model!r}{via}"

    def _resolve(self, provider: str, model: str) -> _Match | None:
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
        found = self._cache[(provider, model)] = self._lookup(provider, model)
        return found

    def _lookup(self, provider: str, model: str) -> _Match | None:
        kind = canonical_provider(provider)
        for candidate in model_candidates(model):
            if kind in ("", ANY_PROVIDER):
                hit = self._by_name.get(candidate)
            else:
                hit = self._index.get((kind, candidate)) or self._index.get((ANY_PROVIDER, candidate))
            if hit is not None:
                return _Match(hit[0], hit[1], candidate, hit[2])
        return None
