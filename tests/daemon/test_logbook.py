"""The log sink: batching, no loss on a clean stop, counted drops, thread safety, redaction, retention."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import structlog

from daemon.clock import FakeClock, utc_iso
from daemon.logbook import (
    SCHEMA_VERSION,
    LogBook,
    LogSink,
    RetentionResult,
    Row,
    configure_logging,
    event_to_row,
    get_logger,
    open_log_database,
    prune_logs,
    reset_logging,
    run_retention,
)
from daemon.secrets import SecretRegistry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def row(event: str = "e", *, ts: datetime = T0, level: str = "info", **fields: Any) -> Row:
    return event_to_row({"event": event, "ts": utc_iso(ts), "level": level, **fields})


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) for a condition another task or thread makes true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


async def count_rows(path: Path) -> int:
    async with aiosqlite.connect(path) as conn, conn.execute("SELECT count(*) FROM sync_log") as cur:
        record = await cur.fetchone()
    assert record is not None
    return int(record[0])


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    yield
    reset_logging()


@pytest.fixture
async def book(tmp_path: Path) -> AsyncIterator[LogBook]:
    opened = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    yield opened
    await opened.aclose()


async def test_schema_is_created_and_versioned(tmp_path: Path) -> None:
    conn = await open_log_database(tmp_path / "log.db")
    try:
        async with conn.execute("PRAGMA user_version") as cur:
            assert (await cur.fetchone())[0] == SCHEMA_VERSION  # type: ignore[index]
        async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'") as cur:
            names = {r[0] for r in await cur.fetchall()}
        assert {
            "sync_log_channel",
            "sync_log_ts",
            "sync_log_flow",
            "sync_log_entity",
            "sync_log_problems",
        } <= names
        async with conn.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"  # type: ignore[index]
    finally:
        await conn.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "log.db") as conn:
        await conn.execute("PRAGMA user_version = 99")
        await conn.commit()
    with pytest.raises(RuntimeError, match="newer than this storesync"):
        await open_log_database(tmp_path / "log.db")


async def test_rows_are_written_in_batches_of_batch_size(tmp_path: Path) -> None:
    sink = LogSink(batch_size=500, clock=FakeClock())
    book = await LogBook.open(tmp_path / "log.db", sink=sink)
    try:
        for i in range(1200):
            assert sink.offer(row(f"e{i}", channel="loja"))
        await book.flush()
        assert sink.batches == 3  # 500 + 500 + 200, one transaction each
        assert sink.written == 1200
        page = await book.query(limit=5000)
        assert [r.id for r in page.rows] == list(range(1200, 0, -1))
        assert [r.event for r in page.rows[:2]] == ["e1199", "e1198"]
        assert page.rows[0].channel == "loja"
    finally:
        await book.aclose()


async def test_a_lone_row_waits_for_max_delay_on_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=clock, max_delay=0.25))
    try:
        with book.bus.subscribe() as sub:
            book.sink.offer(row("lonely"))
            await eventually(lambda: clock.sleepers == 1)  # the writer lingers for more rows
            assert book.sink.written == 0
            clock.advance(0.25)
            event = await sub.get(timeout=5)
            assert event is not None and event.log is not None
            assert event.log.event == "lonely"
            assert event.id == event.log.id == 1
    finally:
        await book.aclose()


async def test_a_full_batch_goes_out_without_waiting_for_the_timer(tmp_path: Path) -> None:
    clock = FakeClock()  # never advanced
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=clock, batch_size=50))
    try:
        with book.bus.subscribe() as sub:
            await asyncio.sleep(0)
            for i in range(50):
                book.sink.offer(row(f"e{i}"))
            ids: list[int] = []
            while len(ids) < 50:
                event = await sub.get(timeout=5)
                assert event is not None
                ids.append(event.id)
            assert ids == list(range(1, 51))
            assert book.sink.batches == 1
    finally:
        await book.aclose()


async def test_close_drains_everything_from_the_loop_and_threads(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    book = await LogBook.open(path, sink=LogSink(clock=FakeClock(), capacity=100_000))
    configure_logging("debug", json_stdout=False, sink=book.sink)

    def worker(n: int) -> None:
        log = get_logger(channel=f"t{n}")
        for i in range(1500):
            log.info("from_thread", i=i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    log = get_logger(channel="loop")
    for i in range(3000):
        log.debug("from_loop", i=i)
        if i % 500 == 0:
            await asyncio.sleep(0)  # let the writer run while threads keep logging
    for thread in threads:
        await asyncio.to_thread(thread.join)
    await book.aclose()  # no flush first: closing alone must lose nothing

    assert book.sink.dropped == 0
    assert await count_rows(path) == 3000 + 4 * 1500
    reopened = await LogBook.open(path, sink=LogSink(clock=FakeClock()))
    try:
        page = await reopened.query(channel="t2", limit=5000)
        assert sorted(r.data["i"] for r in page.rows) == list(range(1500))
    finally:
        await reopened.aclose()


async def test_every_event_is_written_or_counted_even_while_closing(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    sink = LogSink(clock=FakeClock(), capacity=1_000_000)
    book = await LogBook.open(path, sink=sink)
    started = threading.Event()
    total = 30_000

    def chatter() -> None:
        for i in range(total):
            sink.offer(row(f"e{i}"))
            if i == 1000:
                started.set()

    thread = threading.Thread(target=chatter)
    thread.start()
    await asyncio.to_thread(started.wait, 5)
    await book.aclose()  # while the thread is still logging
    await asyncio.to_thread(thread.join)
    assert await count_rows(path) + sink.dropped == total
    assert await count_rows(path) >= 1000


async def test_a_full_queue_counts_drops_and_reports_them_once(tmp_path: Path) -> None:
    stdout = io.StringIO()
    sink = LogSink(capacity=10, clock=FakeClock())
    configure_logging("info", sink=sink, stream=stdout)
    for i in range(15):
        sink.offer(row(f"e{i}"))  # not started yet: the queue fills up
    assert sink.dropped == 5
    book = await LogBook.open(tmp_path / "log.db", sink=sink)
    try:
        await book.flush()
        page = await book.query(limit=100)
        assert [r.event for r in page.rows][1:] == [f"e{i}" for i in range(9, -1, -1)]
        summary = page.rows[0]
        assert summary.event == "log_events_dropped"
        assert summary.level == "warning"
        assert summary.data["dropped"] == 5
        assert sum("log_events_dropped" in line for line in stdout.getvalue().splitlines()) == 1
        # Nothing more dropped: no more summaries.
        sink.offer(row("later"))
        await book.flush()
        assert [r.event for r in (await book.query(limit=2)).rows] == ["later", "log_events_dropped"]
        assert sink.dropped == 5
    finally:
        await book.aclose()


async def test_a_batch_that_cannot_be_written_is_retried_then_counted(tmp_path: Path) -> None:
    clock = FakeClock()
    stdout = io.StringIO()
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=clock))
    configure_logging("info", sink=book.sink, stream=stdout)
    try:
        await book.reader.execute("DROP TABLE sync_log")  # every insert now fails
        for i in range(3):
            book.sink.offer(row(f"e{i}"))
        flushing = asyncio.create_task(book.flush())
        for delay in (0.05, 0.5):  # bounded retries with backoff, on the injected clock
            await eventually(lambda: clock.sleepers >= 1)
            clock.advance(delay)
        await asyncio.wait_for(flushing, 5)
        assert book.sink.write_errors == 3
        assert book.sink.dropped == 3
        assert "log_batch_lost" in stdout.getvalue()
    finally:
        await book.aclose()


async def test_events_survive_until_the_sink_starts(tmp_path: Path) -> None:
    sink = LogSink(clock=FakeClock())
    configure_logging("info", json_stdout=False, sink=sink)
    structlog.get_logger().info("early", channel="loja")
    book = await LogBook.open(tmp_path / "log.db", sink=sink)
    try:
        await book.flush()
        assert [r.event for r in (await book.query()).rows] == ["early"]
    finally:
        await book.aclose()


async def test_secrets_are_redacted_everywhere_in_the_event(tmp_path: Path) -> None:
    secret = "tok-SECRET-8841"
    registry = SecretRegistry()
    registry.register(secret)
    stdout = io.StringIO()
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    try:
        configure_logging("debug", sink=book.sink, redactor=registry, stream=stdout)
        log = get_logger(channel="loja", flow="orders")
        log.warning(
            f"auth failed for {secret}",
            headers={"Authorization": f"Bearer {secret}", "nested": [{"deep": (1, secret)}]},
            error=RuntimeError(f"401 with key {secret}"),
            remote_id=secret,
        )
        try:
            raise ValueError(f"boom {secret}")
        except ValueError:
            log.exception("crashed")
        await book.flush()

        assert secret not in stdout.getvalue()
        assert stdout.getvalue().count("***") >= 5
        async with book.reader.execute("SELECT event, remote_id, data FROM sync_log") as cur:
            stored = json.dumps([list(r) for r in await cur.fetchall()])
        assert secret not in stored
        page = await book.query(level="warning")
        first = page.rows[-1]
        assert first.event == "auth failed for ***"
        assert first.data["headers"] == {"Authorization": "Bearer ***", "nested": [{"deep": [1, "***"]}]}
        assert first.data["error"] == "401 with key ***"
        assert first.remote_id == "***"
        assert "boom ***" in page.rows[0].data["exception"]
    finally:
        await book.aclose()


async def test_level_filter_and_context_binding(tmp_path: Path) -> None:
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    try:
        configure_logging("warning", json_stdout=False, sink=book.sink)
        structlog.contextvars.bind_contextvars(run_id="r-1")
        log = get_logger(channel="loja", flow="stock", entity="product", entity_id=42)
        log.info("too_quiet")
        log.error("kept")
        await book.flush()
        rows = (await book.query()).rows
        assert [r.event for r in rows] == ["kept"]
        assert (rows[0].channel, rows[0].flow, rows[0].run_id, rows[0].entity, rows[0].entity_id) == (
            "loja",
            "stock",
            "r-1",
            "product",
            "42",
        )
    finally:
        await book.aclose()


async def test_stdlib_logging_goes_through_the_same_chain(tmp_path: Path) -> None:
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    try:
        configure_logging("debug", json_stdout=False, sink=book.sink)
        logging.getLogger("aiohttp.server").error("handler failed: %s", "boom")
        assert logging.getLogger("aiosqlite").getEffectiveLevel() == logging.WARNING  # would feed on itself
        await book.flush()
        rows = (await book.query()).rows
        assert [(r.event, r.level, r.data.get("logger")) for r in rows] == [
            ("handler failed: boom", "error", "aiohttp.server")
        ]
    finally:
        await book.aclose()


async def test_retention_by_age_and_count_in_chunks(book: LogBook) -> None:
    now = T0
    for i in range(100):
        book.sink.offer(row(f"old{i}", ts=now - timedelta(days=40, minutes=i)))
    for i in range(50):
        book.sink.offer(row(f"new{i}", ts=now - timedelta(minutes=50 - i)))
    await book.flush()

    statements: list[str] = []
    await book.reader.set_trace_callback(statements.append)
    result = await prune_logs(book.reader, older_than=now - timedelta(days=30), chunk=7)
    assert result == RetentionResult(deleted_by_age=100, deleted_by_count=0)
    deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE")]
    assert len(deletes) == 15  # 14 full chunks of 7, then the 2 left over
    await book.reader.set_trace_callback(None)  # type: ignore[arg-type]

    result = await prune_logs(book.reader, keep_rows=20, chunk=7)
    assert result == RetentionResult(deleted_by_age=0, deleted_by_count=30)
    rows = (await book.query(limit=100)).rows
    assert [r.event for r in rows] == [f"new{i}" for i in range(49, 29, -1)]

    # Nothing to do: a cheap no-op.
    assert await prune_logs(
        book.reader, older_than=now - timedelta(days=30), keep_rows=20
    ) == RetentionResult(0, 0)


async def test_retention_never_reuses_ids(book: LogBook) -> None:
    for i in range(10):
        book.sink.offer(row(f"e{i}", ts=T0 - timedelta(days=90)))
    await book.flush()
    await prune_logs(book.reader, older_than=T0)
    book.sink.offer(row("after"))
    await book.flush()
    assert [r.id for r in (await book.query()).rows] == [11]


async def test_run_retention_prunes_on_its_interval(book: LogBook) -> None:
    clock = FakeClock(start=T0)
    passes: asyncio.Queue[RetentionResult] = asyncio.Queue()
    task = asyncio.create_task(
        run_retention(
            book.reader, days=30, keep_rows=None, interval=600, clock=clock, on_pass=passes.put_nowait
        )
    )
    try:
        assert await asyncio.wait_for(passes.get(), 5) == RetentionResult(0, 0)
        for i in range(3):
            book.sink.offer(row(f"old{i}", ts=T0 - timedelta(days=31)))
        await book.flush()
        await eventually(lambda: clock.sleepers >= 1)
        clock.advance(600)
        assert await asyncio.wait_for(passes.get(), 5) == RetentionResult(3, 0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
