"""The per-request exchange state shared by the middlewares through ``scope["llm_obs"]``.

Each middleware writes the fields it owns and reads the others, so none imports another's
internals. The object is mutable while the request runs and is handed, unchanged from then on, to
the export queue when the response has left; the export worker turns it into an ``LLMRecord``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from llm_obs_middleware.asgi.aliases import Scope
    from llm_obs_middleware.records.schema import Attempt, NormalizedRequest, NormalizedResponse

__all__ = ["SCOPE_KEY", "Exchange", "ResponseObserver", "get_exchange"]

SCOPE_KEY = "llm_obs"
_NO_HEADER_EXTRAS: dict[bytes, str] = {}
logger = logging.getLogger("llm_obs_middleware.accounting")


class ResponseObserver(Protocol):
    """Incremental view of a response body; fed every chunk in order, finished once."""

    def feed(self, chunk: bytes, now_ns: int) -> None: ...

    def finish(self) -> NormalizedResponse: ...


class Exchange:
    """Everything learned about one request while it runs. Cheap to create: ids and a clock read.

    The fields come in groups, each written by one layer (other layers only read them, and any layer
    may record a failure with :meth:`fail`):

    * **timing and outcome**: the clock at creation; ``ExportMiddleware`` writes the status and the end.
    * **identity and trace**: new ids at creation; ``TraceContextMiddleware`` continues the caller's.
    * **request side**: written once, by the first layer that recognises the LLM request
      (``providers.registry.recognise`` and ``providers.request_body.open_request``: accounting, or the
      router used alone); the router adds the model it read from the path.
    * **routing side**: the router (``routing/``): the rule that matched, the deployment that answered.
    * **response side**: ``AccountingMiddleware`` and its observer (which notes tokens with
      :meth:`mark_token`); the router only hands it bytes (:meth:`observe_native`, :meth:`feed_unseen`).
    """

    __slots__ = (  # noqa: RUF023 (grouped by the layer that writes them, not sorted)
        # timing and outcome (ExportMiddleware; fail() from any layer)
        "start_unix_nano",
        "start_ns",
        "end_ns",
        "status",
        "outcome",
        "error_type",
        "error_message",
        # identity and trace (TraceContextMiddleware)
        "trace_id",
        "span_id",
        "parent_span_id",
        "server_span_id",
        "trace_flags",
        "tracestate",
        "request_id",
        "client_request_id",
        "session_id",
        "user",
        "metadata",
        # request side (the first layer that recognises the request)
        "method",
        "path",
        "recognised",
        "is_llm",
        "api",
        "operation",
        "body",
        "request",
        "request_error",
        "requested_model",
        "streamed",
        # routing side (the router)
        "provider",
        "provider_kind",
        "route",
        "rule",
        "served_model",
        "server_address",
        "server_port",
        "attempts",
        "native_observer",
        "native_headers",
        "native_header_extras",
        # response side (accounting and its observer)
        "observer",
        "response",
        "response_headers",
        "header_extras",
        "first_byte_ns",
        "first_token_ns",
        "last_token_ns",
        "token_gaps",
        "max_gap_ns",
        "chunks",
    )

    def __init__(self, scope: Scope) -> None:
        # timing and outcome
        self.start_unix_nano = time.time_ns()
        self.start_ns = time.perf_counter_ns()
        self.end_ns = 0
        self.status = 0
        self.outcome = "completed"
        self.error_type: str | None = None
        self.error_message: str | None = None
        # identity and trace: W3C ids as lowercase hex; a new trace unless TraceContext continues one.
        self.trace_id = os.urandom(16).hex()
        self.span_id = os.urandom(8).hex()
        self.parent_span_id: str | None = None
        self.server_span_id: str | None = None  # set when the gateway's SERVER span is built from the record
        self.trace_flags = "01"
        self.tracestate: str | None = None
        self.request_id = os.urandom(12).hex()  # ours: the log store's key, never a client's
        self.client_request_id: str | None = None  # the client's x-request-id (bounded), kept beside ours
        self.session_id: str | None = None
        self.user: str | None = None
        self.metadata: dict[str, str] = {}
        # request side
        self.method: str = scope.get("method", "POST")
        self.path: str = scope.get("path", "")
        self.recognised: object = None  # providers.registry.Recognised: the endpoint matched, once per request
        self.is_llm = False
        self.api = ""
        self.operation = ""
        self.body: bytes | None = None
        self.request: NormalizedRequest | None = None
        self.request_error: str | None = None
        self.requested_model: str | None = None
        self.streamed = False  # what the request asked; accounting sets what the response is
        # routing side (provider: the adapter's name until the router names the deployment's)
        self.provider = ""
        self.provider_kind = ""
        self.route: str | None = None
        self.rule: str | None = None
        self.served_model: str | None = None
        self.server_address: str | None = None
        self.server_port: int | None = None
        self.attempts: list[Attempt] = []
        self.native_observer: Callable[[int], ResponseObserver] | None = None  # see observe_native
        self.native_headers: Sequence[tuple[bytes, bytes]] = ()
        self.native_header_extras: Mapping[bytes, str] = _NO_HEADER_EXTRAS
        # response side
        self.observer: ResponseObserver | None = None
        self.response: NormalizedResponse | None = None
        # The response's headers as the client got them (a reference, not a copy) and which of them
        # the adapter keeps in the record's ``extra`` (name -> key); read off the request path.
        self.response_headers: Sequence[tuple[bytes, bytes]] = ()
        self.header_extras: Mapping[bytes, str] = _NO_HEADER_EXTRAS
        self.first_byte_ns = 0
        self.first_token_ns = 0
        self.last_token_ns = 0
        self.token_gaps = 0
        self.max_gap_ns = 0
        self.chunks = 0

    @property
    def end_unix_nano(self) -> int:
        """Wall-clock end (0 while running), derived from the monotonic one."""
        return self.start_unix_nano + (self.end_ns - self.start_ns) if self.end_ns else 0

    def mark_token(self, now_ns: int) -> None:
        """Note that a chunk carrying output tokens arrived (TTFT and inter-token gaps)."""
        if not self.first_token_ns:
            self.first_token_ns = now_ns
        else:
            gap = now_ns - self.last_token_ns
            self.token_gaps += 1
            if gap > self.max_gap_ns:
                self.max_gap_ns = gap
        self.last_token_ns = now_ns

    def observe_native(
        self,
        make: Callable[[int], ResponseObserver],
        headers: Sequence[tuple[bytes, bytes]] = (),
        header_extras: Mapping[bytes, str] = _NO_HEADER_EXTRAS,
    ) -> None:
        """The router's hook for a translated exchange, called before its response start.

        The client gets a translation of the provider's answer; whoever observes the response (the
        accounting layer, when it is in the stack) builds its observer with ``make(status)`` instead of
        one for the API the client spoke, and the router feeds it the provider's native bytes (a plain
        body through :meth:`feed_unseen`; a stream chunk by chunk, the observer being the stream's one
        decoder, whose events the translator reads). The translated bytes are not parsed. ``headers``
        are the provider's response headers and ``header_extras`` its adapter's: the observer and the
        record read them in place of the client's (a Bedrock error's type, a provider's request id), as
        on the native route. Without accounting nothing observes (a stream's router builds the observer
        itself, only to decode).
        """
        self.native_observer = make
        self.native_headers = headers
        self.native_header_extras = header_extras

    def feed_unseen(self, chunk: bytes, now_ns: int) -> None:
        """Feed the response observer (if any) bytes the client does not get: a translated exchange's
        native bytes, or the usage chunk the router cut out. Fails open, as accounting's own feeding."""
        observer = self.observer
        if observer is None:
            return
        try:
            observer.feed(chunk, now_ns)
        except Exception:
            logger.exception("observing the response of %s failed", self.api)
            self.observer = None

    def fail(self, outcome: str, error_type: str, message: str | None = None) -> None:
        """Record the first failure; later ones (e.g. the disconnect after a timeout) do not overwrite it."""
        if self.error_type is None:
            self.outcome = outcome
            self.error_type = error_type
            self.error_message = message


def get_exchange(scope: Scope) -> Exchange:
    """Return the request's exchange, creating it when this middleware is the outermost one."""
    exchange: Any = scope.get(SCOPE_KEY)
    if exchange is None:
        exchange = Exchange(scope)
        scope[SCOPE_KEY] = exchange
    return exchange  # type: ignore[no-any-return]
