"""One supervisor per channel: owns the connector, the shared rate limiter and health, and the flows.

A failing channel never slows another: each channel has its own HTTP client, limiter, breaker and
tasks, and nothing here waits on another channel.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping

import structlog

from channels.base import Channel
from channels.http import HttpClient
from channels.models import ChannelContext, FlowName
from channels.ratelimit import RateLimiter
from channels.registry import connector_class
from channels.transport import Transport
from daemon.clock import Clock
from daemon.controlapi.wire import ChannelStatus, FlowState
from daemon.flows.config import ChannelConfig
from daemon.flows.runner import FlowJob, FlowRunner
from daemon.health import ChannelHealth
from daemon.secrets import SECRETS
from daemon.statedb import StateDB
from daemon.store import outbox

log = structlog.get_logger("storesync.supervisor")

JobFactory = Callable[[FlowName, ChannelConfig, Channel, StateDB, Clock], FlowJob]

OUTBOX_ENTITY_FLOW: Mapping[str, FlowName] = {
    "stock": FlowName.STOCK,
    "price": FlowName.PRICES,
    "product": FlowName.PRODUCTS,
    "order_update": FlowName.ORDER_UPDATES,
}
START_SPREAD_SECONDS = 3.0


class ChannelSupervisor:
    def __init__(
        self,
        config: ChannelConfig,
        context: ChannelContext,
        *,
        db: StateDB,
        clock: Clock,
        transport: Transport,
        job_factory: JobFactory,
        rng: random.Random | None = None,
        start_spread: float = START_SPREAD_SECONDS,
    ) -> None:
        self.config = config
        self.context = context
        self.db = db
        self.clock = clock
        self.rng = rng or random.Random()
        self.health = ChannelHealth(
            config.name,
            clock,
            breaker_failures=config.breaker_failures,
            breaker_cooldown=config.breaker_cooldown,
        )
        self.limiter = RateLimiter(context.rate_limit_per_minute, context.rate_limit_burst, clock)
        self.http = HttpClient(
            context, clock=clock, limiter=self.limiter, transport=transport, on_secret=SECRETS.register
        )
        self.connector = connector_class(config.kind)(context, self.http)
        self.paused = False
        self.runners: dict[FlowName, FlowRunner] = {}
        for flow, timing in config.flows.items():
            if flow not in self.connector.supported_flows:
                continue
            job = job_factory(flow, config, self.connector, db, clock)
            offset = self.rng.uniform(0, start_spread) if start_spread else 0.0
            self.runners[flow] = FlowRunner(
                config.name, flow, timing, job, self.health, clock, start_offset=offset, rng=self.rng
            )
        self._stop = asyncio.Event()
        self._tasks: dict[FlowName, asyncio.Task[None]] = {}
        self._resend: asyncio.Task[None] | None = None
        self.health.on_recovered = self._on_recovered

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        for flow, runner in self.runners.items():
            task = asyncio.create_task(runner.run(self._stop), name=f"flow:{self.name}:{flow.value}")
            self._tasks[flow] = task
        log.info("channel.started", channel=self.name, flows=sorted(f.value for f in self.runners))

    async def stop(self, timeout: float) -> None:
        """Stop taking work; let in-flight batches finish for ``timeout`` seconds, then abandon them.

        Abandoning is safe: a push batch leaves its outbox rows pending and a pull page that did not
        commit leaves the cursor where it was, so the next start redoes that work once.
        """
        self._stop.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, still_running = await asyncio.wait(tasks, timeout=timeout)
            for task in still_running:
                log.warning("channel.batch_abandoned", channel=self.name, task=task.get_name())
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._resend is not None:
            await asyncio.gather(self._resend, return_exceptions=True)
        await self.connector.aclose()
        await self.http.aclose()
        await self.limiter.aclose()
        log.info("channel.stopped", channel=self.name)

    def _on_recovered(self) -> None:
        """The channel answers again: what failed during the outage goes out now, not at its backoff."""
        if self._stop.is_set() or (self._resend is not None and not self._resend.done()):
            return
        self._resend = asyncio.create_task(self._resend_failed(), name=f"resend:{self.name}")

    async def _resend_failed(self) -> None:
        try:
            async with self.db.write() as conn:
                count = await outbox.reschedule_failed(conn, self.name, self.clock.now())
        except Exception as exc:  # the rows still go out at their own retry time
            log.warning("channel.resend_failed", channel=self.name, error=str(exc))
            return
        if count:
            log.info("channel.resending", channel=self.name, count=count)
            for flow in OUTBOX_ENTITY_FLOW.values():
                if flow in self.runners:
                    self.runners[flow].request_run()

    def flow(self, name: str) -> FlowRunner:
        try:
            return self.runners[FlowName(name)]
        except (ValueError, KeyError):
            known = ", ".join(sorted(f.value for f in self.runners))
            raise KeyError(f"channel {self.name!r} has no flow {name!r} (running: {known})") from None

    def sync_now(self, flow: str | None = None, *, manual: bool = True) -> list[str]:
        runners = [self.flow(flow)] if flow else list(self.runners.values())
        for runner in runners:
            runner.request_run(manual=manual)
        return [r.flow.value for r in runners]

    def wake_for_outbox(self, entities: set[str]) -> None:
        for entity in entities:
            flow = OUTBOX_ENTITY_FLOW.get(entity)
            if flow is not None and flow in self.runners:
                self.runners[flow].request_run()

    def pause(self, flow: str | None = None) -> None:
        if flow:
            self.flow(flow).paused = True
        else:
            self.paused = True
            for runner in self.runners.values():
                runner.channel_paused = True
        log.info("channel.paused", channel=self.name, flow=flow)

    def resume(self, flow: str | None = None) -> None:
        """Resume; on a channel that needs re-authentication this also allows one more try."""
        if flow:
            runner = self.flow(flow)
            runner.paused = False
            runner.request_run()
        else:
            self.paused = False
            self.health.clear_reauth()
            for runner in self.runners.values():
                runner.channel_paused = False
                runner.request_run()
        log.info("channel.resumed", channel=self.name, flow=flow)

    def apply_timings(self, config: ChannelConfig) -> None:
        """A reload that changed only intervals, batch sizes, rates or rules: apply in place."""
        self.config = config
        self.health.breaker_failures = config.breaker_failures
        self.health.breaker_cooldown = config.breaker_cooldown
        for flow, runner in self.runners.items():
            timing = config.flows.get(flow)
            if timing is not None:
                runner.reconfigure(timing)
            update = getattr(runner.job, "update_config", None)
            if callable(update):
                update(config)

    def status(self, counts: Mapping[FlowName, tuple[int, int]]) -> ChannelStatus:
        flows = [
            runner.status(pending=counts.get(flow, (0, 0))[0], failed=counts.get(flow, (0, 0))[1])
            for flow, runner in sorted(self.runners.items(), key=lambda item: item[0].value)
        ]
        state: FlowState
        if not self.config.enabled:
            state = "disabled"
        elif self.health.needs_reauth:
            state = "needs_reauth"
        elif self.paused:
            state = "paused"
        elif self.health.circuit_open:
            state = "circuit_open"
        elif any(f.state == "running" for f in flows):
            state = "running"
        elif self.health.consecutive_failures:
            state = "backing_off"
        else:
            state = "idle"
        return ChannelStatus(
            name=self.name,
            kind=self.config.kind,
            enabled=self.config.enabled,
            state=state,
            paused=self.paused,
            needs_reauth=self.health.needs_reauth,
            last_error=self.health.last_error,
            failing_since=self.health.failing_since,
            rate_limit_per_minute=self.context.rate_limit_per_minute,
            rate_budget_remaining=self.limiter.remaining,
            flows=flows,
        )
