"""The event bus behind ``GET /events``: committed log rows and status changes, fanned out live.

Ids are the contract: a log event carries its ``sync_log`` id (known only after the writer commits, so
nothing is published that a replay could not find again), and a status event carries the id of the
latest log row published. A subscriber that falls behind is cut off (``SubscriptionLagged``) rather
than slowing the daemon; its client reconnects with ``after=<last id>`` and replays what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from types import TracebackType

from daemon.controlapi.wire import DaemonStatus, Event, LogRow


class SubscriptionLagged(Exception):
    """The subscriber's queue overflowed; replay from the last id seen to catch up."""


class SubscriptionClosed(Exception):
    """The bus (or the subscription) was closed: the daemon is stopping."""


class Subscription:
    """One consumer's bounded queue of events; use as a context manager so it always unsubscribes."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self._lagged = False
        self._closed = False

    def _offer(self, event: Event) -> bool:
        if self._closed or self._lagged:
            return False
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._lagged = True
            self._wake()
            return False
        return True

    def _wake(self) -> None:
        # A sentinel so a waiting get() notices lag/close even when the queue is full.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event; None when ``timeout`` passes first. Raises when lagged or closed."""
        while True:
            if self._lagged:
                raise SubscriptionLagged
            if self._closed and self._queue.empty():
                raise SubscriptionClosed
            try:
                if timeout is None:
                    item = await self._queue.get()
                else:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                return None
            if item is not None:
                return item

    def get_nowait(self) -> Event | None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                return item
        return None

    @property
    def lagged(self) -> bool:
        return self._lagged

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._remove(self)
            self._wake()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventBus:
    """Loop-local fan-out; publish from the event loop's thread only."""

    def __init__(self, last_id: int = 0) -> None:
        self._subs: set[Subscription] = set()
        self._last_id = last_id
        self._closed = False

    @property
    def last_id(self) -> int:
        """The id of the latest log row committed and published (status events carry it)."""
        return self._last_id

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subs)

    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(self, maxsize)
        if self._closed:
            sub.close()
        else:
            self._subs.add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def note_last_id(self, log_id: int) -> None:
        """Advance the id without an event (rows written while nobody listens)."""
        self._last_id = max(self._last_id, log_id)

    def publish_logs(self, rows: Iterable[LogRow]) -> None:
        for row in rows:
            self._last_id = max(self._last_id, row.id)
            if self._subs:
                self._fan_out(Event(id=row.id, type="log", log=row))

    def publish_status(self, status: DaemonStatus) -> None:
        if self._subs:
            self._fan_out(Event(id=self._last_id, type="status", status=status))

    def _fan_out(self, event: Event) -> None:
        for sub in list(self._subs):
            if not sub._offer(event):
                self._subs.discard(sub)

    def close(self) -> None:
        """Wake every subscriber with SubscriptionClosed (after it drains what it already has)."""
        self._closed = True
        for sub in list(self._subs):
            sub.close()


async def stream_events(
    sub: Subscription,
    *,
    after: int | None,
    fetch_after: Callable[[int, int], Awaitable[list[LogRow]]],
    status: Callable[[], Awaitable[DaemonStatus]],
    heartbeat_interval: float = 15.0,
    replay_page: int = 1000,
    start_id: int = 0,
) -> AsyncGenerator[Event, None]:
    """What ``GET /events?after=`` sends: the rows after ``after`` from the database, a status
    snapshot, then live events, with a heartbeat whenever the bus is quiet for ``heartbeat_interval``.

    ``sub`` must be subscribed *before* this starts (before the replay reads the database), so a row
    committed during the replay is either read by it or waiting in ``sub``; log ids at or below the
    last one sent are skipped, hence no gap and no repeat. ``after=None`` means live only, starting
    from ``start_id`` (the bus's last id when ``sub`` was taken). Ends when ``sub`` lags or closes.
    """
    if after is not None and after > start_id:
        after = start_id  # an id from another log database (replaced file): nothing to replay
    last = start_id if after is None else after
    try:
        if after is not None:
            while True:
                rows = await fetch_after(last, replay_page)
                for row in rows:
                    if row.id > last:
                        last = row.id
                        yield Event(id=row.id, type="log", log=row)
                if len(rows) < replay_page:
                    break
        yield Event(id=last, type="status", status=await status())
        while True:
            event = await sub.get(timeout=heartbeat_interval)
            if event is None:
                yield Event(id=last, type="heartbeat")
                continue
            if event.type == "log":
                if event.id <= last:
                    continue
                last = event.id
            elif event.id > last:
                # A status published while its log rows were still on their way: never let an id
                # run ahead of the rows delivered, or a resume could skip them.
                event = event.model_copy(update={"id": last})
            yield event
    except (SubscriptionLagged, SubscriptionClosed):
        return
