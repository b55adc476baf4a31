"""One attempt of a routed request: the upstream request built for a deployment and a key, sent, and its
answer relayed to the client or turned into a ``Failure`` for the attempt loop (``routing/attempts.py``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

import httpx

from llm_obs_middleware.errors import UpstreamError
from llm_obs_middleware.records.schema import Attempt
from llm_obs_middleware.routing.attempt_log import log_failed_attempt
from llm_obs_middleware.routing.balancing import is_retryable_status
from llm_obs_middleware.routing.cooldowns import deployment_failed, key_failed
from llm_obs_middleware.routing.failure import Failure, upstream_error_type
from llm_obs_middleware.routing.passthrough import refuse_path
from llm_obs_middleware.routing.relay import relay, upstream_error_body
from llm_obs_middleware.routing.translated import Translation, relay_translated, translated_error
from llm_obs_middleware.upstream.client import Headers, signed

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.aliases import Receive, Send
    from llm_obs_middleware.asgi.state import Exchange
    from llm_obs_middleware.config.routing import RoutingConfig
    from llm_obs_middleware.providers.registry import RequestMatch
    from llm_obs_middleware.routing.balancing import DeploymentState, KeyState
    from llm_obs_middleware.upstream.client import Upstream, UpstreamResponse

__all__ = ["RoutedRequest", "Target", "attempt_record", "commit_attempt", "try_once"]


class RoutedRequest(NamedTuple):
    """What every attempt of one routed request shares."""

    ex: Exchange
    matched: RequestMatch
    base_headers: Headers
    """The client's headers that go upstream, with our ``traceparent``/``tracestate``."""
    query: bytes
    deadline: float | None
    """The client's ``x-llm-obs-timeout``, as a ``time.perf_counter()`` instant."""
    receive: Receive
    send: Send


class Target(NamedTuple):
    """Where one attempt goes: a deployment, one of its provider's keys, and how it asks."""

    deployment: DeploymentState
    key: KeyState
    fallback_index: int
    translation: Translation | None
    """Set when the client's OpenAI request goes to a provider with another wire format."""


class _Outgoing(NamedTuple):
    method: str
    url: str
    headers: Headers
    body: bytes
    hide_usage: bool
    """We asked for the usage chunk, the client did not: it is dropped on its way to the client."""


async def try_once(upstream: Upstream, policy: RoutingConfig, request: RoutedRequest, target: Target) -> Failure | None:
    """One attempt. ``None`` when the client has its answer (relayed, or our 400 for a path that would
    leave the provider's base path); else why it failed, for the attempt loop to retry or report."""
    deployment, key = target.deployment, target.key
    provider = deployment.provider
    outgoing = _outgoing(request, target)
    if outgoing is None:
        await refuse_path(request.ex, request.send)
        return None
    deadline = request.deadline
    now = time.monotonic()
    probing = key.cooldown_until > now or deployment.cooldown_until > now  # a half-open probe
    started = time.perf_counter()
    # The total timeout holds from the first byte sent to the last received (the wait for the headers
    # is bounded by the transport's timeouts, each at most the total: see ProviderTarget).
    relay_deadline = started + provider.total_timeout
    if deadline is not None:
        relay_deadline = min(relay_deadline, deadline)
    deployment.in_flight += 1
    key.in_flight += 1
    try:
        try:
            response = await upstream.send(
                outgoing.method,
                outgoing.url,
                outgoing.headers,
                outgoing.body,
                timeouts=provider.timeout if deadline is None else _within(provider.timeout, deadline),
                provider=provider.name,
                deadline_s=None if deadline is None else max(0.001, deadline - started),
            )
        except UpstreamError as exc:
            return _unanswered(policy, request.ex, target, started, exc)
        status = response.status_code
        if is_retryable_status(status) or status in (401, 403):
            return await _refused(policy, request.ex, target, response, started, relay_deadline)
        await _relay(request, target, response, outgoing.hide_usage, started, relay_deadline)
        _served(request.ex, target, status, started, probing)
        return None
    finally:
        deployment.in_flight -= 1
        key.in_flight -= 1


def _outgoing(request: RoutedRequest, target: Target) -> _Outgoing | None:
    """The upstream request for ``target`` (signed if its provider signs); ``None`` when its path would
    leave the provider's base path."""
    ex, matched, translation = request.ex, request.matched, target.translation
    deployment = target.deployment
    provider = deployment.provider
    adapter = provider.adapter
    assert ex.request is not None and ex.body is not None
    headers = [*request.base_headers, *provider.headers, *target.key.headers]
    if translation is not None:
        body, hide_usage = translation.upstream.body, False
        path, _, own_query = translation.upstream.path.partition("?")  # translators encode what they put in
        url = provider.url(path, own_query)
        headers += translation.upstream.headers
    else:
        prepared = adapter.prepare_body(matched.endpoint, ex.request, ex.body, deployment.model)
        body, hide_usage = prepared.body, prepared.hide_usage_chunk
        if matched.provider is not None:
            path = adapter.upstream_path(matched.endpoint, matched.path, deployment.model)
        else:
            path = matched.endpoint.upstream_path
        url = provider.url(path, request.query.decode("latin-1"))
    if url is None:
        return None
    method = ex.method
    if provider.signs:
        method, url, headers, body = signed(method, url, headers, body, lambda r: adapter.sign(r, provider.config))
    return _Outgoing(method, url, headers, body, hide_usage)


def _within(timeout: httpx.Timeout, deadline: float) -> httpx.Timeout:
    """The provider's timeouts, each cut to what is left of the client's deadline."""
    remaining = max(0.001, deadline - time.perf_counter())
    return httpx.Timeout(
        connect=min(timeout.connect or remaining, remaining), read=remaining, write=remaining, pool=remaining
    )


def _unanswered(policy: RoutingConfig, ex: Exchange, target: Target, started: float, error: UpstreamError) -> Failure:
    """No answer at all (connect error, timeout, broken response): the attempt recorded, the
    deployment and the key charged with it."""
    deployment, key = target.deployment, target.key
    record = attempt_record(
        ex, deployment, key, target.fallback_index, started, error_type=upstream_error_type(error), api=_api(target)
    )
    ex.attempts.append(record)
    log_failed_attempt(record)
    deployment_failed(policy, deployment, None)
    key.failures += 1
    return Failure(None, [], b"", error)


async def _refused(
    policy: RoutingConfig, ex: Exchange, target: Target, response: UpstreamResponse, started: float, deadline: float
) -> Failure:
    """An error answer another key or deployment may not get (429, 5xx, 529, 401, 403): read, recorded,
    the key (and on 5xx the deployment) cooled down, and kept in case no other attempt answers."""
    deployment, key, translation = target.deployment, target.key, target.translation
    provider = deployment.provider
    status = response.status_code
    body = await upstream_error_body(response, provider.name, deadline)
    await response.aclose()
    record = attempt_record(
        ex,
        deployment,
        key,
        target.fallback_index,
        started,
        status=status,
        error_type=f"http_{status}",
        api=_api(target),
    )
    ex.attempts.append(record)
    log_failed_attempt(record)
    # Gemini says when to retry in the body (RetryInfo) rather than in a header.
    retry_after = response.headers.get("retry-after") or provider.adapter.retry_after(status, body)
    key_failed(policy, provider.pool, key, status, retry_after)
    if status >= 500:
        deployment_failed(policy, deployment, None)
    if translation is not None:
        return translated_error(ex, response, body, translation, provider.adapter, retry_after)
    return Failure(status, list(response.headers.raw), body)


async def _relay(
    request: RoutedRequest,
    target: Target,
    response: UpstreamResponse,
    hide_usage: bool,
    started: float,
    deadline: float,
) -> None:
    """The answer the client gets: this attempt becomes the exchange's, its response is relayed."""
    ex, translation = request.ex, target.translation
    deployment = target.deployment
    adapter, provider = deployment.provider.adapter, deployment.provider.name
    status = response.status_code
    ex.attempts.append(commit_attempt(ex, deployment, target.key, target.fallback_index, started, status, _api(target)))
    try:
        if translation is not None:
            await relay_translated(
                ex,
                response,
                translation=translation,
                adapter=adapter,
                provider=provider,
                deadline=deadline,
                receive=request.receive,
                send=request.send,
            )
        else:
            await relay(
                ex,
                response,
                adapter=adapter,
                provider=provider,
                hide_usage=hide_usage,
                deadline=deadline,
                receive=request.receive,
                send=request.send,
            )
    finally:
        await response.aclose()


def _served(ex: Exchange, target: Target, status: int, started: float, probing: bool) -> None:
    """The deployment's and key's health after an answer reached the client (it may have broken off)."""
    deployment, key = target.deployment, target.key
    first = ex.first_token_ns or ex.first_byte_ns
    ttft = (first * 1e-9 - started) if first else None
    served = status < 400 and ex.outcome == "completed"
    deployment.record(served, time.perf_counter() - started, ttft)
    if ex.outcome == "upstream_error":  # the answer broke off mid-body (cut, timeout)
        log_failed_attempt(ex.attempts[-1], error=ex.error_type, latency_s=time.perf_counter() - started)
    key.served += 1
    if served and probing:  # only a probe: a request begun before the cooldown says nothing after it
        key.cooldown_until = deployment.cooldown_until = 0.0


def _api(target: Target) -> str | None:
    """The API an attempt used, when it is not the client's own (a translated request)."""
    return target.translation.endpoint.api if target.translation is not None else None


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
    """One entry of the exchange's attempt trail."""
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
