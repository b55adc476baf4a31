"""Length bounds for client- and upstream-controlled strings before they reach a record, label, span or log line.

A model name, session id, metadata value or path comes from whoever sent the request (or from an
upstream's answer): unbounded, it becomes a multi-megabyte Prometheus label or span attribute. Every
such value goes through :func:`bounded` where it enters the exchange or the record, so each sink
sees the same cut, marked value. The check is one ``len()``: cheap enough for the request path.
"""

from __future__ import annotations

from typing import Final, overload

__all__ = ["MAX_NAME_CHARS", "MAX_TEXT_CHARS", "TRUNCATION_MARK", "bounded"]

MAX_NAME_CHARS: Final = 256
"""Identifiers: model and deployment names, session id, user, route, error type. Real model names
(Bedrock ARNs included) stay well below this."""
MAX_TEXT_CHARS: Final = 2048
"""Free text: paths, metadata values, error messages."""
TRUNCATION_MARK: Final = "...[truncated]"
"""Ends a cut value, so a reader knows it is not the whole string."""


@overload
def bounded(value: str, limit: int = MAX_NAME_CHARS) -> str: ...
@overload
def bounded(value: None, limit: int = MAX_NAME_CHARS) -> None: ...
@overload
def bounded(value: str | None, limit: int = MAX_NAME_CHARS) -> str | None: ...
def bounded(value: str | None, limit: int = MAX_NAME_CHARS) -> str | None:
    """``value`` itself when it has at most ``limit`` characters, else its start plus :data:`TRUNCATION_MARK`
    (``limit`` characters in all)."""
    if value is None or len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK
