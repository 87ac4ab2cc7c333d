"""A channel's health, shared by its flows: failures, the circuit breaker, and needs_reauth.

An outage is logged once when it starts and once when it ends (with its duration), not once per poll;
the status shows since when the channel has been failing and the last error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from daemon.clock import Clock

log = structlog.get_logger("storesync.health")


@dataclass
class ChannelHealth:
    channel: str
    clock: Clock
    breaker_failures: int = 5
    breaker_cooldown: float = 120.0
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    last_error: str | None = None
    needs_reauth: bool = False
    circuit_open_until: float | None = None
    """Monotonic time until which flows must not call the channel."""
    _opened_at_wall: datetime | None = field(default=None, repr=False)
    on_recovered: Callable[[], None] | None = field(default=None, repr=False)
    """Called when a flow that failed succeeds again (the supervisor re-sends what failed)."""

    _failing_flows: set[str] = field(default_factory=set, repr=False)
    """Flows whose last contact with the channel failed. The outage lasts until each of them has
    succeeded again: one flow working (a PUT that ignores the body) while another still fails (a GET
    that cannot parse it) must not log the channel going down and up on every run."""

    def record_success(self, flow: str | None = None) -> None:
        key = flow or ""
        flow_recovered = key in self._failing_flows
        self._failing_flows.discard(key)
        if self.failing_since is not None and not self._failing_flows:
            duration = (self.clock.now() - self.failing_since).total_seconds()
            log.info(
                "channel.recovered",
                channel=self.channel,
                down_seconds=round(duration, 1),
                failures=self.consecutive_failures,
            )
            flow_recovered = True
            self.failing_since = None
            self.last_error = None
        self.consecutive_failures = 0
        self.circuit_open_until = None
        if flow_recovered and self.on_recovered is not None:
            self.on_recovered()

    def record_failure(self, error: str, flow: str | None = None) -> None:
        self._failing_flows.add(flow or "")
        self.consecutive_failures += 1
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = self.clock.now()
            log.warning("channel.down", channel=self.channel, error=error)
        if self.consecutive_failures >= self.breaker_failures and not self.circuit_open:
            self.circuit_open_until = self.clock.monotonic() + self.breaker_cooldown
            log.warning(
                "channel.circuit_open",
                channel=self.channel,
                failures=self.consecutive_failures,
                cooldown_seconds=self.breaker_cooldown,
            )

    def record_auth_failure(self, error: str) -> None:
        if not self.needs_reauth:
            log.error("channel.needs_reauth", channel=self.channel, error=error)
        self.needs_reauth = True
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = self.clock.now()

    def clear_reauth(self) -> None:
        self.needs_reauth = False

    @property
    def circuit_open(self) -> bool:
        return self.circuit_open_until is not None and self.clock.monotonic() < self.circuit_open_until

    def circuit_wait(self) -> float:
        """Seconds until the breaker lets one trial run through (0 when closed)."""
        if self.circuit_open_until is None:
            return 0.0
        return max(0.0, self.circuit_open_until - self.clock.monotonic())

    def half_open(self) -> None:
        """The cooldown passed: allow one trial; a failure re-opens the breaker at once."""
        if self.circuit_open_until is not None and not self.circuit_open:
            self.circuit_open_until = None
            self.consecutive_failures = max(0, self.breaker_failures - 1)
