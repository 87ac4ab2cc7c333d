"""The event bus and the replay-then-live hand-over behind GET /events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.clock import FakeClock
from daemon.controlapi.wire import DaemonStatus, Event, LogRow
from daemon.events import EventBus, SubscriptionClosed, SubscriptionLagged, stream_events
from daemon.logbook import LogBook, LogSink, event_to_row

STARTED = datetime(2026, 3, 1, tzinfo=UTC)


def status() -> DaemonStatus:
    return DaemonStatus(version="t", pid=1, started_at=STARTED)


async def status_async() -> DaemonStatus:
    return status()


def log_row(i: int) -> LogRow:
    return LogRow(id=i, ts=STARTED, level="info", event=f"e{i}")


async def write(book: LogBook, count: int, start: int = 0) -> None:
    for i in range(count):
        book.sink.offer(event_to_row({"event": f"e{start + i}", "level": "info"}))
    await book.flush()


def stream(book: LogBook, after: int | None, **kw: float) -> AsyncGenerator[Event, None]:
    sub = book.bus.subscribe()
    return _closing_sub(
        sub,
        stream_events(
            sub,
            after=after,
            fetch_after=book.rows_after,
            status=status_async,
            start_id=book.bus.last_id,
            replay_page=int(kw.get("replay_page", 1000)),
            heartbeat_interval=kw.get("heartbeat_interval", 30.0),
        ),
    )


async def _closing_sub(sub: object, events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
    try:
        async for event in events:
            yield event
    finally:
        await events.aclose()
        sub.close()  # type: ignore[attr-defined]


async def take_logs(events: AsyncGenerator[Event, None], up_to: int) -> list[int]:
    """Log ids from the stream until ``up_to`` arrives; fails (bounded) if it never does."""
    ids: list[int] = []

    async def run() -> None:
        async for event in events:
            if event.type == "log":
                ids.append(event.id)
                if event.id >= up_to:
                    return

    await asyncio.wait_for(run(), 10)
    return ids


# --- the bus ---------------------------------------------------------------------------------------


async def test_status_events_carry_the_latest_log_id() -> None:
    bus = EventBus(last_id=10)
    with bus.subscribe() as sub:
        bus.publish_status(status())
        bus.publish_logs([log_row(11), log_row(12)])
        bus.publish_status(status())
        got = [await sub.get(timeout=1) for _ in range(4)]
    assert [(e.type, e.id) for e in got if e is not None] == [
        ("status", 10),
        ("log", 11),
        ("log", 12),
        ("status", 12),
    ]
    assert bus.last_id == 12


async def test_a_slow_subscriber_is_cut_off_not_waited_for() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=3)
    fast = bus.subscribe(maxsize=100)
    bus.publish_logs(log_row(i) for i in range(1, 6))
    with pytest.raises(SubscriptionLagged):
        await slow.get(timeout=1)
    assert not bus.has_subscribers or slow not in bus._subs
    assert [(await fast.get(timeout=1)).id for _ in range(5)] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]


async def test_closing_the_bus_drains_then_ends_subscribers() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish_logs([log_row(1)])
    bus.close()
    first = await sub.get(timeout=1)
    assert first is not None and first.id == 1
    with pytest.raises(SubscriptionClosed):
        await sub.get(timeout=1)
    with pytest.raises(SubscriptionClosed):
        await bus.subscribe().get(timeout=1)


async def test_get_times_out_with_none() -> None:
    with EventBus().subscribe() as sub:
        assert await sub.get(timeout=0.01) is None


# --- the stream ------------------------------------------------------------------------------------


async def test_replay_then_status_then_live(tmp_path: Path) -> None:
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    try:
        await write(book, 5)
        events = stream(book, after=2)
        first = [await anext(events) for _ in range(4)]
        assert [(e.type, e.id) for e in first] == [("log", 3), ("log", 4), ("log", 5), ("status", 5)]
        assert first[0].log is not None and first[0].log.event == "e2"
        await write(book, 2, start=5)
        book.bus.publish_status(status())
        live = [await anext(events) for _ in range(3)]
        assert [(e.type, e.id) for e in live] == [("log", 6), ("log", 7), ("status", 7)]
        await events.aclose()
    finally:
        await book.aclose()


async def test_live_only_when_after_is_none(tmp_path: Path) -> None:
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    try:
        await write(book, 3)
        events = stream(book, after=None)
        snapshot = await anext(events)
        assert (snapshot.type, snapshot.id) == ("status", 3)
        await write(book, 1)
        assert (await anext(events)).id == 4
        await events.aclose()
    finally:
        await book.aclose()


async def test_heartbeats_when_quiet(tmp_path: Path) -> None:
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    try:
        await write(book, 2)
        events = stream(book, after=0, heartbeat_interval=0.01)
        kinds = [(e.type, e.id) for e in [await anext(events) for _ in range(4)]]
        assert kinds == [("log", 1), ("log", 2), ("status", 2), ("heartbeat", 2)]
        await events.aclose()
    finally:
        await book.aclose()


async def test_hand_over_has_no_gap_and_no_repeat_while_rows_keep_coming(tmp_path: Path) -> None:
    """Rows committed during the replay are either replayed or delivered live, exactly once."""
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock(), batch_size=7))
    try:
        await write(book, 40)

        async def producer() -> None:
            for burst in range(30):
                await write(book, 5, start=1000 + burst * 5)
                await asyncio.sleep(0)

        producing = asyncio.create_task(producer())
        events = stream(book, after=10, replay_page=3)  # many small replay pages race the writer
        taking = asyncio.create_task(take_logs(events, up_to=200))
        await producing
        await write(book, 10, start=9000)  # rows 191..200 come after whatever was queued live
        ids = await taking
        assert ids == list(range(11, 201))

        # Disconnect, more rows arrive meanwhile, reconnect with the last id seen.
        await events.aclose()
        await write(book, 25, start=5000)
        again = stream(book, after=ids[-1])
        assert await take_logs(again, up_to=225) == list(range(201, 226))
        await again.aclose()
    finally:
        await book.aclose()


async def test_resume_after_a_daemon_restart(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    book = await LogBook.open(path, sink=LogSink(clock=FakeClock()))
    await write(book, 10)
    events = stream(book, after=0)
    seen = await take_logs(events, up_to=10)
    await events.aclose()
    await write(book, 5, start=10)  # written after the client went away, before the stop
    await book.aclose()

    restarted = await LogBook.open(path, sink=LogSink(clock=FakeClock()))
    try:
        assert restarted.bus.last_id == 15
        await write(restarted, 5, start=15)
        events = stream(restarted, after=seen[-1])
        assert await take_logs(events, up_to=20) == list(range(11, 21))
        await write(restarted, 1, start=20)
        assert await take_logs(events, up_to=21) == [21]
        await events.aclose()
    finally:
        await restarted.aclose()


async def test_an_id_from_another_log_database_does_not_hide_new_rows(tmp_path: Path) -> None:
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    try:
        await write(book, 3)
        events = stream(book, after=9999)
        snapshot = await anext(events)
        assert (snapshot.type, snapshot.id) == ("status", 3)
        await write(book, 1)
        assert (await anext(events)).id == 4
        await events.aclose()
    finally:
        await book.aclose()


async def test_the_stream_ends_when_the_logbook_closes(tmp_path: Path) -> None:
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    events = stream(book, after=None)
    await anext(events)
    await book.aclose()
    with contextlib.suppress(StopAsyncIteration):
        extra = await asyncio.wait_for(anext(events), 5)
        raise AssertionError(f"unexpected event {extra}")
