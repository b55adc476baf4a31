"""Console logging of ``llm-obs serve``: text or JSON lines on stderr.

The package logs through stdlib ``logging`` under ``llm_obs_middleware.*`` and never configures it
itself (a library must not); ``llm-obs serve`` does, with :func:`logging_config` (a ``dictConfig``
dict, so uvicorn applies it again in each worker process). Lines that describe an event carry its
fields in ``extra={"llm_obs": {...}}``: the text form already has them in the message, the JSON
form adds them as keys. No field ever holds a secret or content: key *names*, never keys.

Lines are written as they are logged (a plain ``StreamHandler``). They come only with failures,
drops and lifecycle events, never per successful request, so that costs a few microseconds when
something goes wrong; a queue and a writer thread would lose the last lines on the way out
(uvicorn re-raises SIGTERM after shutdown, and the process dies before such a thread runs).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

from llm_obs_middleware._log_fields import FIELDS_ATTR

__all__ = ["JSONFormatter", "LogFormat", "logging_config"]

LogFormat = Literal["text", "json"]
"""The ``extra`` key of a record's structured fields."""

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


def logging_config(level: int, log_format: LogFormat) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: the package's and uvicorn's loggers, to stderr, as ``log_format``."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JSONFormatter"} if log_format == "json" else {"format": _TEXT_FORMAT}
    )
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "console"}
    logger = {"handlers": ["console"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"console": formatter},
        "handlers": {"console": handler},
        "loggers": {"llm_obs_middleware": logger, "uvicorn": logger, "uvicorn.access": logger},
    }
