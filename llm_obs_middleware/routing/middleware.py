"""Routes LLM requests to providers: aliases, deployments, key pools, retries and fallbacks."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import msgspec

from llm_obs_middleware.asgi.aliases import ASGIApp, Receive, Scope, Send
from llm_obs_middleware.asgi.messages import error_json, get_header, route_path, send_json
from llm_obs_middleware.asgi.state import Exchange
from llm_obs_middleware.config.settings import Config
from llm_obs_middleware.errors import UpstreamError
from llm_obs_middleware.providers.base import PreparedBody
from llm_obs_middleware.providers.registry import RequestMatch, llm_path, native_provider, recognise
from llm_obs_middleware.providers.request_body import open_request
from llm_obs_middleware.routing.attempt_log import log_failed_attempt
from llm_obs_middleware.routing.attempts import attempt_record, commit_attempt, run_attempts
from llm_obs_middleware.routing.balancing import (
    DeploymentState,
    KeyState,
    is_retryable_status,
)
from llm_obs_middleware.routing.capacity import UpstreamSlots
from llm_obs_middleware.routing.cooldowns import (
    deployment_failed,
    key_failed,
    retry_after_seconds,
)
from llm_obs_middleware.routing.failure import Failure, upstream_error_type
from llm_obs_middleware.routing.forwarding import HeaderFilter
from llm_obs_middleware.routing.passthrough import proxy, refuse_path
from llm_obs_middleware.routing.relay import relay, upstream_error_body
from llm_obs_middleware.routing.targets import AliasRoute, Routes
from llm_obs_middleware.routing.translated import Translation, relay_translated, translated_error
from llm_obs_middleware.routing.url_parts import refuse_url_part, unusable_url_part
from llm_obs_middleware.upstream.client import Upstream, signed, upstream_of

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
        client: the shared upstream: an ``httpx.AsyncClient`` of the caller's own, or an ``Upstream``
            (default: the gateway's own, built by :func:`upstream.client.build_upstream`).
        rng: randomness for weighted picks and jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: Config,
        client: httpx.AsyncClient | Upstream | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.app = app
        self.prefix = config.route_prefix
        self.max_request_bytes = config.max_request_bytes
        self.capture_content = config.capture_content
        self.policy = config.routing
        self.upstream = upstream_of(client, config)
        self.forward = HeaderFilter(config.routing.forward_headers)
        # As many slots as the pool has connections: the transport itself then never waits for one.
        capacity = min(config.routing.max_connections, self.upstream.max_connections or config.routing.max_connections)
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
        prefix = self.prefix
        path, routed = llm_path(scope, prefix)
        if not routed:
            await self.app(scope, receive, send)
            return
        matched = recognise(scope, path, self.provider_kinds)
        if matched is None:
            native = native_provider(path, self.provider_kinds)
            if native is not None:  # a provider endpoint we do not observe (e.g. token counting): proxy it
                if (problem := unusable_url_part("path", path)) is not None:
                    await refuse_url_part(problem, send)
                    return
                provider, rest = self.providers[native[0]], native[1]
                await proxy(
                    self.upstream,
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
        exchange = await open_request(  # the request side, unless accounting wrote it already
            scope, matched, receive, send, max_bytes=self.max_request_bytes, capture_content=self.capture_content
        )
        if exchange is not None:
            await self._route(exchange, matched, scope, receive, send)

    def health(self) -> dict[str, Any]:
        """Every deployment and key: healthy, cooling down (for how long, and why), recent errors and latency."""
        now = time.monotonic()
        return {"deployments": [deployment.snapshot(now) for deployment in self.routes.all_deployments()]}

    async def _route(self, ex: Exchange, matched: RequestMatch, scope: Scope, receive: Receive, send: Send) -> None:
        adapter, endpoint = matched.adapter, matched.endpoint
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
        await run_attempts(
            ex,
            matched,
            chain,
            deadline,
            scope,
            receive,
            send,
            policy=self.policy,
            rng=self.rng,
            slots=self.slots,
            forward=self.forward,
            try_once=self._try,
        )

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
        method, body = ex.method, prepared.body
        if provider.signs:
            method, url, headers, body = signed(method, url, headers, body, lambda r: adapter.sign(r, provider.config))
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
                response = await self.upstream.send(
                    method,
                    url,
                    headers,
                    body,
                    timeouts=timeout,
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
                    return translated_error(ex, response, body, translation, adapter, retry_after)
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
