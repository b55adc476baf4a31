"""The behaviour both SQL log stores share: the sink, the query API, retention and the async wrappers.

Subclasses supply the connection handling (:meth:`SQLLogStore._fetch`, ``_write_rows``,
``_delete_before``, :meth:`SQLLogStore.close_sync`) and a :class:`~._sql.Dialect`. Blocking calls
run in the store's own threads (:class:`~.._sink_thread.SinkThread`: one for writes, one for reads),
never in the event loop's default executor, so a database that hangs stalls neither the loop, nor
the other sinks, nor anything else that uses that executor. Every read and write has a deadline
(``timeout_s``): the database's own (statement, lock and busy timeouts) and, for the async reads
behind ``/logs``, the caller's, which raises :class:`LogStoreTimeout` (``/logs`` answers 504).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Unpack

import msgspec

from llm_obs_middleware.errors import ExportError, PermanentExportError
from llm_obs_middleware.exporters.logstore._sql import (
    Filters,
    StatsRow,
    StatsWindow,
    record_row,
    session_sql,
    stats_payload,
    stats_row,
    stats_sql,
)
from llm_obs_middleware.exporters.pipeline.export_pipeline import THREAD_SLICE, give_way_to_the_loop
from llm_obs_middleware.exporters.pipeline.sink_thread import SinkThread

if TYPE_CHECKING:
    from llm_obs_middleware.exporters.logstore._sql import Dialect, LogFilters
    from llm_obs_middleware.records.schema import LLMRecord

__all__ = ["DEFAULT_PRUNE_INTERVAL_S", "DEFAULT_TIMEOUT_S", "LogStoreTimeout", "LogStoreUnavailable", "SQLLogStore"]

logger = logging.getLogger("llm_obs_middleware.export")

DEFAULT_PRUNE_INTERVAL_S: Final = 3600.0
DEFAULT_TIMEOUT_S: Final = 10.0
# The async reads' own deadline is this much later than the database's timeouts (which end a
# statement cleanly, leaving the connection usable): it only catches a server that answers nothing.
_READ_DEADLINE_MARGIN_S: Final = 1.0
_DAY_NS: Final = 86_400 * 1_000_000_000


class LogStoreUnavailable(ExportError):
    """The log store cannot answer a read now (the database is down or refuses): ``/logs`` answers 503."""


class LogStoreTimeout(LogStoreUnavailable):
    """The log store did not answer a read within ``timeout_s`` (a lock, a hung server): ``/logs`` answers 504."""


class SQLLogStore(ABC):
    """Stores records and answers queries over them; implements :class:`~..base.Sink`.

    Args:
        retention_days: records that started longer ago are deleted (at start, then at most every
            ``prune_interval_s`` after a write); ``None`` keeps everything.
        prune_interval_s: seconds between two prunes.
        timeout_s: longest a statement may run or wait for a lock, and an async read may take.
    """

    name = "log_store"
    dialect: Dialect
    refusals: tuple[type[Exception], ...] = (msgspec.EncodeError, UnicodeError)
    """Errors that say the records themselves cannot be written (a retry fails the same way): raised
    as :class:`~...errors.PermanentExportError`. Anything else is retried."""

    def __init__(
        self,
        *,
        retention_days: float | None = None,
        prune_interval_s: float = DEFAULT_PRUNE_INTERVAL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ):
        self.retention_days = retention_days
        self.prune_interval_s = prune_interval_s
        self.timeout_s = timeout_s
        self._next_prune = 0.0
        self._encode = msgspec.json.Encoder().encode
        self._writes = SinkThread(f"llm-obs-{self.name}-writes")
        self._reads = SinkThread(f"llm-obs-{self.name}-reads")

    # -- what subclasses provide --------------------------------------------------------------

    @abstractmethod
    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a read query and return its rows."""

    @abstractmethod
    def _write_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows (values of ``COLUMNS``) in one transaction; a row whose request id is stored is skipped."""

    @abstractmethod
    def _delete_before(self, start_unix_nano: int) -> int:
        """Delete records that started before this time; return how many."""

    @abstractmethod
    def _connect(self) -> None:
        """Open the connection(s) and bring the schema up to date, unless already done."""

    @abstractmethod
    def close_sync(self) -> None:
        """Close the connection(s) (a later call reopens them)."""

    async def _afetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """:meth:`_fetch` for the async API: in the store's read thread (PostgreSQL: its async pool)."""
        return await self._reads.run(self._fetch, sql, params)

    def _unavailable(self, exc: Exception) -> LogStoreUnavailable | None:
        """The driver error ``exc`` as a :class:`LogStoreUnavailable` (or timeout), ``None`` if it is a bug."""
        return None

    @abstractmethod
    def _interrupt(self) -> None:
        """Called from the event loop when closing found the write thread stuck: make its statement end."""

    async def _aclose(self) -> None:
        """Release what the async API holds (PostgreSQL adds its pool)."""
        self._reads.stop()

    # -- Sink ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, migrate the schema and prune old records (in the write thread)."""
        await self._writes.run(self._start)

    async def export(self, records: Sequence[LLMRecord]) -> None:
        if records:
            await self._writes.run(self._export, records)

    async def close(self) -> None:
        """Close the connections, waiting at most ``timeout_s`` for a write in progress.

        A write still stuck after that (a server that ignores its own timeouts) is interrupted and its
        thread left behind: it is a daemon thread, so shutdown never waits for it.
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._writes.run(self.close_sync)
        except TimeoutError:
            logger.warning("log store: a write was still running after %g s at close; interrupting it", self.timeout_s)
            self._interrupt()
        finally:
            self._writes.stop()
            await self._aclose()

    def _start(self) -> None:
        self._connect()
        self._maybe_prune()

    def _export(self, records: Sequence[LLMRecord]) -> None:
        try:
            self.write(records)
        except self.refusals as exc:
            # Named by class and SQLSTATE only: the driver's text may quote the values.
            state = getattr(exc, "sqlstate", None)
            detail = f"{type(exc).__name__} (SQLSTATE {state})" if state else type(exc).__name__
            raise PermanentExportError(f"the log store refused the records: {detail}") from exc
        self._maybe_prune()

    # -- synchronous API ----------------------------------------------------------------------

    def write(self, records: Sequence[LLMRecord]) -> None:
        """Insert ``records`` in one transaction (blocking).

        A record whose request id is already stored is left as it is: ids are ours (random), so that
        is the same record written again (a retried batch), never another client's.
        """
        encode = self._encode
        rows: list[tuple[Any, ...]] = []
        # Run in the export thread, building a batch's rows holds the GIL for milliseconds: in slices.
        for start in range(0, len(records), THREAD_SLICE):
            rows += [record_row(record, encode) for record in records[start : start + THREAD_SLICE]]
            give_way_to_the_loop()
        self._write_rows(rows)

    def query(self, *, limit: int = 100, **filters: Unpack[LogFilters]) -> list[bytes]:
        """Records (their JSON) matching every filter given (:class:`LogFilters`), newest first, at most ``limit``.

        Raises:
            ValueError: a filter value cannot be parsed (the message names it).
        """
        sql, params = Filters(filters).select_records(self.dialect, limit)
        return [row[0] for row in self._fetch(sql, params)]

    def get(self, request_id: str) -> bytes | None:
        """The record (its JSON) with this request id, or ``None``."""
        rows = self._fetch(self._get_sql(), (request_id,))
        return rows[0][0] if rows else None

    def session(self, session_id: str, *, limit: int = 1000) -> list[bytes]:
        """Every record of one session (their JSON), oldest first, at most ``limit``."""
        return [row[0] for row in self._fetch(session_sql(self.dialect), (session_id, max(0, int(limit))))]

    def stats(
        self,
        *,
        since: float | str | None = None,
        until: float | str | None = None,
        group_by: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        team: str | None = None,
    ) -> dict[str, Any]:
        """Totals, error rate, p50/p99 latency, tokens and cost over a time window, optionally per group.

        Args:
            since: window start (inclusive); default 24 hours before ``until``.
            until: window end (exclusive); default now.
            group_by: ``model``, ``provider`` or ``team``.

        Raises:
            ValueError: a parameter cannot be parsed (the message names it).
        """
        window = StatsWindow(since=since, until=until, group_by=group_by, model=model, provider=provider, team=team)
        where, params = window.filters.where(self.dialect)
        totals = self._fetch(stats_sql(self.dialect, where, None), params)
        groups = []
        if window.group_by is not None:
            groups = self._fetch(stats_sql(self.dialect, where, window.group_by), params)
        return _stats(window, totals, groups)

    def prune(self, now_unix_nano: int | None = None) -> int:
        """Delete records older than the retention; return how many (0 without a retention)."""
        if self.retention_days is None:
            return 0
        now = time.time_ns() if now_unix_nano is None else now_unix_nano
        deleted = self._delete_before(now - int(self.retention_days * _DAY_NS))
        if deleted:
            logger.info("log store: pruned %d records older than %g days", deleted, self.retention_days)
        return deleted

    def _maybe_prune(self) -> None:
        if self.retention_days is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.prune_interval_s
        try:
            self.prune()
        except Exception:  # the records are written; a failed prune is retried at the next interval
            logger.exception("log store: pruning old records failed")

    def _get_sql(self) -> str:
        return f"SELECT record FROM llm_records WHERE request_id = {self.dialect.param}"

    # -- async API for request handlers: bounded in time, never in the loop's default executor ---

    async def aquery(self, *, limit: int = 100, **filters: Unpack[LogFilters]) -> list[bytes]:
        """:meth:`query`, answered within ``timeout_s``.

        Raises:
            ValueError: a filter value cannot be parsed (the message names it).
            LogStoreTimeout: the database did not answer in time.
            LogStoreUnavailable: the database cannot be reached.
        """
        sql, params = Filters(filters).select_records(self.dialect, limit)
        async with self._deadline():
            return [row[0] for row in await self._afetch(sql, params)]

    async def aget(self, request_id: str) -> bytes | None:
        """:meth:`get`, answered within ``timeout_s`` (raises as :meth:`aquery`)."""
        async with self._deadline():
            rows = await self._afetch(self._get_sql(), (request_id,))
        return rows[0][0] if rows else None

    async def asession(self, session_id: str, *, limit: int = 1000) -> list[bytes]:
        """:meth:`session`, answered within ``timeout_s`` (raises as :meth:`aquery`)."""
        async with self._deadline():
            rows = await self._afetch(session_sql(self.dialect), (session_id, max(0, int(limit))))
        return [row[0] for row in rows]

    async def astats(
        self,
        *,
        since: float | str | None = None,
        until: float | str | None = None,
        group_by: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        team: str | None = None,
    ) -> dict[str, Any]:
        """:meth:`stats`, answered within ``timeout_s`` (raises as :meth:`aquery`)."""
        window = StatsWindow(since=since, until=until, group_by=group_by, model=model, provider=provider, team=team)
        where, params = window.filters.where(self.dialect)
        groups: list[tuple[Any, ...]] = []
        async with self._deadline():
            totals = await self._afetch(stats_sql(self.dialect, where, None), params)
            if window.group_by is not None:
                groups = await self._afetch(stats_sql(self.dialect, where, window.group_by), params)
        return _stats(window, totals, groups)

    @contextlib.asynccontextmanager
    async def _deadline(self) -> AsyncIterator[None]:
        """Bound a read by ``timeout_s``; driver errors that mean "not now" become :class:`LogStoreUnavailable`."""
        try:
            async with asyncio.timeout(self.timeout_s + _READ_DEADLINE_MARGIN_S):
                yield
        except TimeoutError:
            raise LogStoreTimeout(f"the log store did not answer within {self.timeout_s:g} s") from None
        except LogStoreUnavailable:
            raise
        except Exception as exc:
            unavailable = self._unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc


def _stats(window: StatsWindow, totals: list[tuple[Any, ...]], groups: list[tuple[Any, ...]]) -> dict[str, Any]:
    return stats_payload(window, stats_row(totals[0]) if totals else StatsRow(), [stats_row(row) for row in groups])
