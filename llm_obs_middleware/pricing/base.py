"""The price-source interface: how a record's USD cost is found."""

from __future__ import annotations

from typing import Protocol

from llm_obs_middleware.records.schema import Cost, Usage

__all__ = ["PriceSource"]


class PriceSource(Protocol):
    """Prices usage for a provider + model. Returns ``None`` when the model's price is unknown.

    Implementations resolve a model's price once and cache it (misses too), so pricing a record
    costs microseconds. They run in the export worker, never on the request path. ``timestamp`` is
    the request's start (Unix seconds; ``None``: now), for prices that depend on the date or the
    time of day (announced price changes, off-peak discounts).
    """

    def price(self, provider: str, model: str, usage: Usage, *, timestamp: float | None = None) -> Cost | None: ...
