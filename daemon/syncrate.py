"""Items synced per minute over the last hour, per channel: the figures behind the TUI's sparkline."""

from __future__ import annotations

from collections import deque

from daemon.clock import Clock

MINUTES = 60


class SyncRate:
    def __init__(self, clock: Clock, minutes: int = MINUTES) -> None:
        self.clock = clock
        self.minutes = minutes
        self._buckets: deque[int] = deque([0] * minutes, maxlen=minutes)
        self._current_minute = int(clock.monotonic() // 60)

    def _roll(self) -> None:
        minute = int(self.clock.monotonic() // 60)
        for _ in range(min(self.minutes, minute - self._current_minute)):
            self._buckets.append(0)
        self._current_minute = max(self._current_minute, minute)

    def add(self, count: int) -> None:
        self._roll()
        self._buckets[-1] += count

    def per_minute(self) -> list[int]:
        """Oldest first; the last value is the minute in progress."""
        self._roll()
        return list(self._buckets)
