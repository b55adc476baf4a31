"""The request log store: records kept in a database, searchable through a query API and ``/logs``.

SQLite (a file, zero set-up) by default; PostgreSQL for several instances (the ``postgres`` extra).
Both have the same schema and answer the same queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_obs_middleware.config.exporters import GATEWAY_LOG_STORE_URL
from llm_obs_middleware.errors import ConfigurationError
from llm_obs_middleware.exporters.logstore._base import LogStoreTimeout, LogStoreUnavailable, SQLLogStore
from llm_obs_middleware.exporters.logstore._sql import LogFilters
from llm_obs_middleware.exporters.logstore.sqlite import SQLiteLogStore

if TYPE_CHECKING:
    from llm_obs_middleware.config.settings import LogStoreConfig

__all__ = ["LogFilters", "LogStoreTimeout", "LogStoreUnavailable", "SQLLogStore", "SQLiteLogStore", "open_log_store"]

_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


def open_log_store(config: LogStoreConfig) -> SQLLogStore:
    """The store ``config.url`` names, the gateway's SQLite file when unset (the caller checks ``config.enabled``).

    Raises:
        ConfigurationError: the URL's scheme is not supported.
        MissingDependencyError: a PostgreSQL URL without the ``postgres`` extra installed.
    """
    url = config.url or GATEWAY_LOG_STORE_URL
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        return SQLiteLogStore(url, retention_days=config.retention_days, timeout_s=config.timeout_s)
    if scheme in _POSTGRES_SCHEMES:
        from llm_obs_middleware.exporters.logstore.postgres import PostgresLogStore

        return PostgresLogStore(
            url,
            retention_days=config.retention_days,
            timeout_s=config.timeout_s,
            read_pool_size=config.read_pool_size,
        )
    raise ConfigurationError(
        f"exporters.log_store.url: unsupported scheme {scheme or url!r}; use sqlite:///relative.db, "
        "sqlite:////absolute/path.db or postgresql://user@host:5432/database"
    )
