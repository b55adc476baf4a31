"""Routes LLM requests to providers: aliases, deployments, key pools, retries and fallbacks."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import msgspec

from .._asgi import error_json, get_header, route_path, send_json
from ..balancing import DeploymentState, KeyState, backoff_delay, is_retryable_status, order_deployments
from ..config import Config
from ..errors import UpstreamError, UpstreamPoolFull
from ..providers.base import PreparedBody
from ..providers.registry import RequestMatch, match_request, native_provider
from ..state import Exchange, get_exchange
from ..translation import ClientRequest
from ..types import ASGIApp, Receive, Scope, Send
from ..upstream import DirectRequest, build_client, direct_request, pool_size, send_upstream, upstream_request
from ._attempt_log import log_failed_attempt
from ._attempts import attempt_record, commit_attempt
from ._capacity import UpstreamSlots, send_overloaded
from ._cooldowns import cooldown_wait, deployment_failed, key_failed, probe, retry_after_seconds, usable_after
from ._failure import Failure, send_failure, upstream_error_type
from ._forwarding import HeaderFilter
from ._passthrough import proxy, refuse_path
from ._relay import relay, upstream_error_body
from ._request import load_request
from ._targets import AliasRoute, Routes
from ._translated import Translation, Untranslatable, relay_translated, translate_request
from ._url_parts import refuse_url_part, unusable_url_part

__all__ = ["RouterMiddleware", "retry_after_seconds"]

_encode = msgspec.json.Encoder().encode


class RouterMiddleware:
    """Forwards LLM requests to providers; everything else reaches ``app``.

    Maps the requested model (an alias with weighted deployments, or a native ``/{provider}/...``
    route) to a deployment and a key from the provider's pool, replaces the client's credentials,
    propagates ``traceparent`` (our LLM span as parent) and streams the response back as it
    arrives. Connect errors, timeouts, 429, 5xx and 529 are retried (another key or deployment
    first, with backoff and ``Retry-After``), then the alias's fallbacks; a 400 never is, and a
    stream is never retried once a byte reached the client. 401/403 cool the key down for
    ``routing.auth_cooldown_s``. Cooldowns steer requests, they never refuse one: when every deployment
    and key is cooling down (and no fallback can serve), the one that recovers soonest is tried (a
    half-open probe) and the client gets its real answer. When every attempt failed the client gets
    the last upstream error, or a 502/504 JSON error naming the attempts. Every attempt is recorded.
    Unknown model: 404; malformed JSON: 400; oversized body: 413; an upstream path that would leave
    the provider's base path: 400. Other endpoints of a provider's API under ``/{provider}/`` are
    forwarded as its ``passthrough_endpoints`` allow (404/405 otherwise) and recorded as ``http``
    operations.

    Args:
        app: the ASGI app for every other path.
        config: providers, models, ``routing`` and ``route_prefix``.
        client: the shared upstream client (default: one built by :func:`upstream.build_client`).
        rng: randomness for weighted picks and jitter (tests pass a seeded one).
    """

    def __init__(
        self, app: ASGIApp, *, config: Config, client: httpx.AsyncClient | None = None, rng: random.Random | None = None
    ) -> None:
        self.app = app
        self.prefix = config.route_prefix
        self.max_request_bytes = config.max_request_bytes
        self.capture_content = config.capture_content
        self.policy = config.routing
        self.client = client or build_client(
            transport_name=config.upstream_transport, max_connections=config.routing.max_connections
        )
        self.forward = HeaderFilter(config.routing.forward_headers)
        # As many slots as the pool has connections: the transport itself then never waits for one.
        capacity = min(config.routing.max_connections, pool_size(self.client) or config.routing.max_connections)
        self.slots = UpstreamSlots(capacity, config.routing.pool_wait_s)
        self.rng = rng or random.Random()
        self.routes = Routes(config)
        self.providers = self.routes.providers
        self.provider_kinds = {name: provider.kind for name, provider in config.providers.items()}
        self.known_models = ", ".join(sorted(self.routes.aliases)) or "none"
        self.models_body = _encode(
            {
                "object": "list",
                "data": [
                    {"id": alias, "object": "model", "owned_by": route.deployments[0].provider.name}
                    for alias, route in sorted(self.routes.aliases.items())
                ],
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        prefix = self.prefix
        if prefix:
            if not (path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("/", "")):
                await self.app(scope, receive, send)
                return
            path = path[len(prefix) :] or "/"
        matched = match_request(scope["method"], path, self.provider_kinds)
        if matched is None:
            native = native_provider(path, self.provider_kinds)
            if native is not None:  # a provider endpoint we do not observe (e.g. token counting): proxy it
                if (problem := unusable_url_part("path", path)) is not None:
                    await refuse_url_part(problem, send)
                    return
                provider, rest = self.providers[native[0]], native[1]
                await proxy(
                    self.client,
                    provider,
                    rest,
                    scope,
                    receive,
                    send,
                    self.max_request_bytes,
                    self.rng,
                    forward=self.forward,
                    slots=self.slots,
                )
            elif scope["method"] == "GET" and path in ("/v1/models", "/models"):
                await send_json(send, 200, self.models_body)
            elif prefix:
                message = f"no LLM endpoint at {scope['method']} {route_path(scope)}"
                await send_json(send, 404, error_json(message, "invalid_request_error", code="unknown_endpoint"))
            else:
                await self.app(scope, receive, send)
            return
        exchange = get_exchange(scope)
        if not exchange.is_llm:  # used without AccountingMiddleware
            exchange.is_llm = True
            exchange.api = matched.endpoint.api
            exchange.operation = matched.endpoint.operation
        await self._route(exchange, matched, scope, receive, send)

    def health(self) -> dict[str, Any]:
        """Every deployment and key: healthy, cooling down (for how long, and why), recent errors and latency."""
        now = time.monotonic()
        return {"deployments": [deployment.snapshot(now) for deployment in self.routes.all_deployments()]}

    async def _route(self, ex: Exchange, matched: RequestMatch, scope: Scope, receive: Receive, send: Send) -> None:
        adapter, endpoint = matched.adapter, matched.endpoint
        if ex.body is None:  # used without AccountingMiddleware
            loaded = await load_request(
                ex,
                adapter,
                endpoint,
                receive,
                send,
                max_bytes=self.max_request_bytes,
                capture_content=self.capture_content,
            )
            if not loaded:
                return
        if ex.request is None:
            ex.fail("rejected", "invalid_request")
            message = ex.request_error or "request body is not valid JSON"
            await send_json(send, 400, error_json(message, "invalid_request_error", code="invalid_json"))
            return
        model = adapter.path_model(endpoint, matched.path) or ex.request.model
        if not model:
            ex.fail("rejected", "invalid_request")
            await send_json(send, 400, error_json("'model' is required", "invalid_request_error", param="model"))
            return
        problem = unusable_url_part("path", matched.path) or unusable_url_part("model", model)
        if problem is not None:
            ex.fail("rejected", "invalid_url")
            await refuse_url_part(problem, send)
            return
        ex.requested_model = model
        force, no_fallbacks, deadline = self._overrides(scope)
        if matched.provider is not None:
            # Native route: the client named the provider; an alias's deployments on it still apply.
            provider = self.providers[matched.provider]
            alias = self.routes.aliases.get(model)
            on_provider = [d for d in alias.deployments if d.provider is provider] if alias else []
            if alias is not None and on_provider:
                chain = [AliasRoute(model, on_provider, alias.strategy, [])]
                ex.rule = model
            else:
                chain = [self.routes.native(provider, model)]
                ex.rule = "native"
        else:
            route = self.routes.aliases.get(model)
            ex.rule = model
            if route is None:
                route = self.routes.provider_model(model)  # "anthropic/claude-sonnet-4-5"
                ex.rule = "provider_model"
            if route is None:
                route = self.routes.for_default(model)
                ex.rule = "default_provider"
            if route is None:
                ex.fail("rejected", "model_not_found")
                message = f"model {model!r} is not configured; configured models: {self.known_models}"
                body = error_json(message, "invalid_request_error", code="model_not_found", param="model")
                await send_json(send, 404, body)
                return
            chain = [route]
            if not no_fallbacks:
                chain += [self.routes.aliases[name] for name in route.fallbacks]
        if force is not None:
            chain = [
                AliasRoute(
                    r.alias, [d for d in r.deployments if d.provider.name == force], r.strategy, [], r.unsupported
                )
                for r in chain
            ]
            if not any(r.deployments for r in chain):
                ex.fail("rejected", "invalid_request")
                message = f"provider {force!r} does not serve model {model!r}"
                await send_json(send, 400, error_json(message, "invalid_request_error", param="x-llm-obs-provider"))
                return
        await self._attempts(ex, matched, chain, deadline, scope, receive, send)

    def _overrides(self, scope: Scope) -> tuple[str | None, bool, float | None]:
        """Per-request routing headers, honoured only when ``routing.allow_request_overrides`` is set."""
        if not self.policy.allow_request_overrides:
            return None, False, None
        force = get_header(scope, b"x-llm-obs-provider")
        no_fallbacks = get_header(scope, b"x-llm-obs-no-fallbacks") in (b"1", b"true", b"yes")
        raw_timeout = get_header(scope, b"x-llm-obs-timeout")
        deadline = None
        if raw_timeout is not None:
            try:
                deadline = time.perf_counter() + max(0.001, float(raw_timeout))
            except ValueError:
                deadline = None  # an unreadable override is ignored, as an absent one is
        return (force.decode("latin-1") if force else None), no_fallbacks, deadline

    async def _attempts(
        self,
        ex: Exchange,
        matched: RequestMatch,
        chain: list[AliasRoute],
        deadline: float | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        base_headers = self.forward(scope["headers"])
        base_headers.append((b"traceparent", f"00-{ex.trace_id}-{ex.span_id}-{ex.trace_flags}".encode()))
        if ex.tracestate:
            base_headers.append((b"tracestate", ex.tracestate.encode()))
        query = scope.get("query_string") or b""
        last: Failure | None = None
        policy = self.policy
        decoded: dict[str, ClientRequest] = {}  # the client's request as translators read it, decoded once
        for fallback_index, route in enumerate(chain):
            order = order_deployments(route.deployments, route.strategy, self.rng, cum_weights=route.cum_weights)
            failed_keys: list[KeyState] = []
            for retry in range(policy.retries + 1):
                pick = self._pick(order, failed_keys)
                if pick is None:
                    # A retry honours the Retry-After it was given (within max_retry_after_s); a new
                    # request does not wait for the cooldowns others caused.
                    wait = cooldown_wait(order) if retry else None
                    if wait is not None and wait <= policy.max_retry_after_s:
                        await asyncio.sleep(wait)
                        pick = self._pick(order, failed_keys)
                    if pick is None and not usable_after(chain, fallback_index):
                        pick = probe(order, failed_keys)  # cooldowns alone never refuse a request
                    if pick is None:
                        break  # a fallback can serve now, or every key here answered this request already
                elif retry:
                    await asyncio.sleep(backoff_delay(retry - 1, policy.backoff_base_s, policy.backoff_cap_s, self.rng))
                deployment, key = pick
                translation = None
                if matched.provider is None and not deployment.provider.adapter.openai_compatible:
                    target = deployment.provider
                    planned = translate_request(
                        ex, target.kind, target.adapter, deployment.model, route.unsupported, decoded
                    )
                    if isinstance(planned, Untranslatable):  # this deployment cannot serve the request
                        started = time.perf_counter()
                        record = attempt_record(
                            ex, deployment, key, fallback_index, started, error_type=planned.error_type
                        )
                        ex.attempts.append(record)
                        order.remove(deployment)
                        if planned.failure is not None and (last is None or last.status is None):
                            last = planned.failure  # the reason it cannot, unless a provider answered already
                        continue
                    translation = planned
                if not self.slots.take() and not await self.slots.acquire():
                    await send_overloaded(ex, send, self.slots.size)  # over capacity: shed, blame no one
                    return
                try:
                    outcome = await self._try(
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
                    await send_overloaded(ex, send, self.slots.size)
                    return
                finally:
                    self.slots.release()
                if outcome is None:
                    return  # the response went to the client
                last = outcome
                failed_keys.append(key)
        await send_failure(ex, last, chain[0].alias, send)

    def _pick(
        self, order: list[DeploymentState], failed_keys: list[KeyState]
    ) -> tuple[DeploymentState, KeyState] | None:
        """The first deployment (in preference order) with a usable key not failed yet; else a failed one again."""
        now = time.monotonic()
        for exclude in (failed_keys, ()):
            for deployment in order:
                if deployment.cooldown_until > now:
                    continue
                key = deployment.provider.pool.pick(now, self.rng, exclude)
                if key is not None:
                    return deployment, key
        return None

    async def _try(
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
    ) -> Failure | None:
        """One attempt. ``None`` when the response was relayed to the client; else why it failed."""
        provider = deployment.provider
        adapter = provider.adapter
        endpoint = matched.endpoint
        assert ex.request is not None and ex.body is not None
        headers = [*base_headers, *provider.headers, *key.headers]
        if translation is not None:
            prepared = PreparedBody(translation.upstream.body, False)
            path, _, own_query = translation.upstream.path.partition("?")  # translators encode what they put in
            url = provider.url(path, own_query)
            headers += translation.upstream.headers
        else:
            prepared = adapter.prepare_body(endpoint, ex.request, ex.body, deployment.model)
            if matched.provider is not None:
                path = adapter.upstream_path(endpoint, matched.path, deployment.model)
            else:
                path = endpoint.upstream_path
            url = provider.url(path, query.decode("latin-1"))
        if url is None:
            await refuse_path(ex, send)
            return None
        timeout = provider.timeout
        if deadline is not None:
            remaining = max(0.001, deadline - time.perf_counter())
            timeout = httpx.Timeout(
                connect=min(timeout.connect or remaining, remaining), read=remaining, write=remaining, pool=remaining
            )
        api = translation.endpoint.api if translation is not None else None
        request: httpx.Request | DirectRequest | None = None
        if not provider.signs:
            request = direct_request(
                self.client, ex.method, url, headers=headers, content=prepared.body, timeout=timeout
            )
        if request is None:
            request = upstream_request(
                self.client, ex.method, url, headers=headers, content=prepared.body, timeout=timeout
            )
            adapter.sign(request, provider.config)
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
                response = await send_upstream(
                    self.client,
                    request,
                    provider=provider.name,
                    deadline_s=None if deadline is None else max(0.001, deadline - started),
                )
            except UpstreamError as exc:
                error_type = upstream_error_type(exc)
                ex.attempts.append(
                    attempt_record(ex, deployment, key, fallback_index, started, error_type=error_type, api=api)
                )
                log_failed_attempt(ex.attempts[-1])
                deployment_failed(self.policy, deployment, None)
                key.failures += 1
                return Failure(None, [], b"", exc)
            status = response.status_code
            if is_retryable_status(status) or status in (401, 403):
                body = await upstream_error_body(response, provider.name, relay_deadline)
                await response.aclose()
                error_type = f"http_{status}"
                record = attempt_record(
                    ex, deployment, key, fallback_index, started, status=status, error_type=error_type, api=api
                )
                ex.attempts.append(record)
                log_failed_attempt(record)
                # Gemini says when to retry in the body (RetryInfo) rather than in a header.
                retry_after = response.headers.get("retry-after") or adapter.retry_after(status, body)
                key_failed(self.policy, provider.pool, key, status, retry_after)
                if status >= 500:
                    deployment_failed(self.policy, deployment, None)
                if translation is not None:
                    error = translation.translator.error(status, body, response.headers, retry_after)
                    return Failure(error.status, error.headers, error.body)
                return Failure(status, list(response.headers.raw), body)
            ex.attempts.append(commit_attempt(ex, deployment, key, fallback_index, started, status, api))
            try:
                if translation is not None:
                    await relay_translated(
                        ex,
                        response,
                        translation=translation,
                        adapter=adapter,
                        provider=provider.name,
                        deadline=relay_deadline,
                        receive=receive,
                        send=send,
                    )
                else:
                    await relay(
                        ex,
                        response,
                        adapter=adapter,
                        provider=provider.name,
                        streamed=adapter.is_stream(response.headers.get("content-type", "").encode("latin-1")),
                        hide_usage=prepared.hide_usage_chunk,
                        deadline=relay_deadline,
                        receive=receive,
                        send=send,
                    )
            finally:
                await response.aclose()
            first = ex.first_token_ns or ex.first_byte_ns
            ttft = (first * 1e-9 - started) if first else None
            served = status < 400 and ex.outcome == "completed"
            deployment.record(served, time.perf_counter() - started, ttft)
            if ex.outcome == "upstream_error":  # the answer broke off mid-body (cut, timeout)
                log_failed_attempt(ex.attempts[-1], error=ex.error_type, latency_s=time.perf_counter() - started)
            key.served += 1
            if served and probing:  # only a probe: a request begun before the cooldown says nothing after it
                key.cooldown_until = deployment.cooldown_until = 0.0
            return None
        finally:
            deployment.in_flight -= 1
            key.in_flight -= 1
