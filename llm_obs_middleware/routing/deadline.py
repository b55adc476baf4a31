"""The total deadline of an upstream answer: a timer that cancels the reading task where it waits."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

__all__ = ["TotalDeadline"]


class TotalDeadline:
    """A timer for ``deadline`` (a ``time.perf_counter()`` instant) around a ``with`` block in a task: it
    fires whether or not bytes arrive and whatever their framing, cancelling the task where it waits,
    and the block then ends in ``TimeoutError``; ``None`` times nothing (a block that cannot wait).

    What ``asyncio.timeout_at`` does (a cancellation that is not the timer's own stays a cancellation),
    for less: no state enum (on Python 3.11 each enum member lookup goes through ``EnumType.__getattr__``)
    and no coroutines to enter and leave it. It runs for every relayed answer.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_task")

    def __init__(self, deadline: float | None) -> None:
        if deadline is None:  # no deadline: nothing to time
            self._handle = None
            return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("TotalDeadline is used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        now = loop.time()
        when = now + (deadline - time.perf_counter())
        # A deadline passed already fires at the loop's next iteration, as asyncio.timeout_at's does.
        self._handle = loop.call_at(when, self._expire) if when > now else loop.call_soon(self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is None:
            return
        self._handle.cancel()
        # Only our own cancellation becomes a TimeoutError (uncancel: it is handled here).
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
