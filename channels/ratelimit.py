"""One token bucket per channel, shared by all its flows, served by priority.

A platform limits the *account*, not the flow, so a big product push and the order poll draw from the
same budget; the bucket hands tokens to the most urgent waiter first (``Priority``: lower value first,
FIFO within a priority) so bulk work never starves orders. Nothing polls: a waiter either takes a token
at once or parks on a future, and a single dispatcher task sleeps exactly until the next token is due,
then exits when nobody waits (an idle channel costs nothing).

Platforms count a *sliding minute* (Loja Integrada: 100 requests in any 60 s), and a token bucket alone
overshoots it: a full burst plus a minute of refill is ``burst + per_minute`` requests in one minute,
which a saturating backlog turns into 429s (measured in bench/: 5 per 75 s at 600/min). So grants are
also counted per minute, in coarse slots, and never exceed ``per_minute`` in any ``WINDOW_SECONDS +
WINDOW_MARGIN`` seconds; the margin absorbs the network delay between our grant and the platform's
stamp. In steady state that costs about 2 % of the budget; it never binds below the limit.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from contextvars import ContextVar

from channels.models import Priority
from daemon.clock import Clock

WINDOW_SECONDS = 60.0
WINDOW_MARGIN = 1.0
SLOT_SECONDS = 0.25
"""Grants are counted per slot: memory stays a few hundred entries at any rate."""


def default_burst(per_minute: float) -> int:
    """A tenth of the per-minute budget, at least one (what ``rate_limit_burst = 0`` means)."""
    return max(1, math.floor(per_minute / 10))


class RateLimiter:
    """Token bucket: ``per_minute`` tokens a minute, at most ``burst`` banked (0 derives the burst)."""

    def __init__(self, per_minute: float, burst: int, clock: Clock) -> None:
        self._clock = clock
        self._rate = 0.0  # tokens per second
        self._capacity = 1.0
        self._configure(per_minute, burst)
        self._tokens = self._capacity
        self._slots: deque[list[int]] = deque()
        """[slot number, grants in it], oldest first, for the last minute (plus the margin)."""
        self._in_window = 0
        self._stamp = clock.monotonic()
        self._blocked_until = self._stamp
        self._seq = itertools.count()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None

    # --- configuration ---------------------------------------------------------------------------

    def _configure(self, per_minute: float, burst: int) -> None:
        if not per_minute > 0 or math.isinf(per_minute):
            raise ValueError(f"rate limit must be a positive number of requests per minute, got {per_minute}")
        if burst < 0:
            raise ValueError(f"rate limit burst must be >= 0, got {burst}")
        self._rate = per_minute / 60.0
        self._capacity = float(burst or default_burst(per_minute))
        self._cap = max(1, math.floor(self._rate * WINDOW_SECONDS + 1e-9))
        """Grants allowed in any sliding window."""

    def reconfigure(self, per_minute: float, burst: int) -> None:
        """Apply new settings without losing the tokens already earned (clamped to the new burst)."""
        self._refill()
        self._configure(per_minute, burst)
        self._tokens = min(self._tokens, self._capacity)
        self._changed.set()

    @property
    def per_minute(self) -> float:
        return self._rate * 60.0

    @property
    def burst(self) -> int:
        return int(self._capacity)

    @property
    def waiting(self) -> int:
        """How many callers are parked (cancelled ones excluded)."""
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    @property
    def remaining(self) -> float:
        """Tokens available now; 0 while a ``block_for`` is in force (nobody may send)."""
        self._refill()
        now = self._clock.monotonic()
        if now < self._blocked_until:
            return 0.0
        self._expire(now)
        return min(self._tokens, float(max(0, self._window_cap - self._in_window)))

    # --- the sliding minute ------------------------------------------------------------------------

    @property
    def _window_cap(self) -> int:
        return self._cap

    def _expire(self, now: float) -> None:
        """Forget slots whose every grant is older than the window (a slot's end is its latest grant)."""
        horizon = now - (WINDOW_SECONDS + WINDOW_MARGIN)
        while self._slots and (self._slots[0][0] + 1) * SLOT_SECONDS <= horizon:
            self._in_window -= self._slots.popleft()[1]

    def _window_open(self, now: float) -> bool:
        self._expire(now)
        return self._in_window < self._window_cap

    def _count_grant(self, now: float) -> None:
        slot = math.floor(now / SLOT_SECONDS)
        if self._slots and self._slots[-1][0] == slot:
            self._slots[-1][1] += 1
        else:
            self._slots.append([slot, 1])
        self._in_window += 1

    def _window_delay(self, now: float) -> float:
        """Seconds until the window has room for one more grant (0 when it has room now)."""
        self._expire(now)
        excess = self._in_window - self._window_cap + 1
        if excess <= 0:
            return 0.0
        for slot, count in self._slots:
            excess -= count
            if excess <= 0:
                return max(0.0, (slot + 1) * SLOT_SECONDS + WINDOW_SECONDS + WINDOW_MARGIN - now)
        return WINDOW_SECONDS + WINDOW_MARGIN  # unreachable: the slots hold every counted grant

    # --- the bucket -------------------------------------------------------------------------------

    def _refill(self) -> None:
        now = self._clock.monotonic()
        if now > self._stamp:
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now

    def block_for(self, seconds: float) -> None:
        """The platform said 429: nobody sends for ``seconds``, and the bucket restarts empty after.

        Starting empty (rather than with a full burst) avoids tripping the platform's window again the
        moment the block ends.
        """
        if not seconds > 0:
            return
        self._refill()
        until = self._clock.monotonic() + seconds
        self._blocked_until = max(self._blocked_until, until)
        self._tokens = 0.0
        self._stamp = max(self._stamp, self._blocked_until)
        self._changed.set()

    async def acquire(self, priority: Priority = Priority.BACKGROUND) -> None:
        """Take one token, waiting behind more urgent (then earlier) callers when there is none."""
        now = self._clock.monotonic()
        if now > self._stamp:  # _refill, inlined: this runs once per request
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
        if (
            not self._waiters
            and self._tokens >= 1.0
            and now >= self._blocked_until
            and self._window_open(now)
        ):
            self._tokens -= 1.0
            self._count_grant(now)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._seq), fut))
        self._ensure_dispatcher()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted, then cancelled before we could use it: give the token back.
                self._tokens = min(self._capacity, self._tokens + 1.0)
                self._changed.set()
            raise

    def _ensure_dispatcher(self) -> None:
        self._changed.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name="ratelimit-dispatch"
            )

    def _grant_ready(self) -> None:
        """Hand out every token that is due, best waiter first."""
        self._refill()
        now = self._clock.monotonic()
        while self._waiters:
            if now < self._blocked_until or self._tokens < 1.0 or not self._window_open(now):
                return
            _, _, fut = heapq.heappop(self._waiters)
            if fut.done():  # its caller was cancelled
                continue
            self._tokens -= 1.0
            self._count_grant(now)
            fut.set_result(None)

    def _drop_cancelled(self) -> None:
        if any(fut.done() for _, _, fut in self._waiters):
            self._waiters = [w for w in self._waiters if not w[2].done()]
            heapq.heapify(self._waiters)

    def _delay(self) -> float:
        now = self._clock.monotonic()
        if now < self._blocked_until:
            return self._blocked_until - now
        return max(0.0, (1.0 - self._tokens) / self._rate, self._window_delay(now))

    async def _dispatch(self) -> None:
        while True:
            self._changed.clear()
            self._grant_ready()
            self._drop_cancelled()
            if not self._waiters:
                return
            sleeper = asyncio.ensure_future(self._clock.sleep(self._delay()))
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, changed):
                    if not task.done():
                        task.cancel()
                await asyncio.gather(sleeper, changed, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the dispatcher (waiters still parked are cancelled); only needed on shutdown."""
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()
        task, self._dispatcher = self._dispatcher, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


FLOW_LIMITER: ContextVar[RateLimiter | None] = ContextVar("storesync_flow_limiter", default=None)
"""The running flow's own cap (a flow's ``rate_limit``), set by the daemon's flow runner for its
runs: ``HttpClient`` takes a token from it, then one from the channel's shared limiter."""
