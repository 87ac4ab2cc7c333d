"""The limiter's sliding-minute cap (added when bench/ ratelimit measured 429s from the bucket alone)."""

from __future__ import annotations

import asyncio

from channels.models import Priority
from channels.ratelimit import WINDOW_MARGIN, WINDOW_SECONDS, RateLimiter
from daemon.clock import FakeClock
from tests.channels.channel_support import wait_until


def busiest(stamps: list[float], width: float) -> int:
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_a_saturating_caller_never_exceeds_the_limit_in_any_minute_yet_uses_it() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, 0, clock)  # burst 60: a bucket alone allows 660 in the first minute
    stamps: list[float] = []
    step, seconds = 0.05, 150.0
    for _ in range(int(seconds / step)):
        while limiter.remaining >= 1:
            await limiter.acquire(Priority.STOCK)
            stamps.append(clock.monotonic())
        clock.advance(step)
    assert busiest(stamps, WINDOW_SECONDS + WINDOW_MARGIN) <= 600
    assert len(stamps) >= 0.95 * 600 * seconds / 60


async def test_a_waiter_is_held_until_the_window_has_room() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 2, clock)  # two a minute, both at once
    await limiter.acquire(Priority.STOCK)
    await limiter.acquire(Priority.STOCK)
    task = asyncio.create_task(limiter.acquire(Priority.STOCK))
    await wait_until(lambda: clock.sleepers == 1)
    clock.advance(30.0)  # the bucket has a token again, the minute is still full
    await asyncio.sleep(0)
    await wait_until(lambda: clock.sleepers == 1)
    assert not task.done()
    clock.advance(WINDOW_SECONDS + WINDOW_MARGIN)
    await asyncio.wait_for(task, 1)
    await limiter.aclose()
