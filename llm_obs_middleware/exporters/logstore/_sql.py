"""What the SQLite and PostgreSQL log stores share: row layout, filter parsing and the query SQL.

Both stores keep the searchable fields as columns and the whole record as its msgspec JSON, and
answer the same queries with the same SQL (standard window functions, no dialect extensions); only
the parameter placeholder (``?`` or ``%s``) and the column that breaks ties in time order (SQLite's
``rowid``, PostgreSQL's identity ``id``) differ, so both stores return the same answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict, get_args

import msgspec

if TYPE_CHECKING:
    from llm_obs_middleware.exporters.logstore._search import LogSearch
    from llm_obs_middleware.records.schema import LLMRecord

__all__ = [
    "COLUMNS",
    "DEFAULT_STATS_WINDOW_S",
    "GROUP_BY",
    "Dialect",
    "Filters",
    "GroupBy",
    "LogFilters",
    "StatsRow",
    "StatsWindow",
    "parse_status",
    "parse_time",
    "record_row",
    "session_sql",
    "stats_payload",
    "stats_row",
    "stats_sql",
]

GroupBy = Literal["model", "provider", "team"]
GROUP_BY: Final[tuple[str, ...]] = get_args(GroupBy)
DEFAULT_STATS_WINDOW_S: Final = 24 * 3600
"""``/logs/stats`` without ``since`` covers the last 24 hours."""

COLUMNS: Final = (
    "request_id",
    "start_unix_nano",
    "provider",
    "model",
    "requested_model",
    "status",
    "outcome",
    "session_id",
    "team",
    "error_type",
    "trace_id",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "duration_s",
    "client_request_id",
    "record",
)
_MAX_SECONDS: Final = 2**63 / 1e9
_STATUS_CLASS = re.compile(r"([1-9])xx", re.IGNORECASE)
# What counts as an error, as the OTLP sink decides (error type set, HTTP error, or a failed exchange).
_IS_ERROR: Final = "(error_type IS NOT NULL OR status >= 400 OR outcome IN ('upstream_error', 'app_error'))"


def parse_time(value: float | str) -> int:
    """Unix nanoseconds from Unix seconds (number or numeric string) or an ISO-8601 time (UTC if naive).

    Raises:
        ValueError: ``value`` is neither.
    """
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            moment = datetime.fromisoformat(value.strip())
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            seconds = moment.timestamp()
    else:
        seconds = float(value)
    # Unix nanoseconds are stored as a signed 64-bit integer (good until the year 2262).
    if not 0 <= seconds < _MAX_SECONDS:
        raise ValueError(f"time out of range: {value!r}")
    return int(seconds * 1e9)


def parse_status(value: int | str) -> tuple[int, int]:
    """The ``[low, high)`` status range of ``503``, ``"503"`` or a class like ``"5xx"``.

    Raises:
        ValueError: ``value`` is neither.
    """
    if isinstance(value, str):
        text = value.strip()
        if match := _STATUS_CLASS.fullmatch(text):
            low = int(match.group(1)) * 100
            return low, low + 100
        value = int(text)
    if not 0 <= value <= 999:
        raise ValueError(f"not an HTTP status: {value!r}")
    return value, value + 1


def record_row(record: LLMRecord, encode: Callable[[Any], bytes]) -> tuple[Any, ...]:
    """The values of :data:`COLUMNS` for one record (the JSON as text)."""
    usage, cost = record.usage, record.cost
    return (
        record.request_id,
        record.timing.start_unix_nano,
        record.provider,
        record.response_model or record.requested_model,
        record.requested_model,
        record.status,
        record.outcome,
        record.session_id,
        record.team,
        record.error_type,
        record.trace_id,
        cost.total_usd if cost is not None else None,
        usage.input_tokens if usage is not None else None,
        usage.output_tokens if usage is not None else None,
        record.timing.duration_s,
        record.client_request_id,
        encode(record).decode(),
    )


class Dialect:
    """The two things that differ between the stores' SQL."""

    __slots__ = ("param", "tiebreak")

    def __init__(self, param: str, tiebreak: str) -> None:
        self.param = param
        """Parameter placeholder: ``?`` (sqlite3) or ``%s`` (psycopg)."""
        self.tiebreak = tiebreak
        """Unique, insertion-ordered column that orders rows with the same start time."""

    def newest_first(self) -> str:
        return f" ORDER BY start_unix_nano DESC, {self.tiebreak} DESC LIMIT {self.param}"

    def oldest_first(self) -> str:
        return f" ORDER BY start_unix_nano, {self.tiebreak} LIMIT {self.param}"


class LogFilters(TypedDict, total=False):
    """The ``/logs`` filters, each optional; ``None`` is the same as leaving one out."""

    model: str | None
    """The served or the requested model."""
    provider: str | None
    status: int | str | None
    """An HTTP status or a class such as ``"5xx"``."""
    session_id: str | None
    team: str | None
    since: float | str | None
    """Earliest start time (inclusive), Unix seconds or ISO-8601."""
    until: float | str | None
    """Latest start time (exclusive), Unix seconds or ISO-8601."""
    search: LogSearch | None
    """Metadata, cost/latency/token range and free-text filters (see :mod:`._search`)."""
    client_request_id: str | None
    """The ``x-request-id`` the client sent."""


_FILTER_NAMES: Final = LogFilters.__optional_keys__
_EQUALITY_FILTERS: Final = ("provider", "session_id", "team", "client_request_id")


class Filters:
    """Parsed ``/logs`` filters turned into a ``WHERE`` clause; bad values raise ``ValueError`` naming them."""

    __slots__ = ("clauses", "model", "params", "search")

    def __init__(self, filters: LogFilters) -> None:
        if unknown := filters.keys() - _FILTER_NAMES:  # a typo must not silently widen the query
            raise TypeError(f"unknown log filter: {', '.join(sorted(unknown))}")
        self.model = filters.get("model")
        self.search = filters.get("search")
        self.clauses: list[str] = []
        self.params: list[Any] = []
        for column in _EQUALITY_FILTERS:
            if (value := filters.get(column)) is not None:
                self.clauses.append(f"{column} = {{p}}")
                self.params.append(value)
        if (status := filters.get("status")) is not None:
            try:
                low, high = parse_status(status)
            except ValueError:
                raise ValueError(f"status: expected an HTTP status or a class like '5xx', got {status!r}") from None
            self.clauses.append("status >= {p} AND status < {p}")
            self.params += (low, high)
        for name, moment, op in (("since", filters.get("since"), ">="), ("until", filters.get("until"), "<")):
            if moment is not None:
                self.params.append(_time(name, moment))
                self.clauses.append(f"start_unix_nano {op} {{p}}")

    def where(self, dialect: Dialect, *, with_model: bool = True) -> tuple[str, list[Any]]:
        """``" WHERE ..."`` (or ``""``) and its parameters; the model matches served or requested."""
        clauses, params = [c.format(p=dialect.param) for c in self.clauses], list(self.params)
        if self.search is not None:
            more, more_params = self.search.clauses(dialect)
            clauses += more
            params += more_params
        if with_model and self.model is not None:
            clauses.append(f"(model = {dialect.param} OR requested_model = {dialect.param})")
            params += (self.model, self.model)
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def select_records(self, dialect: Dialect, limit: int) -> tuple[str, list[Any]]:
        """The records matching every filter, newest first, at most ``limit``."""
        limit = max(0, int(limit))
        if self.model is None:
            where, params = self.where(dialect)
            return f"SELECT record FROM llm_records{where}{dialect.newest_first()}", [*params, limit]
        # "model = ? OR requested_model = ?" makes the database collect and sort every match; the
        # newest `limit` rows of each index, merged, give the same answer from two index walks.
        where, params = self.where(dialect, with_model=False)
        others = where.replace(" WHERE ", " AND ", 1)
        key, p, order = dialect.tiebreak, dialect.param, dialect.newest_first()
        picks = " UNION ALL ".join(
            f"SELECT * FROM (SELECT {key} FROM llm_records WHERE {column} = {p}{others}{order}) AS by_{column}"
            for column in ("model", "requested_model")
        )
        sql = f"SELECT record FROM llm_records WHERE {key} IN ({picks}){dialect.newest_first()}"
        return sql, [self.model, *params, limit, self.model, *params, limit, limit]


def session_sql(dialect: Dialect) -> str:
    """Every record of one session, oldest first (parameters: session id, limit)."""
    return f"SELECT record FROM llm_records WHERE session_id = {dialect.param}{dialect.oldest_first()}"


def stats_sql(dialect: Dialect, where: str, group_by: GroupBy | None) -> str:
    """Totals, error count, p50/p99 latency, tokens and cost, per group (or one row without ``group_by``).

    Percentiles are nearest-rank (the smallest duration with at least p% of the group at or below
    it, as PostgreSQL's ``percentile_disc``), computed with integer arithmetic so both stores agree.
    """
    key = group_by if group_by is not None else "NULL"
    partition = f"PARTITION BY {group_by} " if group_by is not None else ""
    return (
        "WITH w AS (SELECT "
        f"{key} AS k, status, outcome, error_type, input_tokens, output_tokens, cost_usd, duration_s, "
        f"ROW_NUMBER() OVER ({partition}ORDER BY duration_s) AS rn, COUNT(*) OVER ({partition.strip()}) AS n "
        f"FROM llm_records{where}) "
        "SELECT k, COUNT(*), "
        f"SUM(CASE WHEN {_IS_ERROR} THEN 1 ELSE 0 END), "
        "MIN(CASE WHEN rn * 100 >= n * 50 THEN duration_s END), "
        "MIN(CASE WHEN rn * 100 >= n * 99 THEN duration_s END), "
        "AVG(duration_s), "
        "CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), SUM(cost_usd), "
        "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) "
        # Largest group first; ties by key, the no-key group (e.g. no team) last in both databases.
        "FROM w GROUP BY k ORDER BY COUNT(*) DESC, CASE WHEN k IS NULL THEN 1 ELSE 0 END, k"
    )


class StatsRow(msgspec.Struct, kw_only=True):
    """One line of ``/logs/stats``: the totals, or one group's figures."""

    key: str | None = None
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    latency_mean_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0
    """Requests whose cost is unknown (not in ``cost_usd``)."""


def stats_row(row: Sequence[Any]) -> StatsRow:
    """A :class:`StatsRow` from one row of :func:`stats_sql`."""
    key, requests, errors, p50, p99, mean, tokens_in, tokens_out, cost, unpriced = row
    requests, errors = int(requests), int(errors or 0)
    tokens_in, tokens_out = int(tokens_in or 0), int(tokens_out or 0)
    return StatsRow(
        key=key.decode() if isinstance(key, bytes) else None if key is None else str(key),
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        latency_p50_s=None if p50 is None else float(p50),
        latency_p99_s=None if p99 is None else float(p99),
        latency_mean_s=None if mean is None else float(mean),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        total_tokens=tokens_in + tokens_out,
        cost_usd=float(cost or 0.0),
        unpriced_requests=int(unpriced or 0),
    )


class StatsWindow:
    """The time window, filters and grouping of one stats query, defaults filled in.

    Raises:
        ValueError: a parameter cannot be parsed (the message names it).
    """

    __slots__ = ("filters", "group_by", "since_ns", "until_ns")

    def __init__(
        self,
        *,
        since: float | str | None = None,
        until: float | str | None = None,
        group_by: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        team: str | None = None,
    ) -> None:
        self.group_by = _group_by(group_by)
        self.until_ns = _time("until", until) if until is not None else time.time_ns()
        default_since = max(0, self.until_ns - DEFAULT_STATS_WINDOW_S * 1_000_000_000)
        self.since_ns = _time("since", since) if since is not None else default_since
        self.filters = Filters({"model": model, "provider": provider, "team": team})
        self.filters.clauses += ("start_unix_nano >= {p}", "start_unix_nano < {p}")
        self.filters.params += (self.since_ns, self.until_ns)


def _group_by(value: str | None) -> GroupBy | None:
    for name in get_args(GroupBy):
        if value == name:
            return name  # type: ignore[no-any-return]  # one of the Literal's own values
    if value is not None:
        raise ValueError(f"group_by: expected one of {', '.join(GROUP_BY)}, got {value!r}")
    return None


def _time(name: str, value: float | str) -> int:
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected Unix seconds or an ISO-8601 time, got {value!r}") from None


def stats_payload(window: StatsWindow, totals: StatsRow, groups: list[StatsRow]) -> dict[str, Any]:
    """The ``/logs/stats`` JSON body."""
    return {
        "since": _iso(window.since_ns),
        "until": _iso(window.until_ns),
        "group_by": window.group_by,
        "totals": totals,
        "groups": groups,
    }


def _iso(unix_nano: int) -> str:
    return datetime.fromtimestamp(unix_nano / 1e9, UTC).isoformat().replace("+00:00", "Z")
