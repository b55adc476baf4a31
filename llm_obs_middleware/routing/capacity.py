"""How many upstream requests may be in flight at once, and what a request over that limit gets.

A streamed answer holds its upstream connection for as long as it lasts, so the connection pool is
the gateway's capacity. Waiting for a free connection used to count as a connect timeout of the
provider: 2,000 concurrent streams against a pool of 512 cooled healthy deployments and failed
unrelated requests for 30 s (issue 13). Now a request takes a slot before it goes upstream (as many
slots as the pool has connections, so the transport itself never waits), waits for one at most
``routing.pool_wait_s``, and is otherwise shed with a 503 and ``Retry-After``: over capacity is the
gateway's condition, never a deployment's or a key's.
"""

from __future__ import annotations

import asyncio
from collections import deque

from llm_obs_middleware.asgi.aliases import Send
from llm_obs_middleware.asgi.messages import error_json, send_json
from llm_obs_middleware.asgi.state import Exchange

__all__ = ["UpstreamSlots", "send_overloaded"]

_RETRY_AFTER = (b"retry-after", b"1")


class UpstreamSlots:
    """At most ``size`` upstream exchanges at once; a request waits up to ``wait_s`` for a free one.

    A counter, not an ``asyncio.Semaphore``: every request takes a slot, and the semaphore's checks cost
    several times more. Slots freed go to waiting requests first, longest waiting first.
    """

    __slots__ = ("_free", "_waiters", "size", "wait_s")

    def __init__(self, size: int, wait_s: float) -> None:
        self.size = size
        self.wait_s = wait_s
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """Take a slot if one is free and no request waits for one (``False``: see :meth:`acquire`)."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> bool:
        """Take a slot (``False``: none came free within ``wait_s``; the request is to be shed)."""
        if self.take():
            return True
        if self.wait_s <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.wait_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # a slot came as the wait ended: it goes on to the next request
            else:
                waiter.cancel()
                if waiter in self._waiters:  # (a release may have dropped it already, cancelled)
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it directly
                return
        self._free += 1


async def send_overloaded(ex: Exchange | None, send: Send, size: int) -> None:
    """The 503 of a request shed because every upstream connection is busy (no upstream was blamed)."""
    if ex is not None:
        ex.fail("rejected", "gateway_overloaded")
    message = (
        f"the gateway is at capacity: all {size} upstream connections are in use (routing.max_connections); "
        "retry shortly"
    )
    body = error_json(message, "overloaded_error", code="gateway_overloaded")
    await send_json(send, 503, body, [_RETRY_AFTER])
