"""Turn a finished :class:`Exchange` into an :class:`LLMRecord` (runs in the export worker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from llm_obs_middleware.records.bounds import MAX_NAME_CHARS, MAX_TEXT_CHARS, bounded
from llm_obs_middleware.records.estimate import default_estimator
from llm_obs_middleware.records.schema import (
    Attempt,
    ExtraValue,
    LLMRecord,
    NormalizedResponse,
    RequestParams,
    Timing,
    Usage,
)

if TYPE_CHECKING:
    from llm_obs_middleware.asgi.state import Exchange
    from llm_obs_middleware.pricing.base import PriceSource
    from llm_obs_middleware.records.estimate import TokenEstimator

__all__ = ["build_record"]

_NS = 1e-9
_EMPTY_RESPONSE = NormalizedResponse(completed=False)
_MAX_LIST_ITEMS = 16  # stop sequences, list extras: a client may send thousands
_NOTE_TYPES = frozenset({None, "invalid_response"})  # error types whose message the observer wrote itself


def build_record(
    exchange: Exchange,
    price_source: PriceSource | None,
    *,
    capture_content: bool = False,
    estimator: TokenEstimator | None = None,
) -> LLMRecord:
    """Build the record; tokens are estimated and cost is priced here, so the request path never pays for it.

    A successful LLM exchange whose provider reported no usage gets estimated usage (``estimator``,
    default :func:`~.estimate.default_estimator`) and ``estimated=True``. The price is the one in
    force when the request started.

    Long because it is mostly the record itself: one keyword per :class:`LLMRecord` field, in one
    place, so a field left out shows; the parts with logic are :func:`_usage`, :func:`_diagnosis` and :func:`_timing`.
    """
    ex = exchange
    response = ex.response or _EMPTY_RESPONSE
    request = ex.request
    response_model = response.model or ex.served_model
    model = response_model or ex.requested_model
    usage, estimated = _usage(ex, response, model, estimator)
    cost = None
    if price_source is not None and usage is not None and model:
        cost = price_source.price(ex.provider_kind or ex.provider, model, usage, timestamp=ex.start_unix_nano * _NS)
    outcome, error_type, error_message = _diagnosis(ex, response, capture_content)
    last = ex.attempts[-1] if ex.attempts else None
    # Client- and upstream-chosen strings are cut here, once, for every sink (labels, spans, rows). One
    # loop checks them for the usual case, where none is too long, rather than a call per field.
    names: tuple[str | None, ...] = (
        ex.session_id,
        ex.user or (request.user if request else None),
        ex.requested_model,
        response_model,
        ex.rule,
        error_type,
    )
    if not _within(names, MAX_NAME_CHARS):
        names = tuple([bounded(name) for name in names])
    session_id, user, requested_model, response_model, rule, error_type = names
    return LLMRecord(
        request_id=ex.request_id,
        client_request_id=ex.client_request_id,
        trace_id=ex.trace_id,
        span_id=ex.span_id,
        parent_span_id=ex.parent_span_id,
        server_span_id=ex.server_span_id,
        session_id=session_id,
        user=user,
        operation=ex.operation or "chat",
        api=ex.api,
        provider=ex.provider or "unknown",
        method=bounded(ex.method),
        path=bounded(ex.path, MAX_TEXT_CHARS),
        requested_model=requested_model,
        response_model=response_model,
        route=ex.route,
        rule=rule,
        server_address=ex.server_address,
        server_port=ex.server_port,
        metadata=ex.metadata,
        params=_bounded_params(request.params) if request else None,
        response_id=response.id,
        # A failed exchange ended in error however its last bytes read: the provider's error answer or
        # in-band error, or a stream the gateway cut (whose error frame only the client format carries).
        finish_reason="error" if outcome == "upstream_error" else response.finish_reason,
        finish_reasons=response.finish_reasons,
        tool_calls=len(response.tool_calls),
        usage=usage,
        cost=cost,
        status=ex.status,
        outcome=outcome,
        error_type=error_type,
        error_message=bounded(error_message, MAX_TEXT_CHARS),
        attempts=_bounded_attempts(ex.attempts),
        retries=max(0, len(ex.attempts) - 1),
        fallback_index=last.fallback_index if last else 0,
        streamed=ex.streamed,
        estimated=estimated,
        timing=_timing(ex),
        input_messages=request.messages if capture_content and request else None,
        output_text=response.output_text if capture_content else None,
        extra=_extra(ex, response),
        served_api=(last.api if last else None) or ex.api or None,
        deployment=last.deployment if last else None,
        key_id=last.key_id if last else None,
    )


def _usage(
    ex: Exchange, response: NormalizedResponse, model: str | None, estimator: TokenEstimator | None
) -> tuple[Usage | None, bool]:
    """``(usage, estimated)``: the provider's usage, else an estimate for a successful LLM exchange."""
    if response.usage is not None or not (ex.is_llm and 200 <= ex.status < 300 and ex.body):
        return response.usage, False
    usage = (estimator or default_estimator()).estimate(model, ex.operation, ex.body, response)
    return usage, usage is not None


def _timing(ex: Exchange) -> Timing:
    """The exchange's clock readings as seconds from its start (``None`` for what never happened)."""
    end_ns = ex.end_ns or ex.start_ns
    return Timing(
        start_unix_nano=ex.start_unix_nano,
        end_unix_nano=ex.end_unix_nano or ex.start_unix_nano + (end_ns - ex.start_ns),
        duration_s=(end_ns - ex.start_ns) * _NS,
        first_byte_s=(ex.first_byte_ns - ex.start_ns) * _NS if ex.first_byte_ns else None,
        time_to_first_token_s=(ex.first_token_ns - ex.start_ns) * _NS if ex.first_token_ns else None,
        inter_token_mean_s=((ex.last_token_ns - ex.first_token_ns) * _NS / ex.token_gaps if ex.token_gaps else None),
        inter_token_max_s=ex.max_gap_ns * _NS if ex.token_gaps else None,
        chunks=ex.chunks,
    )


def _diagnosis(ex: Exchange, response: NormalizedResponse, capture_content: bool) -> tuple[str, str | None, str | None]:
    """``(outcome, error_type, error_message)``: the exchange's, corrected by what the response itself said."""
    outcome, error_type, error_message = ex.outcome, ex.error_type, ex.error_message
    # A provider's error text can echo the prompt (or a key): it is content, kept only with capture on;
    # its type and the status always are. Our own notes (an unparsable body: ``invalid_response``; an
    # unknown event, without an error type) and ex.error_message (timeouts...) are not content.
    upstream_message = response.error_message
    if not capture_content and response.error_type not in _NOTE_TYPES:
        upstream_message = None
    if response.error_type is not None and (error_type is None or outcome == "client_disconnected"):
        # A client that hangs up after the provider's in-band error event is reacting to it (botocore
        # closes on an exception event), so the provider's error is the diagnosis, not the disconnect.
        error_type, error_message = response.error_type, upstream_message
        if outcome == "client_disconnected" or (outcome == "completed" and _in_band(ex, response)):
            outcome = "upstream_error"
    elif outcome == "client_disconnected" and response.completed:
        # The stream's own end (``[DONE]``, ``message_stop``...) had been sent: a client that closes
        # then (the openai SDK stops reading at ``[DONE]``) got the whole answer, before the gateway
        # could send the HTTP body's terminator.
        outcome, error_type, error_message = "completed", None, None
    if error_type is None and ex.status >= 400:
        error_type = f"http_{ex.status}"
    return outcome, error_type, error_message or upstream_message


def _in_band(ex: Exchange, response: NormalizedResponse) -> bool:
    """The provider failed the request inside a success answer (an error event, a failed finish), as
    opposed to an error status (which keeps the outcome its layer wrote) or our own parsing note."""
    return ex.status < 400 and response.error_type not in _NOTE_TYPES


def _within(values: Sequence[str | None], limit: int) -> bool:
    """Whether no value in ``values`` is longer than ``limit`` (a loop: cheaper than ``all()`` over a generator)."""
    for value in values:
        if value is not None and len(value) > limit:
            return False
    return True


def _bounded_attempts(attempts: list[Attempt]) -> list[Attempt]:
    """``attempts`` with client-named models cut (deployment names are bounded when they are made)."""
    for attempt in attempts:
        if attempt.model is not None and len(attempt.model) > MAX_NAME_CHARS:
            return [msgspec.structs.replace(attempt, model=bounded(attempt.model)) for attempt in attempts]
    return attempts


def _extra(ex: Exchange, response: NormalizedResponse) -> dict[str, ExtraValue]:
    """The vendor extras of the request, the response and the response headers the adapter names."""
    request_extra = ex.request.extra if ex.request is not None else {}
    wanted = ex.header_extras
    if not (request_extra or response.extra or wanted):
        return {}
    extra: dict[str, ExtraValue] = {**request_extra, **response.extra}
    if wanted:
        for name, value in ex.response_headers:
            key = wanted.get(name.lower())
            if key is not None and key not in extra:
                extra[key] = value.decode("latin-1")
    for key, item in extra.items():  # values the client or the upstream chose
        if isinstance(item, str):
            if len(item) > MAX_NAME_CHARS:
                extra[key] = bounded(item)
        elif isinstance(item, list):
            extra[key] = [bounded(text) for text in item[:_MAX_LIST_ITEMS]]
    return extra


def _bounded_params(params: RequestParams) -> RequestParams:
    """``params`` with the client's strings (stop sequences, tool choice, response format) bounded."""
    stop = params.stop
    if _within((params.tool_choice, params.response_format), MAX_NAME_CHARS) and (
        stop is None or (len(stop) <= _MAX_LIST_ITEMS and _within(stop, MAX_NAME_CHARS))
    ):
        return params
    return msgspec.structs.replace(
        params,
        stop=None if stop is None else [bounded(text) for text in stop[:_MAX_LIST_ITEMS]],
        tool_choice=bounded(params.tool_choice),
        response_format=bounded(params.response_format),
    )
