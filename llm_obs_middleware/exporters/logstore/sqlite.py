"""The SQLite request log: every record stored and searchable, zero set-up.

Each row keeps the searchable fields as columns and the whole record as its msgspec JSON (the
``/logs`` API's format), so reads return stored bytes without decoding them. One connection in WAL
mode serves writes and reads; a lock guards it because calls run in the store's write and read
threads, so the event loop never blocks on disk. Waiting for another process's lock is bounded by
``timeout_s`` (SQLite's busy timeout). The JSON is stored as TEXT so ``json_extract(record, ...)``
works from the ``sqlite3`` shell.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from llm_obs_middleware.errors import ConfigurationError
from llm_obs_middleware.exporters.logstore._base import (
    DEFAULT_PRUNE_INTERVAL_S,
    DEFAULT_TIMEOUT_S,
    LogStoreTimeout,
    LogStoreUnavailable,
    SQLLogStore,
)
from llm_obs_middleware.exporters.logstore._sql import COLUMNS, Dialect, parse_status, parse_time

__all__ = ["SCHEMA_VERSION", "SQLiteLogStore", "parse_status", "parse_time", "sqlite_path"]

_MEMORY: Final = ":memory:"
_PAGE_SIZE: Final = 8192

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
    # 2: team and error type as columns (stats by team, error rate), filled in from the stored JSON.
    """
    ALTER TABLE llm_records ADD COLUMN team TEXT;
    ALTER TABLE llm_records ADD COLUMN error_type TEXT;
    UPDATE llm_records SET team = json_extract(record, '$.team'), error_type = json_extract(record, '$.error_type');
    CREATE INDEX llm_records_team ON llm_records (team, start_unix_nano);
    """,
    # 3: the client's x-request-id in its own column (request_id is ours since then; issue 13). Indexed
    # only where a client sent one: most rows have none, and each indexed row costs every insert.
    """
    ALTER TABLE llm_records ADD COLUMN client_request_id TEXT;
    CREATE INDEX llm_records_client_request_id ON llm_records (client_request_id, start_unix_nano)
        WHERE client_request_id IS NOT NULL;
    """,
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

# Never a replace: a stored id is the same record written again (a retried batch), not a new one.
_INSERT: Final = (
    f"INSERT INTO llm_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
    " ON CONFLICT (request_id) DO NOTHING"  # not OR IGNORE, which would skip NOT NULL violations too
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


class SQLiteLogStore(SQLLogStore):
    """Stores records in SQLite and answers queries over them; implements :class:`~..base.Sink`.

    Args:
        url_or_path: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:``
            or a plain file path. Parent directories are created.
        retention_days: records that started longer ago are deleted; ``None`` keeps everything.
        prune_interval_s: seconds between two prunes.
        timeout_s: longest a call waits for another connection's lock, and an async read may take.
    """

    dialect = Dialect("?", "rowid")
    # Values SQLite cannot store (an integer beyond 64 bits) and constraint violations: the same rows fail again.
    refusals = (*SQLLogStore.refusals, sqlite3.DataError, sqlite3.IntegrityError, OverflowError)

    def __init__(
        self,
        url_or_path: str | os.PathLike[str],
        *,
        retention_days: float | None = None,
        prune_interval_s: float = DEFAULT_PRUNE_INTERVAL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(retention_days=retention_days, prune_interval_s=prune_interval_s, timeout_s=timeout_s)
        self.path = sqlite_path(url_or_path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def close_sync(self) -> None:
        """Close the connection (a later call reopens it)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection_locked().execute(sql, params).fetchall()

    def _write_rows(self, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            conn = self._connection_locked()
            with conn:  # one transaction: commit on success, roll back on error
                conn.executemany(_INSERT, rows)

    def _delete_before(self, start_unix_nano: int) -> int:
        with self._lock:
            conn = self._connection_locked()
            with conn:
                return conn.execute("DELETE FROM llm_records WHERE start_unix_nano < ?", (start_unix_nano,)).rowcount

    def _connect(self) -> None:
        with self._lock:
            self._connection_locked()

    def _unavailable(self, exc: Exception) -> LogStoreUnavailable | None:
        if isinstance(exc, sqlite3.OperationalError):
            if "locked" in str(exc) or "busy" in str(exc) or "interrupted" in str(exc):
                return LogStoreTimeout(f"the log store did not answer in time ({exc})")
            return LogStoreUnavailable(f"the log store cannot answer: {exc}")
        return None

    def _interrupt(self) -> None:
        conn = self._conn
        if conn is not None:
            conn.interrupt()  # thread-safe: the statement in the write thread ends with "interrupted"

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
            conn.execute(f"PRAGMA busy_timeout = {max(1, round(self.timeout_s * 1000))}")
            # Only a new, empty file takes the page size (an existing one keeps its own). Rows hold
            # ~2 KB of JSON: 8 KiB pages need half the page writes and reads of the 4 KiB default.
            conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
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
