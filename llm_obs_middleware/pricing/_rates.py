"""USD-per-token rates of one model and the arithmetic that turns usage into a :class:`Cost`.

Both price sources (genai-prices data and the user's override table) reduce a model's price to a
:class:`Rates` once, when the model is first resolved; pricing a record is then a handful of float
multiplications (see ``benchmarks/pricing_bench.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_obs_middleware.records.schema import Cost, Usage

__all__ = ["PER_MTOK", "Rates"]

PER_MTOK = 1e-6
"""Prices are quoted in USD per million tokens; rates are kept per token."""


class Rates:
    """One model's price, per token, split the way :class:`Cost` is.

    A component without a price of its own falls back as the providers bill it: cache reads and
    writes at the input rate, one-hour cache writes at the (five-minute) cache-write rate.

    Args:
        input, output, cache_read, cache_write, cache_write_1h: USD per token (``None``: fall back).
        per_request: USD added once per request (e.g. search-augmented models).
        tiers: ``(threshold, rates)`` pairs, ascending. A request whose input tokens exceed a
            threshold pays that tier's rates on ALL its tokens (the "cliff" tiers of Gemini and
            Anthropic long-context prices, as genai-prices models them); the last tier exceeded wins.
    """

    __slots__ = ("cache_read", "cache_write", "cache_write_1h", "input", "output", "per_request", "tiers")

    def __init__(
        self,
        *,
        input: float,
        output: float,
        cache_read: float | None = None,
        cache_write: float | None = None,
        cache_write_1h: float | None = None,
        per_request: float = 0.0,
        tiers: Sequence[tuple[int, Rates]] = (),
    ) -> None:
        self.input = input
        self.output = output
        self.cache_read = input if cache_read is None else cache_read
        self.cache_write = input if cache_write is None else cache_write
        self.cache_write_1h = self.cache_write if cache_write_1h is None else cache_write_1h
        self.per_request = per_request
        self.tiers: tuple[tuple[int, Rates], ...] = tuple(sorted(tiers, key=lambda tier: tier[0]))

    def for_input(self, input_tokens: int) -> Rates:
        """The rates that apply to a request with ``input_tokens`` input tokens."""
        chosen = self
        for threshold, rates in self.tiers:
            if input_tokens > threshold:
                chosen = rates
            else:
                break
        return chosen

    def cost(self, usage: Usage, source: str) -> Cost:
        """Price ``usage``; ``input_tokens`` includes cached tokens and ``output_tokens`` reasoning ones."""
        input_tokens = usage.input_tokens or 0
        rates = self.for_input(input_tokens) if self.tiers else self
        cache_read = usage.cache_read_tokens or 0
        cache_write = usage.cache_write_tokens or 0
        write_1h = min(usage.cache_write_1h_tokens or 0, cache_write)
        uncached = max(0, input_tokens - cache_read - cache_write)
        if usage.billed_input_tokens is not None:
            # The provider bills other counts than it reports (Cohere billed_units): they are the whole basis.
            uncached, cache_read, cache_write, write_1h = usage.billed_input_tokens, 0, 0, 0
        input_usd = uncached * rates.input
        cache_read_usd = cache_read * rates.cache_read
        cache_write_usd = (cache_write - write_1h) * rates.cache_write + write_1h * rates.cache_write_1h
        billed_output = usage.billed_output_tokens
        output_usd = (usage.output_tokens or 0 if billed_output is None else billed_output) * rates.output
        other_usd = rates.per_request
        return Cost(
            total_usd=input_usd + cache_read_usd + cache_write_usd + output_usd + other_usd,
            input_usd=input_usd,
            cache_read_usd=cache_read_usd,
            cache_write_usd=cache_write_usd,
            output_usd=output_usd,
            other_usd=other_usd,
            source=source,
        )
