"""The bounded FIFO the export pipeline queues through (one in front of the sinks, one per sink)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Buffer"]

T = TypeVar("T")


class Buffer(Generic[T]):
    """A bounded FIFO with a drop policy and a wake-up event for its one consumer."""

    __slots__ = ("_drop_oldest", "_items", "_limit", "ready", "wake_at")

    def __init__(self, limit: int, drop_oldest: bool) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self._drop_oldest = drop_oldest
        self.ready = asyncio.Event()
        self.wake_at = 1
        """The consumer is woken once this many items are held (raised while it waits for a full batch)."""

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> int:
        """Append ``item``; return how many items were dropped to respect the bound (0 or 1)."""
        items = self._items
        dropped = 0
        if len(items) >= self._limit:
            if not self._drop_oldest:
                return 1
            items.popleft()
            dropped = 1
        items.append(item)
        if len(items) >= self.wake_at:
            self.ready.set()
        return dropped

    def take(self, count: int) -> list[T]:
        items = self._items
        if count >= len(items):
            batch = list(items)
            items.clear()
            return batch
        return [items.popleft() for _ in range(count)]

    async def wait(self, max_wait_s: float | None = None) -> None:
        """Return when woken (an item arrived, or :meth:`wake`) or after ``max_wait_s`` seconds."""
        self.ready.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), max_wait_s)

    def wake(self) -> None:
        self.ready.set()
