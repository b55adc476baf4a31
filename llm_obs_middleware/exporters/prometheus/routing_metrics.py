"""Prometheus view of the router's live state: deployment health, key states and cooldowns.

Read at scrape time from ``RouterMiddleware.health()`` (no work on the request path). Label values
come from the config (deployment and key names) or from the models clients name on native and
``default_provider`` routes: those deployments are counted per provider, and past
``MAX_DEPLOYMENTS_PER_PROVIDER`` they share one ``other`` series (healthy only if all are, in-flight summed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["MAX_DEPLOYMENTS_PER_PROVIDER", "HealthSource", "RoutingCollector"]

HealthSource = Callable[[], dict[str, Any]]
MAX_DEPLOYMENTS_PER_PROVIDER = 200
"""Distinct ``deployment`` label values per provider, as for ``model`` (configured aliases come first)."""
_KEY_STATES = ("healthy", "cooling_down", "rejected")  # rejected: cooling down after a 401/403
_OTHER = "other"


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
        named: dict[str, int] = {}  # provider -> deployments with their own label
        other_healthy: dict[str, bool] = {}
        other_in_flight: dict[str, float] = {}
        for deployment in self.source()["deployments"]:
            provider = deployment["provider"]
            if named.get(provider, 0) < MAX_DEPLOYMENTS_PER_PROVIDER:
                named[provider] = named.get(provider, 0) + 1
                labels = (deployment["deployment"], provider)
                healthy.add_metric(labels, 1.0 if deployment["healthy"] else 0.0)
                in_flight.add_metric(labels, float(deployment["in_flight"]))
            else:
                other_healthy[provider] = other_healthy.get(provider, True) and bool(deployment["healthy"])
                other_in_flight[provider] = other_in_flight.get(provider, 0.0) + deployment["in_flight"]
            for key in deployment["keys"]:
                ident = (deployment["provider"], key["key"])
                if ident in seen_keys:  # several deployments share a provider's pool
                    continue
                seen_keys.add(ident)
                for state in _KEY_STATES:
                    key_state.add_metric((*ident, state), 1.0 if key["state"] == state else 0.0)
                cooldowns.add_metric(ident, float(key["cooldowns"]))
        for provider, all_healthy in other_healthy.items():
            healthy.add_metric((_OTHER, provider), 1.0 if all_healthy else 0.0)
            in_flight.add_metric((_OTHER, provider), other_in_flight[provider])
        yield from (healthy, in_flight, key_state, cooldowns)
