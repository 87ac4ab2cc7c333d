"""The loop that drives one (channel, flow): wait, run a batch, record the outcome, repeat.

The loop waits on ``min(interval, wake)``: a new outbox row, a SIGUSR1 or a "sync now" sets the wake
event, so changes go out within about a second while an idle flow costs nothing. A job that still has
a backlog asks to run again at once; a failing job backs off exponentially with jitter, and the
channel's shared health decides when the circuit opens or the channel needs new credentials.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from channels.base import AuthError, RateLimited
from channels.models import FlowName
from channels.ratelimit import FLOW_LIMITER, RateLimiter
from daemon.clock import Clock
from daemon.controlapi.wire import FlowState, FlowStatus
from daemon.health import ChannelHealth

log = structlog.get_logger("storesync.flow")

MANUAL_COOLDOWN_SECONDS = 2.0
BACKOFF_BASE_SECONDS = 2.0


@dataclass(frozen=True)
class RunResult:
    done: int = 0
    failed: int = 0
    more: bool = False
    """A backlog remains: run again without waiting for the interval."""
    wake_in: float | None = None
    """Run again after at most this many seconds (a retry falls due, a promotion starts)."""
    contacted: bool = True
    """The run called the channel. A run that had nothing to send says nothing about the channel's
    health: it must not mark a channel that is down as recovered (nor reset its breaker)."""


@dataclass(frozen=True)
class RunContext:
    channel: str
    flow: FlowName
    run_id: str
    batch_size: int
    log: structlog.typing.FilteringBoundLogger
    sweep: bool = False
    """This run comes from the interval, not from a wake-up: push flows check for drift."""
    pipeline: bool = False
    """The runner's loop calls again at once after a full batch and drains the job on stop: a push
    job may settle a batch in the background while it sends the next one."""


class FlowJob(Protocol):
    async def run_once(self, run: RunContext) -> RunResult: ...


@dataclass
class FlowTiming:
    interval: float
    batch_size: int
    enabled: bool = True
    rate_limit: float | None = None
    """Requests per minute this flow may make, within the channel's shared budget (None: no cap)."""


class FlowRunner:
    def __init__(
        self,
        channel: str,
        flow: FlowName,
        timing: FlowTiming,
        job: FlowJob,
        health: ChannelHealth,
        clock: Clock,
        *,
        start_offset: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.channel = channel
        self.flow = flow
        self.timing = timing
        self.job = job
        self.health = health
        self.clock = clock
        self.start_offset = start_offset
        self.rng = rng or random.Random()
        self.paused = False
        self.channel_paused = False
        self.wake = asyncio.Event()
        self.state: FlowState = "idle" if timing.enabled else "disabled"
        self.last_run_at: datetime | None = None
        self.last_ok_at: datetime | None = None
        self.last_error: str | None = None
        self.failing_since: datetime | None = None
        self.consecutive_failures = 0
        self.items_done = 0
        self.items_failed = 0
        self.runs = 0
        self._next_run_mono: float | None = None
        self._manual_requested = False
        self._last_start_mono: float | None = None
        self._running_now = False
        self._last_sweep_mono: float | None = None
        self.on_items: Callable[[int], None] | None = None
        """Told how many items each successful run synced (the channel's per-minute figures)."""
        self.limiter: RateLimiter | None = None
        """The flow's own cap (``timing.rate_limit``), taken before the channel's budget."""
        self._configure_limiter(timing)

    # --- requests from outside -------------------------------------------------------------------

    def request_run(self, *, manual: bool = False) -> None:
        """Run as soon as possible; repeated manual requests within the cooldown merge into one."""
        if manual:
            self._manual_requested = True
        self.wake.set()

    def reconfigure(self, timing: FlowTiming) -> None:
        self.timing = timing
        self._configure_limiter(timing)
        if not timing.enabled:
            self.state = "disabled"
        self.wake.set()

    def _configure_limiter(self, timing: FlowTiming) -> None:
        if timing.rate_limit is None:
            self.limiter = None  # a run waiting on the old cap is still served by it, then it idles
        elif self.limiter is None:
            self.limiter = RateLimiter(timing.rate_limit, 0, self.clock)
        elif not math.isclose(self.limiter.per_minute, timing.rate_limit):
            self.limiter.reconfigure(timing.rate_limit, 0)

    @property
    def running(self) -> bool:
        return self._running_now

    # --- the loop --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; an in-flight batch always finishes (the caller bounds it)."""
        try:
            await self._run_loop(stop)
        finally:
            if self.limiter is not None:
                await self.limiter.aclose()
            drain = getattr(self.job, "drain", None)
            if drain is not None:
                try:
                    await drain()  # a batch settling in the background is part of the in-flight work
                except Exception as exc:  # its rows stay pending: the next start sends them again
                    log.warning(
                        "run.settle_failed",
                        channel=self.channel,
                        flow=self.flow.value,
                        error=f"{type(exc).__name__}: {exc}",
                    )

    async def _run_loop(self, stop: asyncio.Event) -> None:
        await self._wait(self.start_offset, stop, wake_ok=True)
        while not stop.is_set():
            blocked = self._blocked_state()
            if blocked is not None:
                self.state = blocked
                await self._wait_blocked(blocked, stop)
                continue
            if self._manual_requested and self._last_start_mono is not None:
                since_last = self.clock.monotonic() - self._last_start_mono
                if since_last < MANUAL_COOLDOWN_SECONDS:
                    await self._wait(MANUAL_COOLDOWN_SECONDS - since_last, stop, wake_ok=False)
                    if stop.is_set():
                        break
            delay = await self._run_once()
            await self._wait(delay, stop, wake_ok=True)
        self.state = "disabled" if not self.timing.enabled else "idle"
        self._next_run_mono = None

    def _blocked_state(self) -> FlowState | None:
        if not self.timing.enabled:
            return "disabled"
        if self.health.needs_reauth:
            return "needs_reauth"
        if self.paused or self.channel_paused:
            return "paused"
        if self.health.circuit_open:
            return "circuit_open"
        return None

    async def _wait_blocked(self, blocked: FlowState, stop: asyncio.Event) -> None:
        if blocked == "circuit_open":
            await self._wait(self.health.circuit_wait(), stop, wake_ok=False)
            self.health.half_open()
            return
        self._next_run_mono = None
        self.wake.clear()  # requests made while blocked are moot; resume() wakes the loop again
        await self._wait(None, stop, wake_ok=True)

    async def _run_once(self) -> float:
        """Run one batch and return how long to wait before the next one."""
        self._manual_requested = False
        self.wake.clear()
        self._last_start_mono = self.clock.monotonic()
        self.last_run_at = self.clock.now()
        self.state = "running"
        self._running_now = True
        run_id = uuid.uuid4().hex[:12]
        bound = log.bind(channel=self.channel, flow=self.flow.value, run_id=run_id)
        context = RunContext(
            self.channel,
            self.flow,
            run_id,
            self.timing.batch_size,
            bound,
            sweep=self._interval_due(),
            pipeline=True,
        )
        # The job's requests (and the tasks it starts, which copy this task's context) see the cap.
        FLOW_LIMITER.set(self.limiter)
        try:
            result = await self.job.run_once(context)
        except AuthError as exc:
            self._failed(str(exc))
            self.health.record_auth_failure(str(exc))
            bound.error("run.auth_failed", error=str(exc))
            self.state = "needs_reauth"
            return self.timing.interval
        except RateLimited as exc:
            self._failed(str(exc))
            self.health.record_failure(str(exc), self.flow.value)
            bound.warning("run.rate_limited", error=str(exc), retry_after=exc.retry_after)
            self.state = "backing_off"
            return max(exc.retry_after or 0.0, self._backoff())
        except asyncio.CancelledError:
            self.state = "idle"
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            self._failed(message)
            self.health.record_failure(message, self.flow.value)
            if self.consecutive_failures == 1:
                bound.warning("run.failed", error=message)
            else:
                bound.debug("run.failed", error=message, consecutive=self.consecutive_failures)
            self.state = "backing_off"
            return self._backoff()
        finally:
            self._running_now = False
        self.runs += 1
        self.items_done, self.items_failed = result.done, result.failed
        if self.on_items is not None and result.done:
            self.on_items(result.done)
        if self.consecutive_failures:
            bound.info("run.recovered", after_failures=self.consecutive_failures)
        self.consecutive_failures = 0
        self.failing_since = None
        self.last_error = None
        self.last_ok_at = self.clock.now()
        if result.contacted:
            self.health.record_success(self.flow.value)
        self.state = "idle"
        if result.done or result.failed:
            bound.info("run.done", done=result.done, failed=result.failed, more=result.more)
        if result.more:
            return 0.0
        if result.wake_in is not None:
            return max(0.0, min(self.timing.interval, result.wake_in))
        return self.timing.interval

    def _interval_due(self) -> bool:
        """True on the first run and whenever a full interval passed since the last sweep."""
        now = self.clock.monotonic()
        if self._last_sweep_mono is None or now - self._last_sweep_mono >= self.timing.interval:
            self._last_sweep_mono = now
            return True
        return False

    def _failed(self, message: str) -> None:
        self.consecutive_failures += 1
        self.last_error = message
        self.items_done, self.items_failed = 0, 0
        if self.failing_since is None:
            self.failing_since = self.clock.now()

    def _backoff(self) -> float:
        """Exponential backoff with full jitter, never longer than the flow's interval."""
        ceiling = min(self.timing.interval, BACKOFF_BASE_SECONDS * 2 ** (self.consecutive_failures - 1))
        return max(0.5, self.rng.uniform(ceiling / 2, ceiling))

    async def _wait(self, timeout: float | None, stop: asyncio.Event, *, wake_ok: bool) -> None:
        """Sleep for ``timeout`` (None: forever) unless stopped or, when ``wake_ok``, woken."""
        if stop.is_set() or (wake_ok and self.wake.is_set()):
            return
        self._next_run_mono = None if timeout is None else self.clock.monotonic() + timeout
        waiters: list[asyncio.Task[object]] = [asyncio.ensure_future(stop.wait())]
        if wake_ok:
            waiters.append(asyncio.ensure_future(self.wake.wait()))
        if timeout is not None:
            waiters.append(asyncio.ensure_future(self.clock.sleep(timeout)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    # --- status ----------------------------------------------------------------------------------

    def status(self, *, pending: int = 0, failed: int = 0) -> FlowStatus:
        next_run_at = None
        if self._next_run_mono is not None and self.state not in ("paused", "disabled", "needs_reauth"):
            remaining = max(0.0, self._next_run_mono - self.clock.monotonic())
            next_run_at = self.clock.now() + timedelta(seconds=remaining)
        state = self._blocked_state() or self.state
        if state == "idle" and self.consecutive_failures:
            state = "backing_off"
        return FlowStatus(
            flow=self.flow.value,
            state=state,
            enabled=self.timing.enabled,
            interval_seconds=self.timing.interval,
            batch_size=self.timing.batch_size,
            rate_limit_per_minute=self.timing.rate_limit,
            last_run_at=self.last_run_at,
            last_ok_at=self.last_ok_at,
            next_run_at=next_run_at,
            last_error=self.last_error,
            failing_since=self.failing_since,
            consecutive_failures=self.consecutive_failures,
            items_done_last_run=self.items_done,
            items_failed_last_run=self.items_failed,
            pending=pending,
            failed=failed,
        )
