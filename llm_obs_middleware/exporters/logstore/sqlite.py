"""The SQLite request log: every record stored and searchable, zero set-up.

Each row keeps the searchable fields as columns and the whole record as its msgspec JSON (the
``/logs`` API's format), so reads return stored bytes without decoding them. One connection in WAL
mode serves writes and reads; a lock guards it because calls run in ``asyncio.to_thread`` workers,
so the event loop never blocks on disk. The JSON is stored as TEXT so ``json_extract(record, ...)``
works from the ``sqlite3`` shell.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ...errors import ConfigurationError

if TYPE_CHECKING:
    from ...schema import LLMRecord

__all__ = ["SCHEMA_VERSION", "SQLiteLogStore", "parse_status", "parse_time", "sqlite_path"]

_MEMORY: Final = ":memory:"
_MAX_SECONDS: Final = 2**63 / 1e9
_STATUS_CLASS = re.compile(r"([1-9])xx", re.IGNORECASE)

# Each entry migrates the schema from version i to i + 1; append, never edit a released one.
_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE llm_records (
        request_id TEXT PRIMARY KEY,
        start_unix_nano INTEGER NOT NULL,
        provider TEXT NOT NULL,
        model TEXT,
        requested_model TEXT,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        session_id TEXT,
        trace_id TEXT NOT NULL,
        cost_usd REAL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        duration_s REAL NOT NULL,
        record TEXT NOT NULL
    );
    -- Each filter index ends with the time so "filter, newest first, limit" reads the index in order.
    CREATE INDEX llm_records_time ON llm_records (start_unix_nano);
    CREATE INDEX llm_records_model ON llm_records (model, start_unix_nano);
    CREATE INDEX llm_records_requested_model ON llm_records (requested_model, start_unix_nano);
    CREATE INDEX llm_records_provider ON llm_records (provider, start_unix_nano);
    CREATE INDEX llm_records_status ON llm_records (status, start_unix_nano);
    CREATE INDEX llm_records_session ON llm_records (session_id, start_unix_nano);
    """,
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_NEWEST_FIRST: Final = " ORDER BY start_unix_nano DESC, rowid DESC LIMIT ?"
_INSERT: Final = (
    "INSERT OR REPLACE INTO llm_records (request_id, start_unix_nano, provider, model, requested_model, status,"
    " outcome, session_id, trace_id, cost_usd, input_tokens, output_tokens, duration_s, record)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def sqlite_path(url_or_path: str | os.PathLike[str]) -> str:
    """The file path of ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:`` or a path."""
    if not isinstance(url_or_path, str):
        return os.fspath(url_or_path)
    if url_or_path.startswith("sqlite:///"):
        # As in SQLAlchemy: three slashes then the path, so an absolute path shows a fourth.
        path = url_or_path.removeprefix("sqlite:///").partition("?")[0]
        if not path:
            raise ConfigurationError(f"exporters.log_store.url: no database path in {url_or_path!r}")
        return path
    if "://" in url_or_path or url_or_path.startswith("sqlite:"):
        raise ConfigurationError(
            f"exporters.log_store.url: {url_or_path!r} is not a SQLite URL (use sqlite:///path.db or sqlite:////abs.db)"
        )
    return url_or_path


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
    # Unix nanoseconds are stored as SQLite's signed 64-bit INTEGER (good until the year 2262).
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


class SQLiteLogStore:
    """Stores records in SQLite and answers queries over them; implements :class:`~..base.Sink`.

    Args:
        url_or_path: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:``
            or a plain file path. Parent directories are created.
    """

    name = "log_store"

    def __init__(self, url_or_path: str | os.PathLike[str]) -> None:
        self.path = sqlite_path(url_or_path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._encode = msgspec.json.Encoder().encode

    # -- Sink ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database and bring its schema up to date (off the event loop)."""
        await asyncio.to_thread(self._connection)

    async def export(self, records: Sequence[LLMRecord]) -> None:
        if records:
            await asyncio.to_thread(self.write, records)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    # -- synchronous API ----------------------------------------------------------------------

    def write(self, records: Sequence[LLMRecord]) -> None:
        """Insert ``records`` in one transaction (blocking; the sink calls it in a thread)."""
        encode = self._encode
        rows = [
            (
                r.request_id,
                r.timing.start_unix_nano,
                r.provider,
                r.response_model or r.requested_model,
                r.requested_model,
                r.status,
                r.outcome,
                r.session_id,
                r.trace_id,
                r.cost.total_usd if r.cost is not None else None,
                r.usage.input_tokens if r.usage is not None else None,
                r.usage.output_tokens if r.usage is not None else None,
                r.timing.duration_s,
                encode(r).decode(),
            )
            for r in records
        ]
        with self._lock:
            conn = self._connection_locked()
            with conn:  # one transaction: commit on success, roll back on error
                conn.executemany(_INSERT, rows)

    def query(
        self,
        *,
        model: str | None = None,
        provider: str | None = None,
        status: int | str | None = None,
        session_id: str | None = None,
        since: float | str | None = None,
        until: float | str | None = None,
        limit: int = 100,
    ) -> list[bytes]:
        """Records (their JSON) matching every filter given, newest first.

        Args:
            model: the served or the requested model.
            status: an HTTP status or a class such as ``"5xx"``.
            since: earliest start time (inclusive), Unix seconds or ISO-8601.
            until: latest start time (exclusive), Unix seconds or ISO-8601.
            limit: most records returned.

        Raises:
            ValueError: a filter value cannot be parsed (the message names it).
        """
        clauses: list[str] = []
        params: list[Any] = []
        if provider is not None:
            clauses.append("provider = ?")
            params.append(provider)
        if status is not None:
            try:
                low, high = parse_status(status)
            except ValueError:
                raise ValueError(f"status: expected an HTTP status or a class like '5xx', got {status!r}") from None
            clauses.append("status >= ? AND status < ?")
            params += (low, high)
        if session_id is not None:
            clauses.append("session_id = ?")
            params.append(session_id)
        for name, value, op in (("since", since, ">="), ("until", until, "<")):
            if value is not None:
                try:
                    params.append(parse_time(value))
                except (TypeError, ValueError):
                    raise ValueError(f"{name}: expected Unix seconds or an ISO-8601 time, got {value!r}") from None
                clauses.append(f"start_unix_nano {op} ?")
        limit = max(0, int(limit))
        if model is None:
            where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
            sql = f"SELECT record FROM llm_records{where}{_NEWEST_FIRST}"
            params.append(limit)
        else:
            # "model = ? OR requested_model = ?" would make SQLite collect and sort every match; the
            # newest `limit` rows of each index, merged, give the same answer from two index walks.
            others = "".join(f" AND {clause}" for clause in clauses)
            picks = " UNION ALL ".join(
                f"SELECT * FROM (SELECT rowid FROM llm_records WHERE {column} = ?{others}{_NEWEST_FIRST})"
                for column in ("model", "requested_model")
            )
            sql = f"SELECT record FROM llm_records WHERE rowid IN ({picks}){_NEWEST_FIRST}"
            params = [model, *params, limit, model, *params, limit, limit]
        with self._lock:
            rows = self._connection_locked().execute(sql, params).fetchall()
        return [row[0] for row in rows]

    def get(self, request_id: str) -> bytes | None:
        """The record (its JSON) with this request id, or ``None``."""
        with self._lock:
            row = (
                self._connection_locked()
                .execute("SELECT record FROM llm_records WHERE request_id = ?", (request_id,))
                .fetchone()
            )
        return None if row is None else row[0]

    def close_sync(self) -> None:
        """Close the connection (a later call reopens it)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- async wrappers for request handlers --------------------------------------------------

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
    ) -> list[bytes]:
        """:meth:`query` in a worker thread."""
        return await asyncio.to_thread(
            self.query,
            model=model,
            provider=provider,
            status=status,
            session_id=session_id,
            since=since,
            until=until,
            limit=limit,
        )

    async def aget(self, request_id: str) -> bytes | None:
        """:meth:`get` in a worker thread."""
        return await asyncio.to_thread(self.get, request_id)

    # -- connection ---------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        with self._lock:
            return self._connection_locked()

    def _connection_locked(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self.path != _MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Calls come from to_thread workers, never two at once (the lock), so sharing is safe.
        conn = sqlite3.connect(self.path, check_same_thread=False)
        # TEXT comes back as bytes: records go out as the JSON they were stored as, with no decode.
        conn.text_factory = bytes
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            if self.path != _MEMORY:
                # WAL lets readers run beside the writer; NORMAL sync is durable enough in WAL mode.
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            _migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        current = int(row[0]) if row is not None else 0
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    if current > SCHEMA_VERSION:
        raise ConfigurationError(
            f"exporters.log_store.url: {path} has schema version {current}, newer than this release "
            f"supports ({SCHEMA_VERSION}); upgrade llm-obs-middleware"
        )
    for version in range(current, SCHEMA_VERSION):
        # executescript commits first, so each migration runs in its own explicit transaction.
        conn.executescript(f"BEGIN; {_MIGRATIONS[version]} UPDATE schema_version SET version = {version + 1}; COMMIT;")
