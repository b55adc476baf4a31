"""Key and deployment selection: strategies, cooldowns, half-open probes, backoff."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from llm_obs_middleware.routing.balancing import DeploymentState, KeyPool, KeyState, backoff_delay, order_deployments
from llm_obs_middleware.routing.middleware import retry_after_seconds


def keys(*weights: float) -> list[KeyState]:
    return [KeyState(f"k{i}", [], weight) for i, weight in enumerate(weights)]


def deployment(name: str, pool: KeyPool, weight: float = 1.0) -> DeploymentState:
    return DeploymentState(name, SimpleNamespace(name="p", pool=pool), "m", weight)


def test_weighted_keys_follow_their_weights() -> None:
    pool = KeyPool(keys(1, 3))
    rng = random.Random(3)
    picks = Counter(pool.pick(0.0, rng).name for _ in range(4000))  # type: ignore[union-attr]
    assert 0.70 <= picks["k1"] / 4000 <= 0.80


def test_round_robin_alternates_and_least_busy_prefers_idle_keys() -> None:
    pool = KeyPool(keys(1, 1, 1), "round_robin")
    rng = random.Random(0)
    names = [pool.pick(0.0, rng).name for _ in range(6)]  # type: ignore[union-attr]
    assert sorted(Counter(names).values()) == [2, 2, 2] and names[0] != names[1]
    busy = KeyPool(keys(1, 1), "least_busy")
    busy.keys[0].in_flight = 5
    assert busy.pick(0.0, rng) is busy.keys[1]


def test_cooling_and_rejected_keys_are_skipped_until_they_recover() -> None:
    pool = KeyPool(keys(1, 1))
    rng = random.Random(1)
    first, second = pool.keys
    pool.cool_down(first, until=10.0, retry_after=True)
    assert {pool.pick(5.0, rng) for _ in range(20)} == {second}
    assert pool.earliest_retry_after_end() == 10.0
    pool.cool_down(second, until=300.0, rejected=True)  # a 401/403: longer, but not for good
    assert pool.pick(5.0, rng) is None and not pool.any_usable(5.0)
    assert pool.soonest() is first and pool.soonest([first]) is second, "the half-open probe's choice"
    assert pool.pick(10.0, rng) is first, "the cooldown ends on time"
    assert second.snapshot(10.0)["state"] == "rejected" and first.snapshot(5.0)["state"] == "cooling_down"
    assert pool.pick(300.0, rng) in (first, second) and second.snapshot(300.0)["state"] == "healthy"


def test_latency_strategy_prefers_untried_then_fastest() -> None:
    slow, fast, new = (deployment(name, KeyPool(keys(1))) for name in ("slow", "fast", "new"))
    slow.record(True, 1.0, ttft_s=0.9)
    fast.record(True, 0.5, ttft_s=0.1)
    order = order_deployments([slow, fast, new], "latency", random.Random(0), now=0.0)
    assert [d.name for d in order] == ["new", "fast", "slow"]


def test_least_busy_and_cooling_deployments_go_last() -> None:
    a, b, c = (deployment(name, KeyPool(keys(1))) for name in "abc")
    a.in_flight, b.in_flight = 4, 1
    c.cooldown_until = 100.0
    assert [d.name for d in order_deployments([a, b, c], "least_busy", random.Random(0), now=1.0)] == ["b", "a", "c"]


def test_weighted_deployments_draw_the_first_choice_by_weight() -> None:
    heavy, light = deployment("heavy", KeyPool(keys(1)), 70), deployment("light", KeyPool(keys(1)), 30)
    rng = random.Random(11)
    firsts = Counter(order_deployments([heavy, light], "weighted", rng, now=0.0)[0].name for _ in range(3000))
    assert 0.65 <= firsts["heavy"] / 3000 <= 0.75


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(5)
    delays = [backoff_delay(retry, 0.25, 2.0, rng) for retry in range(10) for _ in range(50)]
    assert max(delays) <= 2.0 and min(delays) >= 0.0
    assert len({round(d, 6) for d in delays}) > 400, "full jitter, not a fixed schedule"


def test_weighted_first_choice_skips_a_cooling_deployment_and_keeps_the_others_shares() -> None:
    cooling, heavy, light = (deployment(name, KeyPool(keys(1)), w) for name, w in (("c", 50), ("h", 30), ("l", 10)))
    cooling.cooldown_until = 100.0
    rng = random.Random(2)
    firsts = Counter(order_deployments([cooling, heavy, light], "weighted", rng, now=1.0)[0].name for _ in range(4000))
    assert "c" not in firsts
    assert 0.72 <= firsts["h"] / 4000 <= 0.78, firsts  # 30 / (30 + 10)


def test_a_cooling_pool_sends_the_best_deployment_back() -> None:
    fast, slow = deployment("fast", KeyPool(keys(1))), deployment("slow", KeyPool(keys(1)))
    fast.record(True, 0.1, ttft_s=0.05)
    slow.record(True, 1.0, ttft_s=0.9)
    fast.provider.pool.cool_down(fast.provider.pool.keys[0], 100.0, rejected=True)
    assert [d.name for d in order_deployments([fast, slow], "latency", random.Random(0), now=1.0)] == ["slow", "fast"]


def test_health_snapshot_says_until_when_a_key_and_a_deployment_cool_down() -> None:
    pool = KeyPool(keys(1))
    pool.cool_down(pool.keys[0], until=time.monotonic() + 30, retry_after=False)
    snapshot = deployment("d", pool).snapshot(time.monotonic())
    key = snapshot["keys"][0]
    remaining = (datetime.fromisoformat(key["cooling_down_until"]) - datetime.now(UTC)).total_seconds()
    assert key["state"] == "cooling_down" and 28 < remaining <= 30.5
    assert snapshot["healthy"] is False and snapshot["cooling_down_until"] is None, "the deployment itself is not"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("0.5", 0.5),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # an HTTP date: 30 s after "now" below
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past: usable now
        ("-3", None),
        ("nan", None),
        ("inf", float("inf")),  # the router clamps it (routing.max_retry_after_s)
        ("Fri, 31 Dec 9999 23:59:59 GMT", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() - 1445412480.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_takes_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()
    assert retry_after_seconds(value, now=now) == seconds


def test_a_cooldown_past_any_calendar_still_reads_as_a_snapshot() -> None:
    pool = KeyPool(keys(1))
    pool.cool_down(pool.keys[0], until=time.monotonic() + 1e12)
    snapshot = deployment("d", pool).snapshot(time.monotonic())
    assert snapshot["keys"][0]["state"] == "cooling_down" and snapshot["keys"][0]["cooling_down_until"] is None
