"""The PostgreSQL request log: the SQLite store's schema and API, for several gateway instances.

Same columns, indexes and queries as SQLite (see ``_sql.py``), plus an identity column ``id`` that
orders rows written in the same nanosecond. The record is a ``json`` column: PostgreSQL keeps its
text byte for byte (``jsonb`` would reorder it), so ``/logs`` returns exactly what was written, and
``record->'metadata'->>'x-tenant-id'`` works in ``psql``. The schema version lives in
``llm_obs_schema_version`` (not a generic ``schema_version``: the database may be shared); schema
migrations run in one transaction under an advisory lock, so instances starting together migrate
once. Writes use one connection and a transaction per batch (psycopg pipelines the inserts), reads
another; both are guarded by locks because calls run in ``asyncio.to_thread`` workers.

The driver is the ``postgres`` extra (``pip install 'llm-obs-middleware[postgres]'``, psycopg 3).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from ...errors import ConfigurationError, MissingDependencyError
from ._base import DEFAULT_PRUNE_INTERVAL_S, SQLLogStore
from ._sql import COLUMNS, Dialect

if TYPE_CHECKING:
    import psycopg
    from psycopg.abc import Buffer
    from psycopg.adapt import Loader

__all__ = ["SCHEMA_VERSION", "PostgresLogStore", "redact_url"]

# Each entry migrates the schema from version i to i + 1: append, never edit a released one.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE llm_records (
            id BIGINT GENERATED ALWAYS AS IDENTITY,
            request_id TEXT PRIMARY KEY,
            start_unix_nano BIGINT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT,
            requested_model TEXT,
            status INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            session_id TEXT,
            team TEXT,
            error_type TEXT,
            trace_id TEXT NOT NULL,
            cost_usd DOUBLE PRECISION,
            input_tokens BIGINT,
            output_tokens BIGINT,
            duration_s DOUBLE PRECISION NOT NULL,
            record JSON NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX llm_records_id ON llm_records (id)",
        # Each filter index ends with the time so "filter, newest first, limit" reads the index in order.
        "CREATE INDEX llm_records_time ON llm_records (start_unix_nano)",
        "CREATE INDEX llm_records_model ON llm_records (model, start_unix_nano)",
        "CREATE INDEX llm_records_requested_model ON llm_records (requested_model, start_unix_nano)",
        "CREATE INDEX llm_records_provider ON llm_records (provider, start_unix_nano)",
        "CREATE INDEX llm_records_status ON llm_records (status, start_unix_nano)",
        "CREATE INDEX llm_records_session ON llm_records (session_id, start_unix_nano)",
        "CREATE INDEX llm_records_team ON llm_records (team, start_unix_nano)",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)
VERSION_TABLE: Final = "llm_obs_schema_version"
# pg_advisory_xact_lock key serialising migrations across instances ("llmobs" in ASCII).
_MIGRATION_LOCK: Final = 0x6C6C6D6F6273
_UPDATES: Final = ", ".join(f"{column} = EXCLUDED.{column}" for column in COLUMNS if column != "request_id")
_UPSERT: Final = (
    f"INSERT INTO llm_records ({', '.join(COLUMNS)}) VALUES ({', '.join('%s' for _ in COLUMNS)})"
    f" ON CONFLICT (request_id) DO UPDATE SET {_UPDATES}"
)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _require_driver() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "the PostgreSQL log store needs the 'postgres' extra: pip install 'llm-obs-middleware[postgres]'"
        ) from exc


class PostgresLogStore(SQLLogStore):
    """Stores records in PostgreSQL and answers queries over them; implements :class:`~..base.Sink`.

    Args:
        url: a libpq URL, ``postgresql://user[:password]@host:port/database``; the database must exist.
        retention_days: records that started longer ago are deleted; ``None`` keeps everything.
        prune_interval_s: seconds between two prunes.
        connect_timeout: seconds to wait for a connection (unless the URL sets ``connect_timeout``).

    Raises:
        MissingDependencyError: psycopg is not installed (the ``postgres`` extra).
    """

    dialect = Dialect("%s", "id")

    def __init__(
        self,
        url: str,
        *,
        retention_days: float | None = None,
        prune_interval_s: float = DEFAULT_PRUNE_INTERVAL_S,
        connect_timeout: float = 10.0,
    ) -> None:
        _require_driver()
        import psycopg

        self._operational_error = psycopg.OperationalError
        # Bad values (a NUL in a text field, a number out of range) and constraint violations: the
        # same rows fail again. A missing table or a lost connection is retried.
        self.refusals = (*SQLLogStore.refusals, psycopg.DataError, psycopg.IntegrityError)
        super().__init__(retention_days=retention_days, prune_interval_s=prune_interval_s)
        self.url = url
        self.connect_timeout = connect_timeout
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer: psycopg.Connection[Any] | None = None
        self._reader: psycopg.Connection[Any] | None = None
        self._migrated = False

    def __repr__(self) -> str:
        return f"PostgresLogStore({redact_url(self.url)!r})"

    def close_sync(self) -> None:
        """Close both connections (a later call reopens them)."""
        with self._write_lock, self._read_lock:
            for conn in (self._writer, self._reader):
                if conn is not None:
                    conn.close()
            self._writer = self._reader = None

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._read_lock:
            for retry in (True, False):
                reused = self._reader is not None
                self._reader = conn = self._usable(self._reader)
                try:
                    return conn.execute(sql, params).fetchall()
                except self._operational_error:
                    # A connection the server dropped (restart, idle timeout) is noticed only on use:
                    # try once more on a new one. A new connection that fails is a real error.
                    if not (retry and reused and conn.broken):
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_rows(self, rows: list[tuple[Any, ...]]) -> None:
        with self._write_lock:
            for retry in (True, False):
                reused = self._writer is not None
                self._writer = conn = self._usable(self._writer)
                try:
                    # Upserts: a batch written twice (a retry after an unclear failure) stores each record once.
                    with conn.transaction(), conn.cursor() as cursor:
                        cursor.executemany(_UPSERT, rows)
                    return
                except self._operational_error:
                    if not (retry and reused and conn.broken):
                        raise

    def _delete_before(self, start_unix_nano: int) -> int:
        with self._write_lock:
            self._writer = conn = self._usable(self._writer)
            return conn.execute("DELETE FROM llm_records WHERE start_unix_nano < %s", (start_unix_nano,)).rowcount

    def _connect(self) -> None:
        with self._write_lock:
            self._writer = self._usable(self._writer)

    def _usable(self, conn: psycopg.Connection[Any] | None) -> psycopg.Connection[Any]:
        """``conn`` if it still works, else a new connection (after a server restart, say)."""
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
        return self._open()

    def _open(self) -> psycopg.Connection[Any]:
        import psycopg

        options: dict[str, Any] = {"autocommit": True, "application_name": "llm-obs"}
        if "connect_timeout" not in self.url:
            options["connect_timeout"] = max(1, round(self.connect_timeout))
        try:
            conn: psycopg.Connection[Any] = psycopg.connect(self.url, **options)
        except psycopg.ProgrammingError as exc:  # a malformed URL, not a server problem
            raise ConfigurationError(f"exporters.log_store.url: {redact_url(self.url)!r}: {exc}") from None
        try:
            # json comes back as the stored bytes: records go out as written, never decoded.
            conn.adapters.register_loader("json", _raw_json_loader())
            if not self._migrated:
                _migrate(conn, self.url)
                self._migrated = True
        except BaseException:
            conn.close()
            raise
        return conn


@functools.cache
def _raw_json_loader() -> type[Loader]:
    from psycopg.adapt import Loader

    class RawJSONLoader(Loader):
        def load(self, data: Buffer) -> bytes:
            return bytes(data)

    return RawJSONLoader


def _migrate(conn: psycopg.Connection[Any], url: str) -> None:
    with conn.transaction():
        # DDL is transactional in PostgreSQL: a failed migration leaves the previous version intact.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
        row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
        current = int(row[0]) if row is not None else 0
        if row is None:
            conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (0)")
        if current > SCHEMA_VERSION:
            raise ConfigurationError(
                f"exporters.log_store.url: {redact_url(url)} has schema version {current}, newer than this "
                f"release supports ({SCHEMA_VERSION}); upgrade llm-obs-middleware"
            )
        for version in range(current, SCHEMA_VERSION):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (version + 1,))
