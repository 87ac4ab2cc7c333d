"""The TUI's link to the daemon: follows the event stream, survives daemon restarts, never shows a row twice.

One long-lived task (``Connection.run``) opens a client, reads ``/status``, then follows ``/events`` from the
last log id it has seen. When the stream breaks it asks ``/status`` whether the daemon is still there: if it
answers, the dashboard keeps polling status while the stream is retried; if not, it reports "disconnected"
and retries with exponential backoff and jitter. Textual-free, so it is tested on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from daemon.controlapi.client import ControlClient, ControlError, ControlTimeout, DaemonNotRunning
from daemon.controlapi.wire import DaemonStatus, Event, LogRow

T = TypeVar("T")
ClientFactory = Callable[[str], ControlClient]


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    POLLING = "polling"
    """The daemon answers requests but the live stream is down: status is polled instead."""
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class LinkInfo:
    state: LinkState
    reason: str | None = None
    attempt: int = 0
    daemon_down: bool = False
    """The socket is missing or refused: the daemon is not running (as opposed to answering badly)."""

    @property
    def up(self) -> bool:
        return self.state in (LinkState.CONNECTED, LinkState.POLLING)


class Listener(Protocol):
    def on_link(self, info: LinkInfo) -> None: ...

    def on_status(self, status: DaemonStatus) -> None: ...

    def on_logs(self, rows: list[LogRow]) -> None: ...


@dataclass
class Backoff:
    """Exponential, capped, with jitter so many dashboards do not knock on a restarting daemon together."""

    base: float = 0.5
    cap: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        raw = min(self.cap, self.base * self.factor ** min(attempt, 32))
        return min(self.cap, raw * (1.0 - self.jitter + 2.0 * self.jitter * self.rng.random()))


def describe_error(exc: BaseException) -> str:
    """A short reason for the header; the client's errors already name what is wrong, never a secret."""
    if isinstance(exc, ControlError):
        return exc.message
    if isinstance(exc, ControlTimeout):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout"
    return str(exc) or type(exc).__name__


class Connection:
    def __init__(
        self,
        socket_path: str,
        client_factory: ClientFactory,
        listener: Listener,
        *,
        backoff: Backoff | None = None,
        poll_interval: float = 3.0,
        healthy_after: float = 10.0,
    ) -> None:
        self.socket_path = socket_path
        self._factory = client_factory
        self._listener = listener
        self._backoff = backoff or Backoff()
        self._poll_interval = poll_interval
        self._healthy_after = healthy_after
        self._kick = asyncio.Event()
        self.last_log_id: int | None = None
        """Highest log id delivered; the stream resumes after it, so nothing is missed or repeated."""
        self.info = LinkInfo(LinkState.CONNECTING)

    async def call(self, request: Callable[[ControlClient], Awaitable[T]]) -> T:
        """One request on a fresh client: a daemon restart between two clicks costs nothing."""
        async with self._factory(self.socket_path) as client:
            return await request(client)

    def kick(self) -> None:
        """Skip the current backoff wait and try again now (the "reconnect" key)."""
        self._kick.set()

    async def run(self) -> None:
        failures = 0  # connection attempts that failed in a row (drives the reconnect backoff)
        broken_streams = 0  # streams that ended without delivering anything (drives the poll-mode backoff)
        while True:
            try:
                async with self._factory(self.socket_path) as client:
                    await self._refresh_status(client)
                    failures = 0
                    self._set(LinkInfo(LinkState.CONNECTED))
                    broken_streams = 0 if await self._follow(client) else broken_streams + 1
                    # The stream ended: is the daemon still there? If so, keep status fresh by polling
                    # (and say so once the stream has failed in a row; a restart just reconnects).
                    await self._refresh_status(client)
                    if broken_streams:
                        self._set(LinkInfo(LinkState.POLLING))
                    await self._poll_until(client, self._backoff.delay(broken_streams))
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means "not connected"; the reason is shown, then retried
                failures += 1
                self._set(
                    LinkInfo(
                        LinkState.DISCONNECTED,
                        describe_error(exc),
                        failures,
                        daemon_down=isinstance(exc, DaemonNotRunning),
                    )
                )
            await self._wait(self._backoff.delay(failures - 1))

    async def _follow(self, client: ControlClient) -> bool:
        """Reads the stream until it ends or breaks; True if it stayed up long enough to call healthy.

        A stream that keeps dying at once (a daemon that cannot serve it) must not be retried in a
        tight loop: only a stream that lasted resets the backoff.
        """
        loop = asyncio.get_running_loop()
        opened = loop.time()
        # With heartbeats the client notices a silent, dead link (ControlTimeout) instead of waiting forever.
        events = client.events(after=self.last_log_id, heartbeats=True)
        try:
            async for event in events:
                self._handle(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: S110 - the caller asks /status to tell "daemon gone" from "stream broke"
            pass
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        return loop.time() - opened >= self._healthy_after

    def _handle(self, event: Event) -> None:
        seen = self.last_log_id
        if event.type == "log" and event.log is not None:
            if seen is not None and event.id <= seen:
                return  # already delivered before a reconnect
            self._listener.on_logs([event.log])
        elif event.type == "status" and event.status is not None:
            self._listener.on_status(event.status)
        # Every event with id N follows log row N, so N is where a reconnect resumes (heartbeats too).
        self.last_log_id = event.id if seen is None else max(seen, event.id)

    async def _refresh_status(self, client: ControlClient) -> None:
        self._listener.on_status(await client.status())

    async def _poll_until(self, client: ControlClient, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            if await self._wait(min(self._poll_interval, left)):
                return
            await self._refresh_status(client)

    async def _wait(self, seconds: float) -> bool:
        """Waits up to ``seconds``; True when woken early by ``kick``."""
        try:
            await asyncio.wait_for(self._kick.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return False
        self._kick.clear()
        return True

    def _set(self, info: LinkInfo) -> None:
        if info != self.info:
            self.info = info
            self._listener.on_link(info)
