"""The PostgreSQL store's async reads: a small pool of psycopg async connections for ``/logs``.

Reads run on the event loop (no thread is held while the database thinks), at most
``read_pool_size`` at once; more callers wait for a connection, at most ``8 * read_pool_size`` of
them (beyond that a read fails at once: ``/logs`` answers 503). Every pooled connection has the
store's ``statement_timeout`` and ``lock_timeout``, and is checked before use, so a connection the
server dropped is replaced rather than failing a read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from llm_obs_middleware.exporters.logstore.postgres import raw_json_loader, session_settings

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from llm_obs_middleware.exporters.logstore.postgres import PostgresLogStore

__all__ = ["AsyncReader"]

_WAITERS_PER_CONNECTION: Final = 8


class AsyncReader:
    """A lazily opened ``psycopg_pool.AsyncConnectionPool`` bound to the event loop of its first read."""

    __slots__ = ("_opened", "_pool")

    def __init__(self, store: PostgresLogStore) -> None:
        from psycopg_pool import AsyncConnectionPool

        statement, params = session_settings(store.timeout_s)

        async def configure(conn: AsyncConnection[Any]) -> None:
            # json comes back as the stored bytes, as on the store's own connections.
            conn.adapters.register_loader("json", raw_json_loader())
            await conn.execute(statement, params)

        self._pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            store.url,
            kwargs=store.connect_options(),
            min_size=0,  # no connection (and no reconnect loop) until someone reads
            max_size=store.read_pool_size,
            open=False,
            configure=configure,
            check=AsyncConnectionPool.check_connection,
            timeout=store.timeout_s,
            max_waiting=_WAITERS_PER_CONNECTION * store.read_pool_size,
            name="llm-obs-log-reads",
        )
        self._opened = False

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of one query, on a pooled connection (raises the driver's and the pool's errors)."""
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def close(self, timeout_s: float) -> None:
        """Close the pool, waiting at most ``timeout_s`` for reads in progress."""
        if self._opened:
            await self._pool.close(timeout=timeout_s)
