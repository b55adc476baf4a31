"""Console logging of ``llm-obs serve``: text or JSON lines on stderr, written off the event loop.

The package logs through stdlib ``logging`` under ``llm_obs_middleware.*`` and never configures it
itself (a library must not); ``llm-obs serve`` does, with :func:`logging_config` (a ``dictConfig``
dict, so uvicorn applies it again in each worker process). Lines that describe an event carry its
fields in ``extra={"llm_obs": {...}}``: the text form already has them in the message, the JSON
form adds them as keys. No field ever holds a secret or content: key *names*, never keys.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from typing import Any, Literal

__all__ = ["FIELDS_ATTR", "BackgroundStderrHandler", "JSONFormatter", "LogFormat", "logging_config"]

LogFormat = Literal["text", "json"]
FIELDS_ATTR = "llm_obs"
"""The ``extra`` key of a record's structured fields."""

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_QUEUE_BOUND = 10_000


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's fields, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS_ATTR, None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class BackgroundStderrHandler(logging.Handler):
    """Formats and writes records to stderr in a thread of its own, so a slow terminal or pipe never
    blocks the event loop. Bounded: when ``capacity`` records are waiting, new ones are counted and
    dropped, and the count is written once the queue drains."""

    def __init__(self, capacity: int = _QUEUE_BOUND) -> None:
        super().__init__()
        self._queue: queue.Queue[logging.LogRecord | None] = queue.Queue(capacity)
        self._lost = 0
        self._thread = threading.Thread(target=self._drain, name="llm-obs-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        # Resolve the message now: its arguments may change once the caller goes on.
        record.msg, record.args = record.getMessage(), None
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._lost += 1

    def _drain(self) -> None:
        while (record := self._queue.get()) is not None:
            try:
                text = self.format(record)
                if self._lost and self._queue.empty():
                    lost, self._lost = self._lost, 0
                    text += "\n" + self.format(_lost_record(lost))
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
            except Exception:
                self.handleError(record)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)  # written after what is queued already
            self._thread.join(timeout=5)
        super().close()


def _lost_record(count: int) -> logging.LogRecord:
    return logging.LogRecord(
        "llm_obs_middleware", logging.WARNING, __file__, 0, "%d log lines dropped: stderr was too slow", (count,), None
    )


def logging_config(level: int, log_format: LogFormat) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: the package's and uvicorn's loggers, to stderr, as ``log_format``."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JSONFormatter"} if log_format == "json" else {"format": _TEXT_FORMAT}
    )
    handler = {"()": f"{__name__}.BackgroundStderrHandler", "formatter": "console"}
    logger = {"handlers": ["console"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"console": formatter},
        "handlers": {"console": handler},
        "loggers": {"llm_obs_middleware": logger, "uvicorn": logger, "uvicorn.access": logger},
    }
