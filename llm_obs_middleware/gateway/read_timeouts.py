"""The read deadlines of ``llm-obs serve`` (``--header-timeout``, ``--body-timeout``), importable without uvicorn."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ReadTimeouts"]


class ReadTimeouts(NamedTuple):
    """Seconds a client has to send its request headers, and then its body."""

    header_s: float = 10.0
    body_s: float = 60.0
