"""The request log store: records kept in a database, searchable through a query API and ``/logs``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import ConfigurationError
from .sqlite import SQLiteLogStore

if TYPE_CHECKING:
    from ...config import LogStoreConfig

__all__ = ["SQLiteLogStore", "open_log_store"]


def open_log_store(config: LogStoreConfig) -> SQLiteLogStore:
    """The store ``config.url`` names (the caller checks ``config.enabled``).

    Raises:
        ConfigurationError: the URL's scheme is not supported.
    """
    scheme = config.url.partition("://")[0].lower() if "://" in config.url else ""
    if scheme == "sqlite":
        return SQLiteLogStore(config.url)
    # PostgreSQL arrives in a later release; until then say so rather than guess.
    raise ConfigurationError(
        f"exporters.log_store.url: unsupported scheme {scheme or config.url!r}; "
        "use sqlite:///relative.db or sqlite:////absolute/path.db"
    )
