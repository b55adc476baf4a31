"""Choosing where a request goes: key pools, deployments, health and retry timing.

In-memory, per process, and cheap on the request path: picking a key or a deployment is a short
loop over a handful of objects, with no I/O and no locks (asyncio runs one request step at a time).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["DeploymentState", "KeyPool", "KeyState", "backoff_delay", "is_retryable_status", "order_deployments"]

_EWMA_ALPHA = 0.3
_WINDOW = 50  # recent outcomes kept per deployment for its error rate
# Statuses worth another attempt (elsewhere or later): rate limits, overload, upstream trouble.
# 529 is Anthropic's "overloaded"; 401/403 are retried on another key while this one cools down.
_RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


def is_retryable_status(status: int) -> bool:
    return status in _RETRYABLE


def backoff_delay(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and Jitter")."""
    return rng.uniform(0, min(cap, base * (2**retry)))


class KeyState:
    """One provider key: its auth headers (precomputed) and health. The secret stays in ``headers``."""

    __slots__ = (
        "cooldown_until",
        "cooldowns",
        "failures",
        "headers",
        "in_flight",
        "name",
        "rejected",
        "retry_after",
        "served",
        "weight",
    )

    def __init__(self, name: str, headers: list[tuple[bytes, bytes]], weight: float = 1.0) -> None:
        self.name = name
        self.headers = headers
        self.weight = weight
        self.cooldown_until = 0.0
        self.retry_after = False  # the cooldown came from the provider's own Retry-After
        self.rejected = False  # the cooldown came from a 401/403: the provider refused the key
        self.cooldowns = 0
        self.in_flight = 0
        self.served = 0
        self.failures = 0

    def usable(self, now: float) -> bool:
        return self.cooldown_until <= now

    def snapshot(self, now: float) -> dict[str, Any]:
        state = "healthy" if self.cooldown_until <= now else "rejected" if self.rejected else "cooling_down"
        return {
            "key": self.name,
            "state": state,
            "cooling_down_for_s": round(max(0.0, self.cooldown_until - now), 3),
            "cooling_down_until": _wall_clock(self.cooldown_until, now),
            "in_flight": self.in_flight,
            "served": self.served,
            "failures": self.failures,
            "cooldowns": self.cooldowns,
        }


class KeyPool:
    """A provider's keys, picked by ``weighted`` random, ``round_robin`` or ``least_busy``.

    Key health changes go through :meth:`cool_down`, so the common case (every key healthy) is known
    without looking at each key: a pick is then O(log n) whatever the pool size. No key is out for
    good: a key the provider refused (401/403) cools down too, longer, and is then tried again.
    """

    __slots__ = ("_cum_weights", "_healthy_after", "_next", "keys", "strategy")

    def __init__(self, keys: Sequence[KeyState], strategy: str = "weighted") -> None:
        self.keys = list(keys)
        self.strategy = strategy
        self._next = 0
        self._healthy_after = 0.0  # after this instant no key is cooling down
        total = 0.0
        self._cum_weights = []
        for key in self.keys:
            total += key.weight
            self._cum_weights.append(total)

    def cool_down(self, key: KeyState, until: float, *, retry_after: bool = False, rejected: bool = False) -> None:
        key.cooldown_until = until
        key.retry_after = retry_after
        key.rejected = rejected
        key.cooldowns += 1
        self._healthy_after = max(self._healthy_after, until)

    def any_usable(self, now: float) -> bool:
        if now >= self._healthy_after:
            return True
        return any(key.usable(now) for key in self.keys)

    def pick(self, now: float, rng: random.Random, exclude: Sequence[KeyState] = ()) -> KeyState | None:
        """A usable key not in ``exclude`` (``None``: every key is cooling down or excluded)."""
        if not exclude and now >= self._healthy_after:
            if len(self.keys) == 1:  # the common pool: no draw to make
                return self.keys[0]
            if self.strategy == "weighted":
                return rng.choices(self.keys, cum_weights=self._cum_weights)[0]
            if self.strategy == "round_robin":
                self._next += 1
                return self.keys[self._next % len(self.keys)]
        usable = [key for key in self.keys if key.usable(now) and key not in exclude]
        if not usable:
            return None
        if len(usable) == 1:
            return usable[0]
        if self.strategy == "round_robin":
            self._next += 1
            return usable[self._next % len(usable)]
        if self.strategy == "least_busy":
            return min(usable, key=lambda key: key.in_flight)
        return rng.choices(usable, weights=[key.weight for key in usable])[0]

    def soonest(self, exclude: Sequence[KeyState] = ()) -> KeyState | None:
        """The key not in ``exclude`` whose cooldown ends first (the half-open probe when none is usable)."""
        candidates = [key for key in self.keys if key not in exclude]
        return min(candidates, key=_cooldown_end) if candidates else None

    def earliest_retry_after_end(self) -> float | None:
        """When the first key cooling down on the provider's ``Retry-After`` may be used again."""
        ends = [key.cooldown_until for key in self.keys if key.retry_after]
        return min(ends) if ends else None


def _cooldown_end(key: KeyState) -> float:
    return key.cooldown_until


class DeploymentState:
    """One deployment of a model alias: where it goes, its keys, and how it has been doing lately."""

    __slots__ = (
        "cooldown_until",
        "ewma_latency_s",
        "ewma_ttft_s",
        "in_flight",
        "model",
        "name",
        "outcomes",
        "provider",
        "weight",
    )

    def __init__(self, name: str, provider: Any, model: str, weight: float) -> None:
        self.name = name
        self.provider = provider  # the router's precomputed provider (base URL, adapter, key pool)
        self.model = model
        self.weight = weight
        self.cooldown_until = 0.0
        self.in_flight = 0
        self.ewma_ttft_s: float | None = None
        self.ewma_latency_s: float | None = None
        self.outcomes: deque[bool] = deque(maxlen=_WINDOW)

    def usable(self, now: float) -> bool:
        return self.cooldown_until <= now and bool(self.provider.pool.any_usable(now))

    def record(self, ok: bool, latency_s: float | None, ttft_s: float | None = None) -> None:
        self.outcomes.append(ok)
        if latency_s is not None:
            self.ewma_latency_s = _ewma(self.ewma_latency_s, latency_s)
        if ttft_s is not None:
            self.ewma_ttft_s = _ewma(self.ewma_ttft_s, ttft_s)

    def error_rate(self) -> float:
        return (len(self.outcomes) - sum(self.outcomes)) / len(self.outcomes) if self.outcomes else 0.0

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "deployment": self.name,
            "provider": self.provider.name,
            "model": self.model,
            "weight": self.weight,
            "healthy": self.usable(now),
            "cooling_down_for_s": round(max(0.0, self.cooldown_until - now), 3),
            "cooling_down_until": _wall_clock(self.cooldown_until, now),
            "in_flight": self.in_flight,
            "recent_error_rate": round(self.error_rate(), 4),
            "recent_requests": len(self.outcomes),
            "ewma_latency_s": self.ewma_latency_s,
            "ewma_ttft_s": self.ewma_ttft_s,
            "keys": [key.snapshot(now) for key in self.provider.pool.keys],
        }


def order_deployments(
    deployments: Sequence[DeploymentState],
    strategy: str,
    rng: random.Random,
    now: float | None = None,
    cum_weights: Sequence[float] | None = None,
) -> list[DeploymentState]:
    """The order to try deployments in: usable ones by strategy first, the others after (as a last resort).

    Under ``weighted`` only the first choice is drawn by weight (most requests stop there); the rest
    keep config order (the router skips the unusable ones when it gets there). The draw is over every
    deployment and is kept when it falls on a usable one; otherwise it is redrawn among the usable
    ones, which gives exactly their weighted share. So the common case costs one draw (O(log n) with
    the precomputed cumulative ``cum_weights``) and one health check, whatever the number of
    deployments (issue 7: no routing cost that grows with the table).
    """
    now = time.monotonic() if now is None else now
    if strategy == "weighted" and len(deployments) > 1:
        first = rng.choices(deployments, cum_weights=cum_weights or _cumulative(deployments))[0]
        if first.usable(now):
            order = list(deployments)
            order.remove(first)  # C-level list operations: well under a microsecond for 50
            order.insert(0, first)
            return order
    elif strategy in _SORT_KEYS:
        # Same idea: sort them all, and check only the winner's health (the common case).
        order = sorted(deployments, key=_SORT_KEYS[strategy])
        if order[0].usable(now):
            return order
    usable: list[DeploymentState] = []
    rest: list[DeploymentState] = []
    for deployment in deployments:
        (usable if deployment.usable(now) else rest).append(deployment)
    if strategy == "weighted" and len(usable) > 1:
        first = rng.choices(usable, cum_weights=_cumulative(usable))[0]
        usable = [first, *(d for d in usable if d is not first)]
    elif strategy in _SORT_KEYS:
        usable.sort(key=_SORT_KEYS[strategy])
    return usable + rest


def _by_ttft(deployment: DeploymentState) -> float:
    # Untried deployments first (to learn their latency), then lowest recent time to first token.
    return -1.0 if deployment.ewma_ttft_s is None else deployment.ewma_ttft_s


def _by_in_flight(deployment: DeploymentState) -> float:
    return deployment.in_flight


_SORT_KEYS = {"latency": _by_ttft, "least_busy": _by_in_flight}


def _cumulative(deployments: Sequence[DeploymentState]) -> list[float]:
    total = 0.0
    cumulative = []
    for deployment in deployments:
        total += deployment.weight
        cumulative.append(total)
    return cumulative


def _wall_clock(until: float, now: float) -> str | None:
    """A monotonic instant still ahead of ``now`` as UTC ISO 8601 (``None`` when already past).

    Cooldowns are clamped when set (``routing.max_retry_after_s``); an instant no calendar can show
    still reads ``None`` rather than failing ``/metrics`` and ``/health/deployments``.
    """
    if until <= now:
        return None
    try:
        return datetime.fromtimestamp(time.time() + (until - now), UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


def _ewma(previous: float | None, value: float) -> float:
    return value if previous is None else previous + _EWMA_ALPHA * (value - previous)
