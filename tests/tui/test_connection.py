"""The dashboard's link to the daemon, against the real ControlServer: follow, survive restarts, poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from daemon.controlapi.client import ControlClient
from daemon.controlapi.server import ControlServer
from daemon.controlapi.wire import DaemonStatus, LogRow
from daemon.events import EventBus
from tests.tui.fake_runtime import FakeRuntime
from tui.connection import Backoff, Connection, LinkInfo, LinkState


class Recorder:
    """A Listener that lets a test wait for what it expects."""

    def __init__(self) -> None:
        self.links: list[LinkInfo] = []
        self.statuses: list[DaemonStatus] = []
        self.rows: list[LogRow] = []
        self._changed = asyncio.Condition()

    def _poke(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def on_link(self, info: LinkInfo) -> None:
        self.links.append(info)
        self._poke()

    def on_status(self, status: DaemonStatus) -> None:
        self.statuses.append(status)
        self._poke()

    def on_logs(self, rows: list[LogRow]) -> None:
        self.rows.extend(rows)
        self._poke()

    @property
    def state(self) -> LinkState | None:
        return self.links[-1].state if self.links else None

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(condition)


@pytest.fixture
async def linked(server: ControlServer, socket_path: Path) -> AsyncIterator[tuple[Connection, Recorder]]:
    recorder = Recorder()
    connection = Connection(
        str(socket_path), ControlClient, recorder, backoff=Backoff(base=0.05, cap=0.2), poll_interval=0.1
    )
    task = asyncio.create_task(connection.run())
    yield connection, recorder
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_follows_live_rows_and_status(
    linked: tuple[Connection, Recorder], runtime: FakeRuntime
) -> None:
    connection, recorder = linked
    await recorder.until(lambda: recorder.state is LinkState.CONNECTED and bool(recorder.statuses))
    # The stream's first event (a status snapshot) tells where the live log starts.
    await recorder.until(lambda: connection.last_log_id == runtime.rows[-1].id)
    first = runtime.add_log("first_live")
    await recorder.until(lambda: [r.id for r in recorder.rows] == [first.id])
    await runtime.pause("vtex", "orders")
    await recorder.until(lambda: any(s.channels[2].flows[0].state == "paused" for s in recorder.statuses))


async def test_reconnects_after_a_restart_without_gaps_or_repeats(
    linked: tuple[Connection, Recorder], server: ControlServer, runtime: FakeRuntime, socket_path: Path
) -> None:
    connection, recorder = linked
    await recorder.until(lambda: recorder.state is LinkState.CONNECTED)
    await recorder.until(lambda: connection.last_log_id == runtime.rows[-1].id)
    before = runtime.add_log("before_stop")
    await recorder.until(lambda: bool(recorder.rows))

    await server.stop()
    await recorder.until(lambda: recorder.state is LinkState.DISCONNECTED)
    assert recorder.links[-1].daemon_down

    # The restarted daemon logs before the dashboard is back: those rows must be replayed, once.
    runtime.bus = EventBus(last_id=runtime.rows[-1].id)
    missed = [runtime.add_log(f"while_away_{i}") for i in range(3)]
    restarted = ControlServer(runtime, socket_path, heartbeat_interval=0.5)
    await restarted.start()
    try:
        await recorder.until(lambda: recorder.state is LinkState.CONNECTED)
        after = runtime.add_log("after_restart")
        await recorder.until(lambda: bool(recorder.rows) and recorder.rows[-1].id == after.id)
    finally:
        await restarted.stop()
    ids = [r.id for r in recorder.rows]
    assert ids == [before.id, *(m.id for m in missed), after.id]


async def test_polls_status_while_the_stream_is_down(
    linked: tuple[Connection, Recorder], runtime: FakeRuntime
) -> None:
    _, recorder = linked
    await recorder.until(lambda: recorder.state is LinkState.CONNECTED)
    runtime.bus.close()  # every stream now ends at once, while /status still answers
    await recorder.until(lambda: recorder.state is LinkState.POLLING)
    runtime.channel("loja").state = "circuit_open"  # no event published: only polling can see it
    await recorder.until(lambda: recorder.statuses[-1].channels[0].state == "circuit_open")


async def test_reports_a_missing_daemon_and_keeps_trying(socket_path: Path) -> None:
    recorder = Recorder()
    connection = Connection(
        str(socket_path), ControlClient, recorder, backoff=Backoff(base=0.01, cap=0.05), poll_interval=0.1
    )
    task = asyncio.create_task(connection.run())
    try:
        await recorder.until(lambda: len(recorder.links) >= 3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert all(link.state is LinkState.DISCONNECTED and link.daemon_down for link in recorder.links)
    assert [link.attempt for link in recorder.links[:3]] == [1, 2, 3]
