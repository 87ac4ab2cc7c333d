"""The flow loop: interval vs wake, backlog, backoff, circuit breaker, needs_reauth, pause, stop."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
from aioresponses import aioresponses

from channels.base import AuthError, RateLimited, TransientError
from channels.models import FlowName, Priority
from daemon.clock import FakeClock
from daemon.flows.runner import FlowRunner, FlowTiming, RunContext, RunResult
from daemon.health import ChannelHealth
from tests.channels.channel_support import MOCK, ClientPool, make_context, wait_until


class ScriptedJob:
    """Runs a scripted outcome per call and lets the test wait for the n-th call."""

    def __init__(self, outcomes: list[RunResult | Exception] | None = None) -> None:
        self.outcomes = list(outcomes or [])
        self.calls = 0
        self.called = asyncio.Condition()
        self.gate: asyncio.Event | None = None

    async def run_once(self, run: RunContext) -> RunResult:
        self.calls += 1
        async with self.called:
            self.called.notify_all()
        if self.gate is not None:
            await self.gate.wait()
        outcome = self.outcomes.pop(0) if self.outcomes else RunResult()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def wait_calls(self, n: int) -> None:
        async with asyncio.timeout(5):
            async with self.called:
                await self.called.wait_for(lambda: self.calls >= n)


async def settle() -> None:
    """Let every ready task run until the loop is quiet (no real time passes)."""
    for _ in range(50):
        await asyncio.sleep(0)


def make_runner(
    job: ScriptedJob, clock: FakeClock, *, interval: float = 60.0, breaker: int = 3
) -> tuple[FlowRunner, ChannelHealth]:
    health = ChannelHealth("loja", clock, breaker_failures=breaker, breaker_cooldown=120.0)
    runner = FlowRunner(
        "loja", FlowName.STOCK, FlowTiming(interval, 10), job, health, clock, rng=random.Random(1)
    )
    return runner, health


async def running(runner: FlowRunner, body: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await body(stop)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_runs_at_start_then_waits_for_the_interval() -> None:
    clock = FakeClock()
    job = ScriptedJob()
    runner, _ = make_runner(job, clock)

    async def body(stop: asyncio.Event) -> None:
        await job.wait_calls(1)
        await settle()
        clock.advance(59)
        await settle()
        assert job.calls == 1
        clock.advance(1.5)
        await job.wait_calls(2)

    await running(runner, body)


async def test_wake_event_runs_before_the_interval() -> None:
    clock = FakeClock()
    job = ScriptedJob()
    runner, _ = make_runner(job, clock)

    async def body(stop: asyncio.Event) -> None:
        await job.wait_calls(1)
        await settle()
        runner.request_run()
        await job.wait_calls(2)
        assert job.calls == 2

    await running(runner, body)


async def test_backlog_runs_again_without_waiting() -> None:
    clock = FakeClock()
    job = ScriptedJob([RunResult(done=10, more=True), RunResult(done=10, more=True), RunResult(done=3)])
    runner, _ = make_runner(job, clock)

    async def body(stop: asyncio.Event) -> None:
        await job.wait_calls(3)
        await settle()
        assert runner.items_done == 3
        assert job.calls == 3

    await running(runner, body)


async def test_repeated_manual_requests_within_cooldown_merge() -> None:
    clock = FakeClock()
    job = ScriptedJob()
    runner, _ = make_runner(job, clock)

    async def body(stop: asyncio.Event) -> None:
        await job.wait_calls(1)
        await settle()
        runner.request_run(manual=True)
        runner.request_run(manual=True)
        runner.request_run(manual=True)
        await settle()
        assert job.calls == 1  # inside the cooldown after the first run: merged and waiting
        clock.advance(2.1)
        await job.wait_calls(2)
        await settle()
        assert job.calls == 2

    await running(runner, body)


async def test_failures_back_off_then_open_the_circuit_and_recovery_closes_it() -> None:
    clock = FakeClock()
    job = ScriptedJob([TransientError("boom 1"), TransientError("boom 2"), TransientError("boom 3")])
    runner, health = make_runner(job, clock, breaker=3)

    async def body(stop: asyncio.Event) -> None:
        await job.wait_calls(1)
        await settle()
        assert runner.status().state == "backing_off"
        assert health.failing_since is not None
        clock.advance(2.0)  # first backoff is at most 2 s
        await job.wait_calls(2)
        await settle()
        clock.advance(4.0)
        await job.wait_calls(3)
        await settle()
        assert health.circuit_open
        assert runner.status().state == "circuit_open"
        clock.advance(100)
        await settle()
        assert job.calls == 3  # no calls while the circuit is open
        clock.advance(25)
        await job.wait_calls(4)  # the half-open trial succeeds
        await settle()
        assert not health.circuit_open
        assert health.failing_since is None
        assert runner.status().state == "idle"

    await running(runner, body)


async def test_rate_limited_waits_at_least_retry_after() -> None:
    clock = FakeClock()
    job = ScriptedJob([RateLimited("429", retry_after=30.0)])
    runner, _ = make_runner(job, clock)

    async def body(stop: asyncio.Event) -> None:
        await job.wait_calls(1)
        await settle()
        clock.advance(29)
        await settle()
        assert job.calls == 1
        clock.advance(1.5)
        await job.wait_calls(2)

    await running(runner, body)


async def test_auth_error_stops_the_flow_until_resumed() -> None:
    clock = FakeClock()
    job = ScriptedJob([AuthError("401 from GET /v1/pedido/search")])
    runner, health = make_runner(job, clock)

    async def body(stop: asyncio.Event) -> None:
        await job.wait_calls(1)
        await settle()
        assert health.needs_reauth
        assert runner.status().state == "needs_reauth"
        clock.advance(3600)
        runner.request_run()
        await settle()
        assert job.calls == 1
        health.clear_reauth()
        runner.request_run()
        await job.wait_calls(2)

    await running(runner, body)


async def test_paused_flow_does_not_run_until_resumed() -> None:
    clock = FakeClock()
    job = ScriptedJob()
    runner, _ = make_runner(job, clock)

    async def body(stop: asyncio.Event) -> None:
        await job.wait_calls(1)
        await settle()
        runner.paused = True
        runner.request_run()
        await settle()
        clock.advance(600)
        await settle()
        assert job.calls == 1
        assert runner.status().state == "paused"
        runner.paused = False
        runner.request_run()
        await job.wait_calls(2)

    await running(runner, body)


async def test_stop_lets_the_in_flight_batch_finish() -> None:
    clock = FakeClock()
    job = ScriptedJob([RunResult(done=5)])
    job.gate = asyncio.Event()
    runner, _ = make_runner(job, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await job.wait_calls(1)
    stop.set()
    await settle()
    assert not task.done()  # still inside the batch
    job.gate.set()
    await asyncio.wait_for(task, 5)
    assert runner.items_done == 5


async def test_outage_is_logged_once_and_recovery_once(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    health = ChannelHealth("loja", clock, breaker_failures=100)
    events: list[str] = []
    import structlog

    with structlog.testing.capture_logs() as captured:
        for _ in range(10):
            health.record_failure("503 from GET /v1/pedido/search")
        clock.advance(90)
        health.record_success()
        health.record_success()
    events = [entry["event"] for entry in captured]
    assert events == ["channel.down", "channel.recovered"]
    assert captured[1]["down_seconds"] == 90.0


async def test_a_flow_rate_limit_caps_that_flows_requests_within_the_channels_budget() -> None:
    """``flows.<flow>.rate_limit``: the runner hands its own limiter to the requests its run makes
    (tasks the run starts too), taken before the channel's shared budget; other work of the same
    channel is not held by it."""
    clock = FakeClock()
    pool = ClientPool()
    http = pool(make_context(MOCK, rate_limit_per_minute=6000), clock)

    class Pusher:
        async def run_once(self, run: RunContext) -> RunResult:
            await asyncio.gather(
                *(http.request("PUT", f"/v1/x/{i}", priority=Priority.STOCK, json={}) for i in range(3))
            )
            return RunResult(done=3)

    health = ChannelHealth("loja", clock, breaker_failures=3, breaker_cooldown=120.0)
    timing = FlowTiming(3600, 10, rate_limit=10)  # a token every 6 s, a burst of one
    runner = FlowRunner("loja", FlowName.STOCK, timing, Pusher(), health, clock, rng=random.Random(1))
    assert runner.status().rate_limit_per_minute == 10

    def sent() -> int:
        return sum(len(calls) for calls in mocked.requests.values())

    try:
        with aioresponses() as mocked:
            for i in range(3):
                mocked.put(f"{MOCK}/v1/x/{i}", payload={})
            mocked.get(f"{MOCK}/v1/other", payload={})

            async def body(stop: asyncio.Event) -> None:
                assert runner.limiter is not None
                limiter = runner.limiter
                await wait_until(lambda: limiter.waiting == 2)
                assert sent() == 1
                # The channel's other work (no cap of its own) is not held by this flow's cap.
                await asyncio.wait_for(http.request("GET", "/v1/other", priority=Priority.ORDERS), 1)
                clock.advance(6)
                await wait_until(lambda: sent() == 3 and limiter.waiting == 1)
                clock.advance(6)
                await wait_until(lambda: sent() == 4)
                await runner_done(runner)

            await running(runner, body)
    finally:
        await pool.aclose()
    runner.reconfigure(FlowTiming(3600, 10, rate_limit=None))
    assert runner.limiter is None and runner.status().rate_limit_per_minute is None


async def runner_done(runner: FlowRunner) -> None:
    await wait_until(lambda: runner.items_done == 3)
