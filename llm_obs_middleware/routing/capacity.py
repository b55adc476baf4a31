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

from llm_obs_middleware.asgi.aliases import Send
from llm_obs_middleware.asgi.messages import error_json, send_json
from llm_obs_middleware.asgi.state import Exchange

__all__ = ["UpstreamSlots", "send_overloaded"]

_RETRY_AFTER = (b"retry-after", b"1")


class UpstreamSlots:
    """At most ``size`` upstream exchanges at once; a request waits up to ``wait_s`` for a free one."""

    __slots__ = ("_semaphore", "size", "wait_s")

    def __init__(self, size: int, wait_s: float) -> None:
        self.size = size
        self.wait_s = wait_s
        self._semaphore = asyncio.Semaphore(size)

    async def acquire(self) -> bool:
        """Take a slot (``False``: none came free within ``wait_s``; the request is to be shed)."""
        semaphore = self._semaphore
        if not semaphore.locked():
            return await semaphore.acquire()  # a free slot: returns at once, no suspension
        if self.wait_s <= 0:
            return False
        try:
            async with asyncio.timeout(self.wait_s):
                return await semaphore.acquire()
        except TimeoutError:
            return False

    def release(self) -> None:
        self._semaphore.release()


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
