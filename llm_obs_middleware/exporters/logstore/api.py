"""The ``/logs`` JSON API over a log store (Starlette routes).

``GET /logs`` lists records, newest first, filtered by ``model``, ``provider``, ``status`` (``503``
or ``5xx``), ``session_id``, ``since``/``until`` (Unix seconds or ISO-8601) and ``limit`` (1-1000,
default 100); ``GET /logs/{request_id}`` returns one record. Each record is exactly
``msgspec.json.encode(LLMRecord)``: the stored bytes are spliced into the response, never decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .sqlite import parse_status, parse_time

__all__ = ["LogReader", "log_routes"]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_JSON: Final = "application/json"
_encode = msgspec.json.Encoder().encode


class LogReader(Protocol):
    """What the API needs from a log store."""

    async def aquery(
        self,
        *,
        model: str | None = None,
        provider: str | None = None,
        status: int | str | None = None,
        session_id: str | None = None,
        since: float | str | None = None,
        until: float | str | None = None,
        limit: int = 100,
    ) -> list[bytes]: ...

    async def aget(self, request_id: str) -> bytes | None: ...


class _InvalidParameter(ValueError):
    pass


def log_routes(store: LogReader) -> list[Route]:
    """Routes for ``GET /logs`` and ``GET /logs/{request_id}`` answering from ``store``."""

    async def list_logs(request: Request) -> Response:
        query = request.query_params
        try:
            limit = _limit(query.get("limit"))
            status = query.get("status")
            if status is not None:
                _check(parse_status, "status", status, "an HTTP status such as 503 or a class such as 5xx")
            since, until = query.get("since"), query.get("until")
            for name, value in (("since", since), ("until", until)):
                if value is not None:
                    _check(parse_time, name, value, "Unix seconds or an ISO-8601 time")
        except _InvalidParameter as exc:
            return _error(400, str(exc), "invalid_request_error")
        rows = await store.aquery(
            model=query.get("model"),
            provider=query.get("provider"),
            status=status,
            session_id=query.get("session_id"),
            since=since,
            until=until,
            limit=limit,
        )
        return Response(b'{"data":[' + b",".join(rows) + b"]}", media_type=_JSON)

    async def get_log(request: Request) -> Response:
        request_id: str = request.path_params["request_id"]
        record = await store.aget(request_id)
        if record is None:
            return _error(404, f"no record with request id {request_id!r}", "not_found_error")
        return Response(record, media_type=_JSON)

    return [
        Route("/logs", list_logs, methods=["GET"], name="llm_obs_logs"),
        Route("/logs/{request_id}", get_log, methods=["GET"], name="llm_obs_log"),
    ]


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise _InvalidParameter(f"limit: expected an integer from 1 to {MAX_LIMIT}, got {value!r}")
    return limit


def _check(parse: Callable[[str], object], name: str, value: str, expected: str) -> None:
    try:
        parse(value)
    except ValueError:
        raise _InvalidParameter(f"{name}: expected {expected}, got {value!r}") from None


def _error(status: int, message: str, kind: str) -> Response:
    body = _encode({"error": {"message": message, "type": kind}})
    return Response(body, status_code=status, media_type=_JSON)
