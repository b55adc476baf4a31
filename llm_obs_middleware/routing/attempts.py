"""The attempt trail of a routed request: one ``Attempt`` per upstream try, and the one that answers."""

from __future__ import annotations

import time

from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.records.schema import Attempt
from llm_obs_middleware.routing.balancing import DeploymentState, KeyState

__all__ = ["attempt_record", "commit_attempt"]


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
