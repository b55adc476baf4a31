"""The attempts of a routed request: the loop over deployments, keys, retries and fallbacks, and its
trail (one ``Attempt`` per upstream try, and the one that answers)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Protocol

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.errors import UpstreamPoolFull
from llm_obs_middleware.records.schema import Attempt
from llm_obs_middleware.routing.balancing import DeploymentState, KeyState, backoff_delay, order_deployments
from llm_obs_middleware.routing.capacity import UpstreamSlots, send_overloaded
from llm_obs_middleware.routing.cooldowns import cooldown_wait, probe, usable_after
from llm_obs_middleware.routing.failure import Failure, send_failure
from llm_obs_middleware.routing.translated import Translation, Untranslatable, translate_request

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Receive, Scope, Send
    from llm_obs_middleware.config.routing import RoutingConfig
    from llm_obs_middleware.providers.registry import RequestMatch
    from llm_obs_middleware.providers.translators import ClientRequest
    from llm_obs_middleware.routing.forwarding import HeaderFilter
    from llm_obs_middleware.routing.targets import AliasRoute

__all__ = ["TryOnce", "attempt_record", "commit_attempt", "pick_target", "run_attempts"]


class TryOnce(Protocol):
    """One upstream attempt (the router's): ``None`` once the response went to the client, else why it failed."""

    async def __call__(
        self,
        ex: Exchange,
        matched: RequestMatch,
        deployment: DeploymentState,
        key: KeyState,
        fallback_index: int,
        base_headers: list[tuple[bytes, bytes]],
        query: bytes,
        deadline: float | None,
        translation: Translation | None,
        receive: Receive,
        send: Send,
    ) -> Failure | None: ...


async def run_attempts(
    ex: Exchange,
    matched: RequestMatch,
    chain: list[AliasRoute],
    deadline: float | None,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    policy: RoutingConfig,
    rng: random.Random,
    slots: UpstreamSlots,
    forward: HeaderFilter,
    try_once: TryOnce,
) -> None:
    """Try the chain's deployments (retries, then fallbacks) until one answers the client; else the failure."""
    base_headers = forward(scope["headers"])
    base_headers.append((b"traceparent", f"00-{ex.trace_id}-{ex.span_id}-{ex.trace_flags}".encode()))
    if ex.tracestate:
        base_headers.append((b"tracestate", ex.tracestate.encode()))
    query = scope.get("query_string") or b""
    last: Failure | None = None
    decoded: dict[str, ClientRequest] = {}  # the client's request as translators read it, decoded once
    for fallback_index, route in enumerate(chain):
        order = order_deployments(route.deployments, route.strategy, rng, cum_weights=route.cum_weights)
        failed_keys: list[KeyState] = []
        for retry in range(policy.retries + 1):
            pick = pick_target(order, failed_keys, rng)
            if pick is None:
                # A retry honours the Retry-After it was given (within max_retry_after_s); a new
                # request does not wait for the cooldowns others caused.
                wait = cooldown_wait(order) if retry else None
                if wait is not None and wait <= policy.max_retry_after_s:
                    await asyncio.sleep(wait)
                    pick = pick_target(order, failed_keys, rng)
                if pick is None and not usable_after(chain, fallback_index):
                    pick = probe(order, failed_keys)  # cooldowns alone never refuse a request
                if pick is None:
                    break  # a fallback can serve now, or every key here answered this request already
            elif retry:
                await asyncio.sleep(backoff_delay(retry - 1, policy.backoff_base_s, policy.backoff_cap_s, rng))
            deployment, key = pick
            translation = None
            if matched.provider is None and not deployment.provider.adapter.openai_compatible:
                target = deployment.provider
                planned = translate_request(
                    ex, target.kind, target.adapter, deployment.model, route.unsupported, decoded
                )
                if isinstance(planned, Untranslatable):  # this deployment cannot serve the request
                    record = attempt_record(
                        ex, deployment, key, fallback_index, time.perf_counter(), error_type=planned.error_type
                    )
                    ex.attempts.append(record)
                    order.remove(deployment)
                    if planned.failure is not None and (last is None or last.status is None):
                        last = planned.failure  # the reason it cannot, unless a provider answered already
                    continue
                translation = planned
            if not await slots.acquire():
                await send_overloaded(ex, send, slots.size)  # over capacity: shed, blame no one
                return
            try:
                outcome = await try_once(
                    ex,
                    matched,
                    deployment,
                    key,
                    fallback_index,
                    base_headers,
                    query,
                    deadline,
                    translation,
                    receive,
                    send,
                )
            except UpstreamPoolFull:  # a client of the caller's own with a smaller pool
                await send_overloaded(ex, send, slots.size)
                return
            finally:
                slots.release()
            if outcome is None:
                return  # the response went to the client
            last = outcome
            failed_keys.append(key)
    await send_failure(ex, last, chain[0].alias, send)


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


def commit_attempt(
    ex: Exchange,
    deployment: DeploymentState,
    key: KeyState,
    fallback_index: int,
    started: float,
    status: int,
    api: str | None,
) -> Attempt:
    """The attempt that answers the client: the exchange now names its provider and model."""
    provider = deployment.provider
    ex.provider = provider.gen_ai_name
    ex.provider_kind = provider.kind
    ex.route = provider.name
    ex.served_model = deployment.model
    ex.server_address = provider.host
    ex.server_port = provider.port
    return attempt_record(ex, deployment, key, fallback_index, started, status=status, api=api)


def attempt_record(
    ex: Exchange,
    deployment: DeploymentState,
    key: KeyState,
    fallback_index: int,
    started: float,
    *,
    status: int | None = None,
    error_type: str | None = None,
    api: str | None = None,
) -> Attempt:
    return Attempt(
        api=api,
        provider=deployment.provider.name,
        model=deployment.model,
        key_id=key.name,
        status=status,
        error_type=error_type,
        latency_s=time.perf_counter() - started,
        deployment=deployment.name,
        fallback_index=fallback_index,
        start_offset_s=max(0.0, started - ex.start_ns * 1e-9),
    )
