"""The log store's JSON API (Starlette routes): ``/logs``, ``/logs/stats`` and ``/sessions/{id}``.

``GET /logs`` lists records, newest first, filtered by ``model``, ``provider``, ``status`` (``503``
or ``5xx``), ``session_id``, ``team``, ``client_request_id`` (the ``x-request-id`` a client sent),
``since``/``until`` (Unix seconds or ISO-8601),
``metadata.<key>``, ``min_cost``/``max_cost``, ``min_latency_s``/``max_latency_s``,
``min_tokens``/``max_tokens``, ``q`` (text in captured content; see :mod:`._search`) and ``limit``
(1-1000, default 100); ``GET /logs/{request_id}`` returns one record. Each record is exactly
``msgspec.json.encode(LLMRecord)``: the stored bytes are spliced into the response, never decoded.

``GET /logs/stats`` sums a time window (``since``, default 24 hours before ``until``, default now):
requests, errors and error rate, p50/p99/mean latency, tokens and cost, in total and per
``group_by`` (``model``, ``provider`` or ``team``), optionally filtered by ``model``, ``provider``
and ``team``. ``GET /sessions/{session_id}`` returns every record of one session, oldest first.

A store that does not answer within its ``timeout_s`` gets a 504, one that cannot be reached a 503
(JSON errors of type ``log_store_timeout`` / ``log_store_unavailable``): ``/logs`` never waits on a
hung database for longer, and never holds a thread the rest of the process needs.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeAlias, Unpack

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_obs_middleware.exporters.logstore._base import LogStoreTimeout, LogStoreUnavailable
from llm_obs_middleware.exporters.logstore._search import LogSearch
from llm_obs_middleware.exporters.logstore._sql import LogFilters, StatsWindow, parse_status, parse_time

__all__ = ["LogReader", "log_routes"]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_SESSION_LIMIT: Final = 10_000
_JSON: Final = "application/json"
_encode = msgspec.json.Encoder().encode
Endpoint: TypeAlias = Callable[[Request], Awaitable[Response]]


class LogReader(Protocol):
    """What the API needs from a log store."""

    async def aquery(self, *, limit: int = 100, **filters: Unpack[LogFilters]) -> list[bytes]: ...

    async def aget(self, request_id: str) -> bytes | None: ...

    async def asession(self, session_id: str, *, limit: int = 1000) -> list[bytes]: ...

    async def astats(
        self,
        *,
        since: float | str | None = None,
        until: float | str | None = None,
        group_by: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        team: str | None = None,
    ) -> dict[str, Any]: ...


class _InvalidParameter(ValueError):
    pass


def log_routes(store: LogReader, *, wrap: Callable[[Endpoint], Endpoint] | None = None) -> list[Route]:
    """Routes for ``/logs``, ``/logs/stats``, ``/logs/{request_id}`` and ``/sessions/{session_id}``.

    Args:
        store: answers the queries.
        wrap: applied to every endpoint (the gateway's admin-key check).
    """
    endpoints = _LogEndpoints(store)

    def w(endpoint: Endpoint) -> Endpoint:
        endpoint = _answers_when_the_store_does_not(endpoint)
        return endpoint if wrap is None else wrap(endpoint)

    return [
        Route("/logs", w(endpoints.list_logs), methods=["GET"], name="llm_obs_logs"),
        # Before /logs/{request_id}, which would otherwise take "stats" for a request id.
        Route("/logs/stats", w(endpoints.stats), methods=["GET"], name="llm_obs_log_stats"),
        Route("/logs/{request_id}", w(endpoints.get_log), methods=["GET"], name="llm_obs_log"),
        Route("/sessions/{session_id}", w(endpoints.get_session), methods=["GET"], name="llm_obs_session"),
    ]


class _LogEndpoints:
    """The API's endpoints over one store; a bad parameter is a 400 naming it."""

    __slots__ = ("store",)

    def __init__(self, store: LogReader) -> None:
        self.store = store

    async def list_logs(self, request: Request) -> Response:
        try:
            limit, filters = _list_parameters(request.query_params)
        except ValueError as exc:  # _InvalidParameter, or LogSearch naming the parameter
            return _error(400, str(exc), "invalid_request_error")
        return _records(await self.store.aquery(limit=limit, **filters))

    async def stats(self, request: Request) -> Response:
        query = request.query_params
        options = {name: query.get(name) for name in ("since", "until", "group_by", "model", "provider", "team")}
        try:
            StatsWindow(**options)  # validates every parameter, naming the bad one
        except ValueError as exc:
            return _error(400, str(exc), "invalid_request_error")
        return Response(_encode(await self.store.astats(**options)), media_type=_JSON)

    async def get_log(self, request: Request) -> Response:
        request_id: str = request.path_params["request_id"]
        record = await self.store.aget(request_id)
        if record is None:
            return _error(404, f"no record with request id {request_id!r}", "not_found_error")
        return Response(record, media_type=_JSON)

    async def get_session(self, request: Request) -> Response:
        session_id: str = request.path_params["session_id"]
        try:
            limit = _limit(request.query_params.get("limit"), MAX_SESSION_LIMIT, MAX_LIMIT)
        except _InvalidParameter as exc:
            return _error(400, str(exc), "invalid_request_error")
        rows = await self.store.asession(session_id, limit=limit)
        if not rows:
            return _error(404, f"no record with session id {session_id!r}", "not_found_error")
        return Response(
            b'{"session_id":' + _encode(session_id) + b',"data":[' + b",".join(rows) + b"]}", media_type=_JSON
        )


def _list_parameters(query: QueryParams) -> tuple[int, LogFilters]:
    """``GET /logs``'s limit and filters; a value that cannot be parsed raises ``ValueError`` naming it."""
    limit = _limit(query.get("limit"), MAX_LIMIT, DEFAULT_LIMIT)
    status = query.get("status")
    if status is not None:
        _check(parse_status, "status", status, "an HTTP status such as 503 or a class such as 5xx")
    since, until = query.get("since"), query.get("until")
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            _check(parse_time, name, value, "Unix seconds or an ISO-8601 time")
    filters: LogFilters = {
        "model": query.get("model"),
        "provider": query.get("provider"),
        "status": status,
        "session_id": query.get("session_id"),
        "team": query.get("team"),
        "since": since,
        "until": until,
        "search": LogSearch.from_query(query),
        "client_request_id": query.get("client_request_id"),
    }
    return limit, filters


def _answers_when_the_store_does_not(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, answering 504 (store too slow) or 503 (store unreachable) instead of raising."""

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except LogStoreTimeout as exc:
            return _error(504, str(exc), "log_store_timeout")
        except LogStoreUnavailable as exc:
            return _error(503, str(exc), "log_store_unavailable")

    return answer


def _records(rows: list[bytes]) -> Response:
    return Response(b'{"data":[' + b",".join(rows) + b"]}", media_type=_JSON)


def _limit(value: str | None, maximum: int, default: int) -> int:
    if value is None:
        return default
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise _InvalidParameter(f"limit: expected an integer from 1 to {maximum}, got {value!r}")
    return limit


def _check(parse: Callable[[str], object], name: str, value: str, expected: str) -> None:
    try:
        parse(value)
    except ValueError:
        raise _InvalidParameter(f"{name}: expected {expected}, got {value!r}") from None


def _error(status: int, message: str, kind: str) -> Response:
    body = _encode({"error": {"message": message, "type": kind}})
    return Response(body, status_code=status, media_type=_JSON)
