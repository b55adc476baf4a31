"""UpstreamSlots on its own: never more holders than slots, and no slot lost to a timeout or a cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest

from llm_obs_middleware.routing.capacity import UpstreamSlots


async def _crowd(seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    slots = UpstreamSlots(3, 0.02)
    held = peak = served = shed = 0

    async def one() -> None:
        nonlocal held, peak, served, shed
        if not slots.take() and not await slots.acquire():
            shed += 1
            return
        held += 1
        peak = max(peak, held)
        try:
            await asyncio.sleep(rng.random() * 0.01)
        finally:
            held -= 1
            slots.release()
        served += 1

    tasks = [asyncio.create_task(one()) for _ in range(100)]
    await asyncio.sleep(0.005)
    for task in rng.sample(tasks, 10):  # clients that hang up, waiting or holding a slot
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert peak <= 3
    assert held == 0
    assert slots.take() and slots.take() and slots.take() and not slots.take()  # all three came back
    return served, shed


@pytest.mark.parametrize("seed", range(5))
def test_slots_under_a_crowd_with_timeouts_and_cancellations(seed: int) -> None:
    served, shed = asyncio.run(_crowd(seed))
    assert served > 0
    assert shed > 0  # 100 requests for 3 slots within 20 ms: some are shed


def test_a_freed_slot_goes_to_the_longest_waiting_request() -> None:
    async def scenario() -> list[str]:
        slots = UpstreamSlots(1, 1.0)
        assert slots.take()
        order: list[str] = []

        async def wait(name: str) -> None:
            assert await slots.acquire()
            order.append(name)
            slots.release()

        first = asyncio.create_task(wait("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(wait("second"))
        await asyncio.sleep(0)
        assert not slots.take()  # requests are waiting: a newcomer does not jump the queue
        slots.release()
        await asyncio.gather(first, second)
        return order

    assert asyncio.run(scenario()) == ["first", "second"]
