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
    """Everything learned about one request while it runs. Cheap to create: ids and a clock read."""

    __slots__ = (
        "api",
        "attempts",
        "body",
        "chunks",
        "client_request_id",
        "end_ns",
        "end_unix_nano",
        "error_message",
        "error_type",
        "first_byte_ns",
        "first_token_ns",
        "header_extras",
        "is_llm",
        "last_token_ns",
        "max_gap_ns",
        "metadata",
        "method",
        "native_observer",
        "observer",
        "operation",
        "outcome",
        "parent_span_id",
        "path",
        "provider",
        "provider_kind",
        "recognised",
        "request",
        "request_error",
        "request_id",
        "requested_model",
        "response",
        "response_headers",
        "route",
        "rule",
        "served_model",
        "server_address",
        "server_port",
        "server_span_id",
        "session_id",
        "span_id",
        "start_ns",
        "start_unix_nano",
        "status",
        "streamed",
        "token_gaps",
        "trace_flags",
        "trace_id",
        "tracestate",
        "user",
    )

    def __init__(self, scope: Scope) -> None:
        self.start_unix_nano = time.time_ns()
        self.start_ns = time.perf_counter_ns()
        self.end_ns = 0
        self.end_unix_nano = 0
        self.first_byte_ns = 0
        self.first_token_ns = 0
        self.last_token_ns = 0
        self.token_gaps = 0
        self.max_gap_ns = 0
        self.chunks = 0
        # W3C ids as lowercase hex; a new trace unless TraceContext continues one.
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
        self.method: str = scope.get("method", "POST")
        self.path: str = scope.get("path", "")
        self.is_llm = False
        self.recognised: object = None  # providers.registry.Recognised: the endpoint matched, once per request
        self.api = ""
        self.operation = ""
        self.provider = ""
        self.provider_kind = ""
        self.requested_model: str | None = None
        self.served_model: str | None = None
        self.route: str | None = None
        self.rule: str | None = None
        self.server_address: str | None = None
        self.server_port: int | None = None
        self.body: bytes | None = None
        self.request: NormalizedRequest | None = None
        self.request_error: str | None = None
        self.observer: ResponseObserver | None = None
        self.native_observer: Callable[[int], ResponseObserver] | None = None
        self.response: NormalizedResponse | None = None
        # The response's headers as the client got them (a reference, not a copy) and which of them
        # the adapter keeps in the record's ``extra`` (name -> key); read off the request path.
        self.response_headers: Sequence[tuple[bytes, bytes]] = ()
        self.header_extras: Mapping[bytes, str] = _NO_HEADER_EXTRAS
        self.streamed = False
        self.status = 0
        self.outcome = "completed"
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.attempts: list[Attempt] = []

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

    def observe_native(self, make: Callable[[int], ResponseObserver]) -> None:
        """The router's hook for a translated exchange, called before its response start.

        The client gets a translation of the provider's answer; whoever observes the response (the
        accounting layer, when it is in the stack) builds its observer with ``make(status)`` instead of
        one for the API the client spoke, and the router feeds it the provider's native bytes through
        :meth:`feed_unseen` (the translated bytes are not parsed). Without accounting nothing observes.
        """
        self.native_observer = make

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
