"""The text ``llm-obs price`` prints: a cost split by component, with the rates applied and their source."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_obs_middleware.records.schema import Cost, Usage

__all__ = ["format_breakdown"]


def _rate(usd: float, tokens: int) -> str:
    return f"{usd / tokens * 1e6:.4f}" if tokens else "-"


def format_breakdown(model: str, provider: str, described: str, usage: Usage, cost: Cost) -> str:
    """One line per cost component: tokens, the effective USD per million tokens, USD."""
    input_tokens = usage.input_tokens or 0
    cache_read = usage.cache_read_tokens or 0
    cache_write = usage.cache_write_tokens or 0
    output = usage.output_tokens or 0
    uncached = max(0, input_tokens - cache_read - cache_write)
    rows: list[tuple[str, str, str, str]] = [
        ("input (uncached)", f"{uncached:,}", _rate(cost.input_usd, uncached), f"{cost.input_usd:.8f}"),
        ("cache read", f"{cache_read:,}", _rate(cost.cache_read_usd, cache_read), f"{cost.cache_read_usd:.8f}"),
        ("cache write", f"{cache_write:,}", _rate(cost.cache_write_usd, cache_write), f"{cost.cache_write_usd:.8f}"),
    ]
    if usage.cache_write_1h_tokens:
        rows.append(("  of which 1h TTL", f"{usage.cache_write_1h_tokens:,}", "", ""))
    rows.append(("output", f"{output:,}", _rate(cost.output_usd, output), f"{cost.output_usd:.8f}"))
    if usage.reasoning_tokens:
        rows.append(("  of which reasoning", f"{usage.reasoning_tokens:,}", "", ""))
    rows.append(("other (per request)", "", "", f"{cost.other_usd:.8f}"))
    rows.append(("total", f"{input_tokens + output:,}", "", f"{cost.total_usd:.8f}"))
    lines = [
        f"model     {model} (provider: {provider or 'any'})",
        f"price     {described}",
        "",
        f"{'component':<22}{'tokens':>12}{'USD/MTok':>12}{'USD':>16}",
    ]
    lines.extend(f"{name:<22}{tokens:>12}{rate:>12}{usd:>16}".rstrip() for name, tokens, rate, usd in rows)
    return "\n".join(lines) + "\n"
