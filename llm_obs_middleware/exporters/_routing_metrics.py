"""Prometheus view of the router's live state: deployment health, key states and cooldowns.

Read at scrape time from ``RouterMiddleware.health()`` (no work on the request path). Label values
come from the config (deployment and key names) or from native routes, whose table is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["HealthSource", "RoutingCollector"]

HealthSource = Callable[[], dict[str, Any]]
_KEY_STATES = ("healthy", "cooling_down", "rejected")  # rejected: cooling down after a 401/403


class RoutingCollector:
    """A custom collector; ``source`` is set once the router exists."""

    def __init__(self) -> None:
        self.source: HealthSource | None = None

    def describe(self) -> list[Metric]:
        return []  # dynamic: nothing to declare up front (and no source call at registration)

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        healthy = GaugeMetricFamily(
            "llm_obs_deployment_healthy",
            "1 when the deployment can take requests (not cooling down, a usable key), else 0.",
            labels=("deployment", "provider"),
        )
        in_flight = GaugeMetricFamily(
            "llm_obs_deployment_in_flight", "Requests in flight per deployment.", labels=("deployment", "provider")
        )
        key_state = GaugeMetricFamily(
            "llm_obs_key_state", "1 for the key's current state.", labels=("provider", "key", "state")
        )
        cooldowns = CounterMetricFamily(
            "llm_obs_key_cooldowns", "Times a key was put in cooldown (429, or 401/403).", labels=("provider", "key")
        )
        seen_keys: set[tuple[str, str]] = set()
        for deployment in self.source()["deployments"]:
            labels = (deployment["deployment"], deployment["provider"])
            healthy.add_metric(labels, 1.0 if deployment["healthy"] else 0.0)
            in_flight.add_metric(labels, float(deployment["in_flight"]))
            for key in deployment["keys"]:
                ident = (deployment["provider"], key["key"])
                if ident in seen_keys:  # several deployments share a provider's pool
                    continue
                seen_keys.add(ident)
                for state in _KEY_STATES:
                    key_state.add_metric((*ident, state), 1.0 if key["state"] == state else 0.0)
                cooldowns.add_metric(ident, float(key["cooldowns"]))
        yield from (healthy, in_flight, key_state, cooldowns)
