"""The PostgreSQL request log: the SQLite store's schema and API, for several gateway instances.

Same columns, indexes and queries as SQLite (see ``_sql.py``), plus an identity column ``id`` that
orders rows written in the same nanosecond. The record is a ``json`` column: PostgreSQL keeps its
text byte for byte (``jsonb`` would reorder it), so ``/logs`` returns exactly what was written, and
``record->'metadata'->>'x-tenant-id'`` works in ``psql``. The schema version lives in
``llm_obs_schema_version`` (not a generic ``schema_version``: the database may be shared); schema
migrations run in one transaction under an advisory lock, so instances starting together migrate
once. Writes use one connection and a transaction per batch (psycopg pipelines the inserts), in the
store's write thread; ``/logs`` reads use a small pool of async connections (``psycopg_pool``), and
the synchronous query API a connection of its own. Every connection has ``statement_timeout`` and
``lock_timeout`` set to the store's ``timeout_s``, so a locked table or a hung server fails a call in
bounded time (the export pipeline retries a failed batch) instead of holding it. A database dropped
and created again (a restore, a failover) is noticed by the missing table: the schema is created
again and the batch retried.

The driver is the ``postgres`` extra (``pip install 'llm-obs-middleware[postgres]'``, psycopg 3).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

from llm_obs_middleware.errors import ConfigurationError, MissingDependencyError
from llm_obs_middleware.exporters.logstore._base import (
    DEFAULT_PRUNE_INTERVAL_S,
    DEFAULT_TIMEOUT_S,
    LogStoreTimeout,
    LogStoreUnavailable,
    SQLLogStore,
)
from llm_obs_middleware.exporters.logstore._sql import COLUMNS, Dialect

if TYPE_CHECKING:
    import psycopg
    from psycopg.abc import Buffer
    from psycopg.adapt import Loader

    from llm_obs_middleware.exporters.logstore._postgres_reads import AsyncReader

__all__ = ["SCHEMA_VERSION", "PostgresLogStore", "redact_url", "session_settings"]

logger = logging.getLogger("llm_obs_middleware.export")

T = TypeVar("T")

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
    # 2: the client's x-request-id in its own column (request_id is ours since then; issue 13), indexed
    # only where a client sent one (most rows have none, and each indexed row costs every insert).
    (
        "ALTER TABLE llm_records ADD COLUMN IF NOT EXISTS client_request_id TEXT",
        "CREATE INDEX IF NOT EXISTS llm_records_client_request_id ON llm_records (client_request_id, start_unix_nano)"
        " WHERE client_request_id IS NOT NULL",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)
VERSION_TABLE: Final = "llm_obs_schema_version"
# pg_advisory_xact_lock key serialising migrations across instances ("llmobs" in ASCII).
_MIGRATION_LOCK: Final = 0x6C6C6D6F6273
# Never an update: a stored id is the same record written again (a retried batch), not a new one.
_INSERT: Final = (
    f"INSERT INTO llm_records ({', '.join(COLUMNS)}) VALUES ({', '.join('%s' for _ in COLUMNS)})"
    " ON CONFLICT (request_id) DO NOTHING"
)
# Both timeouts for every connection (set_config, not SET: it takes parameters, and poolers allow it).
_PRUNE_TIMEOUT_FACTOR: Final = 30
_SESSION_SETTINGS: Final = "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def session_settings(timeout_s: float) -> tuple[str, tuple[str, str]]:
    """The statement setting both timeouts of a connection to ``timeout_s``, and its parameters."""
    millis = f"{max(1, round(timeout_s * 1000))}ms"
    return _SESSION_SETTINGS, (millis, millis)


def _require_driver() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "the PostgreSQL log store needs the 'postgres' extra: pip install 'llm-obs-middleware[postgres]'"
        ) from exc


class _Connection:
    """One lazily opened connection and the lock that serialises its users."""

    __slots__ = ("conn", "lock")

    def __init__(self) -> None:
        self.conn: psycopg.Connection[Any] | None = None
        self.lock = threading.Lock()


class PostgresLogStore(SQLLogStore):
    """Stores records in PostgreSQL and answers queries over them; implements :class:`~..base.Sink`.

    Args:
        url: a libpq URL, ``postgresql://user[:password]@host:port/database``; the database must exist.
        retention_days: records that started longer ago are deleted; ``None`` keeps everything.
        prune_interval_s: seconds between two prunes.
        connect_timeout: seconds to wait for a connection (unless the URL sets ``connect_timeout``).
        timeout_s: ``statement_timeout`` and ``lock_timeout`` of every connection; also the longest an
            async read (``/logs``) may take, waiting for a pooled connection included.
        read_pool_size: connections the async reads (``/logs``) share at most.

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
        timeout_s: float = DEFAULT_TIMEOUT_S,
        read_pool_size: int = 4,
    ) -> None:
        _require_driver()
        import psycopg

        self._errors = psycopg.errors
        # Bad values (a NUL in a text field, a number out of range) and constraint violations: the
        # same rows fail again. A missing table or a lost connection is retried.
        self.refusals = (*SQLLogStore.refusals, psycopg.DataError, psycopg.IntegrityError)
        super().__init__(retention_days=retention_days, prune_interval_s=prune_interval_s, timeout_s=timeout_s)
        self.url = url
        self.connect_timeout = connect_timeout
        self.read_pool_size = read_pool_size
        self._writer = _Connection()
        self._reader = _Connection()
        self._migrated = False
        self._async_reader: AsyncReader | None = None

    def __repr__(self) -> str:
        return f"PostgresLogStore({redact_url(self.url)!r})"

    def close_sync(self) -> None:
        """Close both connections (a later call reopens them)."""
        for slot in (self._writer, self._reader):
            with slot.lock:
                if slot.conn is not None:
                    slot.conn.close()
                    slot.conn = None

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._using(self._reader, lambda conn: conn.execute(sql, params).fetchall())

    def _write_rows(self, rows: list[tuple[Any, ...]]) -> None:
        def insert(conn: psycopg.Connection[Any]) -> None:
            # A batch written twice (a retry after an unclear failure) stores each record once.
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(_INSERT, rows)

        self._using(self._writer, insert)

    def _delete_before(self, start_unix_nano: int) -> int:
        # The first prune of a big table may take longer than a write should: a longer statement
        # timeout for it alone (the lock timeout stays, so a locked table still fails it quickly).
        millis = f"{max(1, round(self.timeout_s * _PRUNE_TIMEOUT_FACTOR * 1000))}ms"

        def delete(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                conn.execute("SELECT set_config('statement_timeout', %s, true)", (millis,))
                return conn.execute("DELETE FROM llm_records WHERE start_unix_nano < %s", (start_unix_nano,)).rowcount

        return self._using(self._writer, delete)

    def _connect(self) -> None:
        with self._writer.lock:
            self._writer.conn = self._usable(self._writer.conn)

    def _using(self, slot: _Connection, action: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``action`` on ``slot``'s connection, once more on a new one if the server had dropped it,
        and once more after creating the schema again if the database lost it."""
        reconnected = recreated = False
        with slot.lock:
            while True:
                reused = slot.conn is not None
                slot.conn = conn = self._usable(slot.conn)
                try:
                    return action(conn)
                except self._errors.UndefinedTable:
                    if recreated:
                        raise
                    recreated = True
                    # The database was dropped and created again (a restore, a failover): without
                    # this, every later write fails until a restart.
                    logger.warning("log store: table llm_records is missing; creating the schema again")
                    _migrate(conn, self.url)
                except self._errors.OperationalError:
                    # A connection the server dropped (restart, idle timeout) is noticed only on use:
                    # try once more on a new one. A new connection that fails is a real error.
                    if reconnected or not (reused and conn.broken):
                        raise
                    reconnected = True

    def _usable(self, conn: psycopg.Connection[Any] | None) -> psycopg.Connection[Any]:
        """``conn`` if it still works, else a new connection (after a server restart, say)."""
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
        return self._open()

    def _open(self) -> psycopg.Connection[Any]:
        import psycopg

        try:
            conn: psycopg.Connection[Any] = psycopg.connect(self.url, **self.connect_options())
        except psycopg.ProgrammingError as exc:  # a malformed URL, not a server problem
            raise ConfigurationError(f"exporters.log_store.url: {redact_url(self.url)!r}: {exc}") from None
        try:
            # json comes back as the stored bytes: records go out as written, never decoded.
            conn.adapters.register_loader("json", raw_json_loader())
            conn.execute(*session_settings(self.timeout_s))
            if not self._migrated:
                _migrate(conn, self.url)
                self._migrated = True
        except BaseException:
            conn.close()
            raise
        return conn

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of every connection this store opens (sync or async)."""
        options: dict[str, Any] = {"autocommit": True, "application_name": "llm-obs"}
        if "connect_timeout" not in self.url:
            options["connect_timeout"] = max(1, round(self.connect_timeout))
        return options

    # -- async reads (/logs) and bounded shutdown ----------------------------------------------

    async def _afetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._async_reader is None:
            from llm_obs_middleware.exporters.logstore._postgres_reads import AsyncReader

            self._async_reader = AsyncReader(self)
        try:
            return await self._async_reader.fetch(sql, params)
        except self._errors.UndefinedTable:
            # The database came back empty: create the schema (in the write thread), then read again.
            await self._writes.run(self._using, self._writer, lambda conn: _migrate(conn, self.url))
            return await self._async_reader.fetch(sql, params)

    def _unavailable(self, exc: Exception) -> LogStoreUnavailable | None:
        from psycopg_pool import PoolTimeout

        name = type(exc).__name__
        if isinstance(exc, PoolTimeout | self._errors.QueryCanceled | self._errors.LockNotAvailable):
            return LogStoreTimeout(f"the log store did not answer within {self.timeout_s:g} s ({name})")
        if isinstance(exc, self._errors.OperationalError):
            # The class name only: a driver message may name hosts or users.
            return LogStoreUnavailable(f"the log store cannot be reached ({name})")
        return None

    def _interrupt(self) -> None:
        conn = self._writer.conn
        if conn is not None:
            # libpq's cancel request blocks on the network: sent from a thread of its own.
            threading.Thread(target=conn.cancel, name="llm-obs-log_store-cancel", daemon=True).start()

    async def _aclose(self) -> None:
        await super()._aclose()
        reader, self._async_reader = self._async_reader, None
        if reader is not None:
            await reader.close(self.timeout_s)


@functools.cache
def raw_json_loader() -> type[Loader]:
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
        if current and conn.execute("SELECT to_regclass('llm_records')").fetchone() == (None,):
            current = 0  # the table was dropped on its own: build it again from the start
        for version in range(current, SCHEMA_VERSION):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (version + 1,))
