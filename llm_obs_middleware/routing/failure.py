"""What the client gets when no attempt reached it: the last upstream answer, or a JSON error."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from llm_obs_middleware.asgi.aliases import Send
from llm_obs_middleware.asgi.messages import error_json, send_json
from llm_obs_middleware.asgi.state import Exchange, ResponseObserver
from llm_obs_middleware.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout
from llm_obs_middleware.upstream.client import HOP_BY_HOP, SERVER_SET

__all__ = ["Failure", "NativeAnswer", "send_answer", "send_failure", "upstream_error_type"]

_NOT_RETURNED = HOP_BY_HOP | SERVER_SET | {b"content-length"}


class NativeAnswer(NamedTuple):
    """The provider's own error answer behind a translated one: what accounting observes instead of the
    translation (``Exchange.observe_native``), so the record is the native route's."""

    observer: Callable[[int], ResponseObserver]
    headers: Sequence[tuple[bytes, bytes]]
    header_extras: Mapping[bytes, str]
    body: bytes


class Failure(NamedTuple):
    """An attempt that did not reach the client: an upstream error answer, or no answer at all."""

    status: int | None
    headers: list[tuple[bytes, bytes]]
    body: bytes
    error: UpstreamError | None = None
    rejected: bool = False
    """Our own answer, not the provider's: the request cannot be translated for this deployment."""
    native: NativeAnswer | None = None
    """The provider's answer when ``body`` is its OpenAI translation."""


def upstream_error_type(error: UpstreamError) -> str:
    """The record's ``error_type`` for an upstream that gave no usable answer."""
    if isinstance(error, UpstreamTimeout):
        return "upstream_timeout"
    return "upstream_invalid_response" if isinstance(error, UpstreamProtocolError) else "upstream_unreachable"


async def send_failure(ex: Exchange, last: Failure | None, alias: str, send: Send) -> None:
    """Every attempt failed: the last upstream answer, or a JSON error naming what was tried."""
    if last is not None and last.rejected:
        ex.fail("rejected", "untranslatable")
        await send_json(send, last.status or 400, last.body)
        return
    if last is not None and last.status is not None:
        await send_answer(ex, last, send)
        return
    tried = ", ".join(f"{a.deployment} ({a.error_type or a.status})" for a in ex.attempts) or "none"
    if last is not None and isinstance(last.error, UpstreamTimeout):
        ex.fail("upstream_error", "upstream_timeout", str(last.error))
        message = f"{last.error}; attempts: {tried}"
        await send_json(send, 504, error_json(message, "upstream_timeout", code="upstream_timeout"))
    elif last is not None and last.error is not None:
        error_type = upstream_error_type(last.error)
        ex.fail("upstream_error", error_type, str(last.error))
        message = f"{last.error}; attempts: {tried}"
        await send_json(send, 502, error_json(message, error_type, code=error_type))
    elif ex.attempts:  # only deployments we cannot speak to
        ex.fail("rejected", "unsupported_translation")
        provider = ex.attempts[-1].provider
        message = (
            f"model {alias!r} is served by provider {provider!r}, which does not speak the "
            f"OpenAI API; call it natively under /{provider}/"
        )
        await send_json(send, 501, error_json(message, "invalid_request_error", code="unsupported_translation"))
    else:
        ex.fail("upstream_error", "no_healthy_deployment")
        message = f"every deployment and key of {alias!r} is cooling down or disabled"
        await send_json(send, 503, error_json(message, "upstream_unavailable", code="no_healthy_deployment"))


async def send_answer(ex: Exchange, answer: Failure, send: Send) -> None:
    """An upstream error answer, as the provider sent it or translated (then accounting observes the
    provider's own answer: ``answer.native``)."""
    ex.outcome = "upstream_error"
    headers = [(k, v) for k, v in answer.headers if k.lower() not in _NOT_RETURNED]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    native = answer.native
    if native is not None:
        ex.observe_native(native.observer, native.headers, native.header_extras)
    await send({"type": "http.response.start", "status": answer.status or 502, "headers": headers})
    if native is not None:
        ex.feed_unseen(native.body, time.perf_counter_ns())
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})
