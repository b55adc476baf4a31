"""The attempts of a routed request: the loop over deployments, keys, retries and fallbacks, and its
trail (one ``Attempt`` per upstream try, and the one that answers)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from llm_obs_middleware.errors import UpstreamPoolFull
from llm_obs_middleware.routing.balancing import DeploymentState, KeyState, backoff_delay, order_deployments
from llm_obs_middleware.routing.capacity import send_overloaded
from llm_obs_middleware.routing.cooldowns import cooldown_wait, probe, usable_after
from llm_obs_middleware.routing.failure import Failure, send_failure
from llm_obs_middleware.routing.forwarding import Outbound
from llm_obs_middleware.routing.one_attempt import RoutedRequest, Target, attempt_record, try_once
from llm_obs_middleware.routing.translated import Untranslatable, translate_request

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
    from llm_obs_middleware.asgi.state import Exchange
    from llm_obs_middleware.config.routing import RoutingConfig
    from llm_obs_middleware.providers.registry import RequestMatch
    from llm_obs_middleware.providers.translators import ClientRequest
    from llm_obs_middleware.routing.targets import AliasRoute

__all__ = ["Attempts", "pick_target"]


class Attempts:
    """The router's attempt loop over a chain of routes: each route's deployments and keys in preference
    order, ``policy.retries`` more tries with backoff and ``Retry-After``, then the next route (a fallback).

    Args:
        outbound: the upstream client, its slots, the header filter and the randomness of picks.
        policy: the ``routing`` config.
    """

    __slots__ = ("outbound", "policy")

    def __init__(self, outbound: Outbound, policy: RoutingConfig) -> None:
        self.outbound = outbound
        self.policy = policy

    async def run(
        self,
        ex: Exchange,
        matched: RequestMatch,
        chain: list[AliasRoute],
        deadline: float | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Try the chain's deployments (retries, then fallbacks) until one answers the client; else the failure."""
        query = scope.get("query_string") or b""
        request = RoutedRequest(ex, matched, self._upstream_headers(ex, scope), query, deadline, receive, send)
        last: Failure | None = None
        decoded: dict[str, ClientRequest] = {}  # the client's request as translators read it, decoded once
        for fallback_index, route in enumerate(chain):
            order = order_deployments(
                route.deployments, route.strategy, self.outbound.rng, cum_weights=route.cum_weights
            )
            failed_keys: list[KeyState] = []
            for retry in range(self.policy.retries + 1):
                pick = await self._pick(order, failed_keys, retry, chain, fallback_index)
                if pick is None:
                    break  # a fallback can serve now, or every key here answered this request already
                deployment, key = pick
                translation = None
                if matched.provider is None and not deployment.provider.adapter.openai_compatible:
                    planned = translate_request(
                        ex,
                        deployment.provider.kind,
                        deployment.provider.adapter,
                        deployment.model,
                        route.unsupported,
                        decoded,
                    )
                    if isinstance(planned, Untranslatable):  # this deployment cannot serve the request
                        order.remove(deployment)
                        last = _untranslatable(ex, Target(deployment, key, fallback_index, None), planned, last)
                        continue
                    translation = planned
                outcome = await self._attempt(request, Target(deployment, key, fallback_index, translation))
                if outcome is None:
                    return  # the client has its answer
                last = outcome
                failed_keys.append(key)
        await send_failure(ex, last, chain[0].alias, send)

    def _upstream_headers(self, ex: Exchange, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The client's headers that may go upstream, and our trace context (our LLM span as parent)."""
        headers = self.outbound.forward(scope["headers"])
        headers.append((b"traceparent", f"00-{ex.trace_id}-{ex.span_id}-{ex.trace_flags}".encode()))
        if ex.tracestate:
            headers.append((b"tracestate", ex.tracestate.encode()))
        return headers

    async def _pick(
        self,
        order: list[DeploymentState],
        failed_keys: list[KeyState],
        retry: int,
        chain: list[AliasRoute],
        fallback_index: int,
    ) -> tuple[DeploymentState, KeyState] | None:
        """The next deployment and key to try (after the backoff of a retry); ``None``: go on to the
        fallbacks. A retry honours the Retry-After it was given (within ``max_retry_after_s``); a new
        request does not wait for the cooldowns others caused; cooldowns alone never refuse a request."""
        policy, rng = self.policy, self.outbound.rng
        pick = pick_target(order, failed_keys, rng)
        if pick is not None:
            if retry:
                await asyncio.sleep(backoff_delay(retry - 1, policy.backoff_base_s, policy.backoff_cap_s, rng))
            return pick
        wait = cooldown_wait(order) if retry else None
        if wait is not None and wait <= policy.max_retry_after_s:
            await asyncio.sleep(wait)
            pick = pick_target(order, failed_keys, rng)
        if pick is None and not usable_after(chain, fallback_index):
            pick = probe(order, failed_keys)  # a half-open probe of the one that recovers soonest
        return pick

    async def _attempt(self, request: RoutedRequest, target: Target) -> Failure | None:
        """One attempt within the gateway's capacity: ``None`` once the client has its answer (the
        upstream's, or our 503 when every upstream connection is busy: shed, blaming no one)."""
        slots = self.outbound.slots
        if not slots.take() and not await slots.acquire():
            await send_overloaded(request.ex, request.send, slots.size)
            return None
        try:
            return await try_once(self.outbound.upstream, self.policy, request, target)
        except UpstreamPoolFull:  # a client of the caller's own with a smaller pool
            await send_overloaded(request.ex, request.send, slots.size)
            return None
        finally:
            slots.release()


def _untranslatable(ex: Exchange, target: Target, planned: Untranslatable, last: Failure | None) -> Failure | None:
    """Record a deployment that cannot take the client's request in its wire format; the failure to
    report is its reason, unless a provider answered already."""
    record = attempt_record(
        ex, target.deployment, target.key, target.fallback_index, time.perf_counter(), error_type=planned.error_type
    )
    ex.attempts.append(record)
    if planned.failure is not None and (last is None or last.status is None):
        return planned.failure
    return last


def pick_target(
    order: list[DeploymentState], failed_keys: list[KeyState], rng: random.Random
) -> tuple[DeploymentState, KeyState] | None:
    """The first deployment (in preference order) with a usable key not failed yet; else a failed one again."""
    now = time.monotonic()
    for exclude in (failed_keys, ()):
        for deployment in order:
            if deployment.cooldown_until > now:
                continue
            key = deployment.provider.pool.pick(now, rng, exclude)
            if key is not None:
                return deployment, key
    return None
