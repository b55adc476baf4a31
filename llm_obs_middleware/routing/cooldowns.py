"""Cooldowns: what a failed attempt does to its key and deployment, and where a request goes when every
candidate is cooling down.

Cooldowns steer traffic; they never refuse it (issue 13). A key the provider refused (401/403) cools
down longer than a rate-limited one, but is tried again; a provider's ``Retry-After`` is clamped to
``routing.max_retry_after_s``; and when every deployment and key of a model (and of its fallbacks) is
cooling down, the one that recovers soonest takes the request (a half-open probe), so the client gets
the provider's real answer instead of a 503 of ours.
"""

from __future__ import annotations

import time
from datetime import UTC
from email.utils import parsedate_to_datetime

from llm_obs_middleware.config.routing import RoutingConfig
from llm_obs_middleware.routing.balancing import DeploymentState, KeyPool, KeyState
from llm_obs_middleware.routing.targets import AliasRoute

__all__ = ["cooldown_wait", "deployment_failed", "key_failed", "probe", "retry_after_seconds", "usable_after"]

_CONSECUTIVE_FAILURES_TO_COOL = 3


def probe(order: list[DeploymentState], failed_keys: list[KeyState]) -> tuple[DeploymentState, KeyState] | None:
    """The deployment and key (not tried by this request yet) whose cooldown ends first."""
    best: tuple[DeploymentState, KeyState] | None = None
    best_ready = 0.0
    for deployment in order:
        key = deployment.provider.pool.soonest(failed_keys)
        if key is None:
            continue
        ready = max(deployment.cooldown_until, key.cooldown_until)
        if best is None or ready < best_ready:
            best, best_ready = (deployment, key), ready
    return best


def usable_after(chain: list[AliasRoute], index: int) -> bool:
    """Whether a fallback after ``chain[index]`` has a deployment that can take a request now."""
    now = time.monotonic()
    return any(deployment.usable(now) for route in chain[index + 1 :] for deployment in route.deployments)


def cooldown_wait(order: list[DeploymentState]) -> float | None:
    """Seconds until a key the provider asked us to wait for (``Retry-After``) is usable again, if any."""
    now = time.monotonic()
    ends = []
    for deployment in order:
        end = deployment.provider.pool.earliest_retry_after_end()
        if end is not None:
            ends.append(max(end, deployment.cooldown_until))
    return max(0.0, min(ends) - now) if ends else None


def key_failed(policy: RoutingConfig, pool: KeyPool, key: KeyState, status: int, retry_after: str | None) -> None:
    """A key's answer was 401/403 (cool down for ``auth_cooldown_s``) or 429 (``Retry-After``, clamped)."""
    key.failures += 1
    if status in (401, 403):
        # Longer than a 429's, never for good: the refusal may be one request's doing (a bad header).
        pool.cool_down(key, time.monotonic() + policy.auth_cooldown_s, rejected=True)
    elif status == 429:
        seconds = retry_after_seconds(retry_after)
        if seconds is None:
            pool.cool_down(key, time.monotonic() + policy.cooldown_s)
        else:  # clamped: a Retry-After of 1e9, inf or year 9999 must not cool the key forever
            limit = policy.max_retry_after_s
            pool.cool_down(key, time.monotonic() + min(seconds, limit), retry_after=seconds <= limit)


def deployment_failed(policy: RoutingConfig, deployment: DeploymentState, latency_s: float | None) -> None:
    """A 5xx or no answer: after three in a row the deployment cools down for ``cooldown_s``."""
    deployment.record(False, latency_s)
    recent = list(deployment.outcomes)[-_CONSECUTIVE_FAILURES_TO_COOL:]
    if len(recent) == _CONSECUTIVE_FAILURES_TO_COOL and not any(recent):
        deployment.cooldown_until = time.monotonic() + policy.cooldown_s


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds, or an HTTP date (RFC 9110 section 10.2.3);
    ``None`` when absent or unreadable (``nan`` included; ``inf`` is returned for the caller to clamp).
    ``now``: Unix time (tests)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    return seconds if seconds >= 0 else None
