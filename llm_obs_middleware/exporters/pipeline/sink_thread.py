"""A sink's own worker thread: its blocking calls run there, never in the event loop's default executor.

``asyncio.to_thread`` shares one pool with everything else in the process (aiohttp's DNS lookups
among them), and interpreter exit joins its threads: a database that hangs would use the pool up,
stall the other sinks and upstream connects, and keep a SIGTERM'd process alive (issue 13, finding
10). A :class:`SinkThread` is one daemon thread per sink (per purpose): calls run in order, a caller
that stops waiting (a timeout, a cancelled task) withdraws a call that has not started, and nothing
ever waits for the thread to end.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["SinkThread"]

P = ParamSpec("P")
T = TypeVar("T")

_Call = tuple["Future[Any]", Callable[[], Any]]


class SinkThread:
    """One daemon thread running blocking calls in order, for one sink.

    Args:
        name: the thread's name (seen in ``py-spy`` and thread dumps).
    """

    __slots__ = ("_calls", "_lock", "_thread", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in the thread; cancelling the caller withdraws the call if it has not started."""
        future: Future[T] = Future()
        with self._lock:
            if self._thread is None:
                # A daemon thread: neither interpreter exit nor shutdown waits for a hung call.
                self._thread = threading.Thread(target=_serve, args=(self._calls,), name=self.name, daemon=True)
                self._thread.start()
            self._calls.put((future, functools.partial(fn, *args, **kwargs)))
        # wrap_future cancels ``future`` when the caller is cancelled: a queued call is then skipped.
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        """Let the thread end once its queued calls are done; a later :meth:`run` starts a new one. Never waits."""
        with self._lock:
            if self._thread is not None:
                self._calls.put(None)
                self._calls = queue.SimpleQueue()
                self._thread = None


def _serve(calls: queue.SimpleQueue[_Call | None]) -> None:
    while (call := calls.get()) is not None:
        future, fn = call
        if not future.set_running_or_notify_cancel():
            continue  # withdrawn by its caller before it started
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)  # a running future cannot be cancelled: this always lands
