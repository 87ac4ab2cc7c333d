"""RateLimiter: refill, burst, priority then FIFO, block_for, reconfigure - all on a FakeClock."""

from __future__ import annotations

import asyncio
import functools

import pytest

from channels.models import Priority
from channels.ratelimit import RateLimiter, default_burst
from daemon.clock import FakeClock
from tests.channels.channel_support import wait_until


def _waiting_is(limiter: RateLimiter, count: int) -> bool:
    return limiter.waiting == count


def _length_is(items: list[str], count: int) -> bool:
    return len(items) == count


async def _drain(limiter: RateLimiter) -> None:
    while limiter.remaining >= 1:
        await limiter.acquire(Priority.ORDERS)


async def test_burst_is_available_at_once_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, 3, clock)  # one token a second
    for _ in range(3):
        await asyncio.wait_for(limiter.acquire(Priority.STOCK), 0.5)
    assert limiter.remaining == pytest.approx(0.0)
    clock.advance(0.5)
    assert limiter.remaining == pytest.approx(0.5)
    clock.advance(10)
    assert limiter.remaining == pytest.approx(3.0)  # capped at the burst


async def test_waiter_sleeps_until_the_next_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, 1, clock)
    await limiter.acquire(Priority.STOCK)
    task = asyncio.create_task(limiter.acquire(Priority.STOCK))
    await wait_until(lambda: clock.sleepers == 1)  # parked on the clock, not spinning
    clock.advance(0.9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.1)
    await asyncio.wait_for(task, 1)
    await limiter.aclose()


async def test_waiters_are_served_by_priority_then_fifo() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, 1, clock)
    await _drain(limiter)
    served: list[str] = []

    async def take(label: str, priority: Priority) -> None:
        await limiter.acquire(priority)
        served.append(label)

    order = [
        ("products-1", Priority.PRODUCTS),
        ("prices", Priority.PRICES),
        ("orders-1", Priority.ORDERS),
        ("products-2", Priority.PRODUCTS),
        ("stock", Priority.STOCK),
        ("orders-2", Priority.ORDERS),
    ]
    tasks = []
    for label, prio in order:
        tasks.append(asyncio.create_task(take(label, prio)))
        await wait_until(functools.partial(_waiting_is, limiter, len(tasks)))
    for expected in range(1, len(order) + 1):
        await wait_until(lambda: clock.sleepers == 1)
        clock.advance(1.0)
        await wait_until(functools.partial(_length_is, served, expected))
    assert served == ["orders-1", "orders-2", "stock", "prices", "products-1", "products-2"]
    await asyncio.gather(*tasks)
    await wait_until(lambda: clock.sleepers == 0)  # idle: the dispatcher is gone, nothing sleeps


async def test_a_late_urgent_waiter_overtakes_queued_bulk_work() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, 1, clock)
    await _drain(limiter)
    bulk = [asyncio.create_task(limiter.acquire(Priority.PRODUCTS)) for _ in range(5)]
    await wait_until(lambda: limiter.waiting == 5)
    urgent = asyncio.create_task(limiter.acquire(Priority.ORDERS))
    await wait_until(lambda: limiter.waiting == 6)
    await wait_until(lambda: clock.sleepers == 1)
    clock.advance(1.0)
    await asyncio.wait_for(urgent, 1)
    assert sum(t.done() for t in bulk) == 0
    await limiter.aclose()
    await asyncio.gather(*bulk, return_exceptions=True)


async def test_cancelled_waiter_does_not_consume_a_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, 1, clock)
    await _drain(limiter)
    first = asyncio.create_task(limiter.acquire(Priority.ORDERS))
    second = asyncio.create_task(limiter.acquire(Priority.STOCK))
    await wait_until(lambda: limiter.waiting == 2)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await wait_until(lambda: clock.sleepers == 1)
    clock.advance(1.0)
    await asyncio.wait_for(second, 1)
    assert limiter.remaining == pytest.approx(0.0)


async def test_block_for_stops_everyone_then_restarts_empty() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, 5, clock)
    limiter.block_for(10)
    assert limiter.remaining == 0.0
    task = asyncio.create_task(limiter.acquire(Priority.ORDERS))
    await wait_until(lambda: clock.sleepers == 1)
    clock.advance(9.9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.1)  # block over, but the bucket restarts empty: one more second for a token
    await asyncio.sleep(0)
    assert not task.done()
    await wait_until(lambda: clock.sleepers == 1)
    clock.advance(1.0)
    await asyncio.wait_for(task, 1)


async def test_shorter_block_does_not_shorten_a_longer_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, 5, clock)
    limiter.block_for(30)
    limiter.block_for(5)
    clock.advance(20)
    assert limiter.remaining == 0.0
    clock.advance(12)
    assert limiter.remaining == pytest.approx(2.0)


async def test_reconfigure_applies_the_new_rate_to_waiters() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 1, clock)  # one a minute
    await _drain(limiter)
    task = asyncio.create_task(limiter.acquire(Priority.ORDERS))
    await wait_until(lambda: clock.sleepers == 1)
    limiter.reconfigure(600, 2)  # ten a second
    assert limiter.per_minute == 600 and limiter.burst == 2
    await wait_until(lambda: clock.sleepers == 1)
    clock.advance(0.1)
    await asyncio.wait_for(task, 1)


def test_bad_settings_are_refused_and_burst_derives() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0, 1, clock)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(60, -1, clock)
    assert RateLimiter(100, 0, clock).burst == default_burst(100) == 10
    assert default_burst(3) == 1
