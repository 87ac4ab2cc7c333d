"""structlog set-up and the batched SQLite log sink (``storesync-log.db``).

Every event goes through one processor chain: level filter, context, level + ISO timestamp, exception
text, secret redaction, the SQLite sink, then a JSON line on stdout (journald). The sink must never
block the event loop nor lose a line on a clean stop: the processor only appends to a bounded,
thread-safe queue (a full queue counts a drop, reported in status and logged once as a summary), and
one writer task commits up to ``batch_size`` rows per transaction, at most ``max_delay`` after the
first one arrived. After each commit the rows (now with their ids) go to the event bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

import aiosqlite
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

from daemon import jsontext
from daemon.clock import SYSTEM_CLOCK, Clock, utc_iso
from daemon.controlapi.wire import LogPage, LogRow
from daemon.events import EventBus
from daemon.logquery import LEVELS, latest_id, query_logs, row_from_db, rows_after
from daemon.secrets import SECRETS
from daemon.store.db import open_log_db

LOG_DB_NAME = "storesync-log.db"
SCHEMA_VERSION = 1
REDACTED = "***"

COLUMN_KEYS = ("channel", "flow", "run_id", "entity", "entity_id", "remote_id")
"""Event keys stored in their own columns (the rest goes to ``data`` as JSON)."""
_OWN_KEYS = frozenset(("ts", "level", "event", *COLUMN_KEYS))
SKIP_SINK_KEY = "_sink_skip"
"""An event carrying this key goes to stdout only (the sink's own complaints about itself)."""

Row = tuple[str, str, str, str | None, str | None, str | None, str | None, str | None, str | None, str]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so replay ids survive retention
    ts        TEXT NOT NULL,                      -- when it happened, ISO-8601 UTC
    level     TEXT NOT NULL,
    event     TEXT NOT NULL,
    channel   TEXT,
    flow      TEXT,
    run_id    TEXT,
    entity    TEXT,
    entity_id TEXT,
    remote_id TEXT,
    data      TEXT NOT NULL DEFAULT '{}'          -- JSON object: every other key of the event
);
CREATE INDEX IF NOT EXISTS sync_log_channel ON sync_log(channel, id);
CREATE INDEX IF NOT EXISTS sync_log_ts ON sync_log(ts);
CREATE INDEX IF NOT EXISTS sync_log_flow ON sync_log(flow, id);
CREATE INDEX IF NOT EXISTS sync_log_entity ON sync_log(entity, entity_id);
CREATE INDEX IF NOT EXISTS sync_log_problems ON sync_log(id)
    WHERE level IN ('warning', 'error', 'critical');
"""


class Redactor(Protocol):
    def redact(self, text: str) -> str: ...


class _NoRedaction:
    def redact(self, text: str) -> str:
        return text


# --- the database -------------------------------------------------------------------------------


async def open_log_database(path: str | Path) -> aiosqlite.Connection:
    """Open the log database (pragmas by ``daemon.store.db``) and create or check its schema."""
    conn = await open_log_db(path)
    try:
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path}: log database schema version {version} is newer than this storesync "
                f"understands ({SCHEMA_VERSION}); upgrade storesync or move the file aside"
            )
        if version < SCHEMA_VERSION:
            await conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
    except BaseException:
        await conn.close()
        raise
    return conn


# --- the processors -----------------------------------------------------------------------------


def _redact_value(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {_redact_key(k, redactor): _redact_value(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v, redactor) for v in value]
    # Anything else would be str()-ed by a renderer later; do it now so the text gets scrubbed.
    return redactor.redact(str(value))


def _redact_key(key: Any, redactor: Redactor) -> str:
    return redactor.redact(key if isinstance(key, str) else str(key))


class RedactionProcessor:
    """Replaces every registered secret, anywhere in the event (nested too), with ``***``."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        redactor = self.redactor
        for key, value in list(event_dict.items()):
            event_dict[key] = _redact_value(value, redactor)
        return event_dict


def _column(value: Any) -> str | None:
    return None if value is None else str(value)


def _normal_level(level: Any) -> str:
    text = str(level).lower()
    if text in LEVELS:
        return text
    return {"warn": "warning", "exception": "error", "fatal": "critical"}.get(text, "info")


def render_line(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    """The stdout renderer: one JSON object per line (``str()`` for what JSON has no type for)."""
    return jsontext.dumps(event_dict)


def event_to_row(event_dict: Mapping[str, Any], clock: Clock = SYSTEM_CLOCK) -> Row:
    """Snapshot an event as a sync_log row (JSON now, so later mutation of its values cannot leak)."""
    data = {k: v for k, v in event_dict.items() if k not in _OWN_KEYS}
    get = event_dict.get
    return (
        str(get("ts") or utc_iso(clock.now())),
        _normal_level(get("level", "info")),
        str(get("event", "")),
        _column(get("channel")),
        _column(get("flow")),
        _column(get("run_id")),
        _column(get("entity")),
        _column(get("entity_id")),
        _column(get("remote_id")),
        jsontext.dumps(data),
    )


# --- the sink -----------------------------------------------------------------------------------


class LogSink:
    """A structlog processor that queues each event for the batched writer (never awaits, never blocks).

    Safe from any thread. Events logged before :meth:`start` wait in the queue and are written once
    the database is open.
    """

    def __init__(
        self,
        *,
        capacity: int = 20_000,
        batch_size: int = 500,
        max_delay: float = 0.25,
        bus: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        drop_report_interval: float = 10.0,
    ) -> None:
        self._capacity = capacity
        self._batch_size = batch_size
        self._max_delay = max_delay
        self.bus = bus
        self._clock = clock
        self._drop_report_interval = drop_report_interval
        self._lock = threading.Lock()
        self._queue: deque[Row] = deque()
        self._accepted = 0
        self._done = 0
        self._dropped = 0
        self._dropped_unreported = 0
        self._last_drop_report = float("-inf")
        self._written = 0
        self._write_errors = 0
        self._batches = 0
        self._urgent_until = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None
        self._closing = False
        self._stopped = False
        """Set (under the lock) when the writer has quit: later events are counted as dropped."""

    # -- the producer side (any thread) --

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if event_dict.pop(SKIP_SINK_KEY, False):
            return event_dict
        self.offer(event_to_row(event_dict, self._clock))
        return event_dict

    def offer(self, row: Row) -> bool:
        """Queue a row; False (and one more counted drop) when the queue is full or closed."""
        with self._lock:
            if self._stopped or len(self._queue) >= self._capacity:
                self._dropped += 1
                self._dropped_unreported += 1
                return False
            self._queue.append(row)
            self._accepted += 1
            size = len(self._queue)
        if size == 1 or size >= self._batch_size:
            self._notify_from_anywhere()
        return True

    def offer_many(self, rows: list[Row]) -> int:
        """Queue many rows under one lock (a batch's per-item events); returns how many were taken."""
        with self._lock:
            room = 0 if self._stopped else max(0, min(len(rows), self._capacity - len(self._queue)))
            if room:
                self._queue.extend(rows[:room] if room < len(rows) else rows)
                self._accepted += room
            lost = len(rows) - room
            if lost:
                self._dropped += lost
                self._dropped_unreported += lost
            size = len(self._queue)
        if room and (size == room or size >= self._batch_size):
            self._notify_from_anywhere()
        return room

    def _notify_from_anywhere(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._notify()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: aclose() drained already
                loop.call_soon_threadsafe(self._notify)

    def _notify(self) -> None:
        size = len(self._queue)
        if size and self._wake is not None:
            self._wake.set()
        if self._full is not None and (size >= self._batch_size or self._done < self._urgent_until):
            self._full.set()

    # -- figures for the status --

    @property
    def dropped(self) -> int:
        """Events that never reached the database (queue full, or a batch that could not be written)."""
        return self._dropped

    @property
    def written(self) -> int:
        return self._written

    @property
    def write_errors(self) -> int:
        return self._write_errors

    @property
    def batches(self) -> int:
        """Transactions committed (tests and benchmarks read it)."""
        return self._batches

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- the writer side (the event loop) --

    async def start(self, conn: aiosqlite.Connection) -> None:
        """Start the writer task on the running loop, writing through ``conn`` (its own connection)."""
        if self._task is not None:
            raise RuntimeError("the log sink is already started")
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._progress = asyncio.Event()
        self._closing = False
        self._stopped = False
        self._task = asyncio.create_task(self._run(), name="logbook-writer")
        self._notify()

    async def flush(self) -> None:
        """Return once every event accepted before the call is committed (or counted as lost)."""
        if self._task is None or self._progress is None:
            return
        target = self._accepted
        self._urgent_until = max(self._urgent_until, target)
        self._notify()
        while self._done < target and not self._task.done():
            self._progress.clear()
            await self._progress.wait()

    async def aclose(self) -> None:
        """Drain the queue, stop the writer. Does not close the connection (its owner does)."""
        if self._task is None:
            self._closing = True
            with self._lock:
                self._stopped = True
                self._dropped += len(self._queue)
                self._queue.clear()
            return
        await self.flush()
        self._closing = True
        self._notify()
        if self._wake is not None:
            self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        assert self._wake is not None and self._full is not None
        while True:
            if not self._queue and not self._dropped_unreported:
                if self._closing:
                    with self._lock:  # atomically with offer(): nothing slips in after the last look
                        if not self._queue:
                            self._stopped = True
                            return
                    continue
                self._wake.clear()
                if not self._queue:
                    await self._wake.wait()
                    continue
            if not self._closing and self._done >= self._urgent_until and len(self._queue) < self._batch_size:
                await self._linger()
            batch, accepted = self._take()
            if batch:
                await self._write(batch, accepted)

    async def _linger(self) -> None:
        """Wait for a full batch, a flush, or ``max_delay`` (on the injected clock)."""
        assert self._full is not None
        self._full.clear()
        self._notify()
        if self._full.is_set():
            return
        timer = asyncio.ensure_future(self._clock.sleep(self._max_delay))
        full = asyncio.ensure_future(self._full.wait())
        try:
            await asyncio.wait({timer, full}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            full.cancel()

    def _take(self) -> tuple[list[Row], int]:
        """Up to a batch of queued rows (plus a drop summary when one is due), and how many were queued."""
        with self._lock:
            count = min(self._batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            unreported = self._dropped_unreported
            now = self._clock.monotonic()
            # Once per interval under sustained overload; at once when the burst is over or we stop.
            report = unreported > 0 and (
                self._closing or not self._queue or now - self._last_drop_report >= self._drop_report_interval
            )
            if report:
                self._dropped_unreported = 0
                self._last_drop_report = now
        if report:
            batch.append(self._drop_summary(unreported))
        return batch, count

    def _drop_summary(self, count: int) -> Row:
        event: dict[str, Any] = {
            "ts": utc_iso(self._clock.now()),
            "level": "warning",
            "event": "log_events_dropped",
            "dropped": count,
            "dropped_total": self._dropped,
            "reason": "the log queue was full; these events reached stdout but not the log database",
        }
        structlog.get_logger("storesync.logbook").warning(
            "log_events_dropped", dropped=count, dropped_total=self._dropped, **{SKIP_SINK_KEY: True}
        )
        return event_to_row(event, self._clock)

    async def _write(self, batch: list[Row], accepted: int) -> None:
        delays = (0.05, 0.5)
        for attempt in range(len(delays) + 1):
            try:
                first_id = await self._insert(batch)
            except Exception as exc:  # the writer must survive a locked or full disk
                self._write_errors += 1
                if attempt < len(delays):
                    await self._clock.sleep(delays[attempt])
                    continue
                with self._lock:
                    self._dropped += accepted
                structlog.get_logger("storesync.logbook").error(
                    "log_batch_lost",
                    rows=len(batch),
                    error=f"{type(exc).__name__}: {exc}",
                    **{SKIP_SINK_KEY: True},
                )
                self._finish(accepted)
                return
            self._written += len(batch)
            self._batches += 1
            self._publish(first_id, batch)
            self._finish(accepted)
            return

    def _finish(self, count: int) -> None:
        self._done += count
        if self._progress is not None:
            self._progress.set()

    async def _insert(self, batch: list[Row]) -> int:
        """Insert in one transaction with ids assigned here, so they are known without RETURNING."""
        conn = self._conn
        assert conn is not None
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'sync_log'), 0),"
                " COALESCE((SELECT max(id) FROM sync_log), 0)"
            ) as cur:
                record = await cur.fetchone()
            base = max(int(record[0]), int(record[1])) if record else 0
            # One statement for the batch: executemany steps once per row, handing the GIL back and
            # forth with the event loop's thread each time.
            await conn.execute(
                "INSERT INTO sync_log (id, ts, level, event, channel, flow, run_id, entity, entity_id,"
                " remote_id, data) SELECT ? + key + 1, value ->> 0, value ->> 1, value ->> 2,"
                " value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8,"
                " value ->> 9 FROM json_each(?) ORDER BY key",
                (base, jsontext.dumps(batch, default=None)),
            )
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            raise
        return base + 1

    def _publish(self, first_id: int, batch: list[Row]) -> None:
        bus = self.bus
        if bus is None:
            return
        last_id = first_id + len(batch) - 1
        if not bus.has_subscribers:
            bus.note_last_id(last_id)
            return
        bus.publish_logs(row_from_db((first_id + i, *row)) for i, row in enumerate(batch))


# --- retention ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionResult:
    deleted_by_age: int
    deleted_by_count: int


async def prune_logs(
    conn: aiosqlite.Connection,
    *,
    older_than: datetime | None = None,
    keep_rows: int | None = None,
    chunk: int = 5000,
) -> RetentionResult:
    """Delete rows older than ``older_than`` and beyond the newest ``keep_rows``, ``chunk`` at a time.

    Each chunk is its own short transaction so the batched writer never waits long for the lock.
    """
    by_age = 0
    if older_than is not None:
        cutoff = utc_iso(older_than)
        while True:
            cur = await conn.execute(
                "DELETE FROM sync_log WHERE id IN"
                " (SELECT id FROM sync_log INDEXED BY sync_log_ts WHERE ts < ? LIMIT ?)",
                (cutoff, chunk),
            )
            deleted = max(cur.rowcount, 0)
            await cur.close()
            by_age += deleted
            if deleted < chunk:
                break
            await asyncio.sleep(0)
    by_count = 0
    if keep_rows is not None:
        async with conn.execute(
            "SELECT (SELECT max(id) FROM sync_log), (SELECT min(id) FROM sync_log)"
        ) as cur:
            record = await cur.fetchone()
        newest, oldest = (record[0], record[1]) if record else (None, None)
        # Ids are contiguous unless something deleted from the middle, so this is a cheap upper bound.
        if newest is not None and oldest is not None and newest - oldest + 1 > keep_rows:
            async with conn.execute(
                "SELECT id FROM sync_log ORDER BY id DESC LIMIT 1 OFFSET ?", (keep_rows,)
            ) as cur:
                found = await cur.fetchone()
            if found is not None:
                last_doomed = int(found[0])
                while True:
                    cur = await conn.execute(
                        "DELETE FROM sync_log WHERE id IN"
                        " (SELECT id FROM sync_log WHERE id <= ? ORDER BY id LIMIT ?)",
                        (last_doomed, chunk),
                    )
                    deleted = max(cur.rowcount, 0)
                    await cur.close()
                    by_count += deleted
                    if deleted < chunk:
                        break
                    await asyncio.sleep(0)
    return RetentionResult(deleted_by_age=by_age, deleted_by_count=by_count)


async def run_retention(
    conn: aiosqlite.Connection,
    *,
    days: float | None,
    keep_rows: int | None,
    interval: float = 600.0,
    chunk: int = 5000,
    clock: Clock = SYSTEM_CLOCK,
    on_pass: Callable[[RetentionResult], None] | None = None,
) -> None:
    """Prune now and every ``interval`` seconds until cancelled; then ``PRAGMA optimize``."""
    log = structlog.get_logger("storesync.logbook")
    while True:
        try:
            older_than = clock.now() - timedelta(days=days) if days is not None else None
            result = await prune_logs(conn, older_than=older_than, keep_rows=keep_rows, chunk=chunk)
            await conn.execute("PRAGMA optimize")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("log_retention_failed", error=f"{type(exc).__name__}: {exc}")
            result = RetentionResult(0, 0)
        else:
            if result.deleted_by_age or result.deleted_by_count:
                log.info(
                    "log_retention",
                    deleted_by_age=result.deleted_by_age,
                    deleted_by_count=result.deleted_by_count,
                )
        if on_pass is not None:
            on_pass(result)
        await clock.sleep(interval)


# --- structlog configuration --------------------------------------------------------------------


class _State:
    """What the processor chain reads at call time, so reconfiguring never strands cached loggers."""

    min_level = logging.INFO
    sink: LogSink | None = None
    redaction = RedactionProcessor(_NoRedaction())
    clock: Clock = SYSTEM_CLOCK
    processors: list[Any] | None = None
    """The chain :func:`configure_logging` installed; :func:`log_each` takes its shortcut only while
    it is still the one in force (tests that capture logs swap it out)."""
    json_stdout = False
    stdout_items = False
    """:func:`log_each` prints one line per item instead of one per batch (``log_items_to_stdout``)."""


_STATE = _State()
STDOUT_SAMPLE_IDS = 20
"""How many entity ids a batch's summary line on stdout names (the log database has them all)."""
_LEVEL_NUMBERS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _filter_level(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    level = event_dict.get("level", method_name)
    if _LEVEL_NUMBERS.get(str(level).lower(), logging.INFO) < _STATE.min_level:
        raise structlog.DropEvent
    return event_dict


def _timestamp(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("ts", utc_iso(_STATE.clock.now()))
    return event_dict


def _normalise_level(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict["level"] = _normal_level(event_dict.get("level", method_name))
    return event_dict


def _redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    return _STATE.redaction(logger, method_name, event_dict)


def _to_sink(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    sink = _STATE.sink
    if sink is None:
        event_dict.pop(SKIP_SINK_KEY, None)
        return event_dict
    return sink(logger, method_name, event_dict)


def _drop(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    raise structlog.DropEvent


class _StdlibBridge(logging.Handler):
    """Routes stdlib logging (asyncio, aiohttp, aiosqlite) through the same chain and sinks."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            extra: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                extra["exc_info"] = record.exc_info
            structlog.get_logger().log(record.levelno, record.getMessage(), **extra)
        except Exception:
            self.handleError(record)


def level_number(level: str) -> int:
    try:
        return _LEVEL_NUMBERS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; expected debug, info, warning or error") from None


def set_log_level(level: str) -> None:
    """Change the minimum level at run time (a reload); takes effect for every logger at once."""
    _STATE.min_level = level_number(level)
    logging.getLogger().setLevel(_STATE.min_level)


def set_stdout_items(on: bool) -> None:
    """Per item (True) or one summary per batch (False) on stdout for :func:`log_each`; the log
    database gets one row per item either way."""
    _STATE.stdout_items = on


def configure_logging(
    level: str = "info",
    *,
    json_stdout: bool = True,
    sink: LogSink | None = None,
    redactor: Redactor | None = None,
    clock: Clock = SYSTEM_CLOCK,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog (and route stdlib logging into it). Safe to call again, e.g. to add the sink.

    ``redactor`` defaults to the process-wide secret registry; ``json_stdout=False`` keeps stdout quiet
    (tests, the CLI) while the sink still records.
    """
    if redactor is None:
        redactor = SECRETS
    _STATE.redaction = RedactionProcessor(redactor)
    _STATE.sink = sink
    _STATE.clock = clock
    set_log_level(level)
    renderer: Callable[[WrappedLogger, str, EventDict], Any]
    if json_stdout:
        renderer = render_line
        factory: Any = structlog.PrintLoggerFactory(stream or sys.stdout)
    else:
        renderer = _drop
        factory = structlog.ReturnLoggerFactory()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _normalise_level,
        _filter_level,
        _timestamp,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _redact,
        _to_sink,
        renderer,
    ]
    _STATE.processors = processors
    _STATE.json_stdout = json_stdout
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdlibBridge):
            root.removeHandler(handler)
    root.addHandler(_StdlibBridge())
    # aiosqlite logs every statement at debug: through the sink that would feed on itself.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)


def reset_logging() -> None:
    """Undo :func:`configure_logging` (tests; a daemon that embeds another)."""
    _STATE.sink = None
    _STATE.redaction = RedactionProcessor(_NoRedaction())
    _STATE.clock = SYSTEM_CLOCK
    _STATE.min_level = logging.INFO
    _STATE.processors = None
    _STATE.json_stdout = False
    _STATE.stdout_items = False
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdlibBridge):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def log_each(
    logger: FilteringBoundLogger, level: str, event: str, items: Sequence[Mapping[str, Any]]
) -> None:
    """``logger.<level>(event, **item)`` for every item, with the shared work done once per batch.

    A push batch logs one event per item (each is its own filterable ``sync_log`` row); through the
    whole processor chain that cost about as much CPU as the HTTP request it reports. Here the
    level check, context merge and timestamp happen once and the rows go to the sink under one lock.
    Every item is still redacted, and the rows are the ones the chain would have made. When the
    chain in force is not ours (tests capturing logs), each item goes through it as usual.

    stdout (journald) gets one summary line for the batch (``count``, the first entity ids) unless
    :func:`set_stdout_items` asked for a line per item: journald's default rate limit (10,000
    messages in 30 s per unit) would otherwise drop lines, errors included, during a bulk push.
    """
    if not items:
        return
    printer = getattr(logger, "_logger", None)
    if _STATE.processors is None or structlog.get_config()["processors"] is not _STATE.processors:
        method = getattr(logger, level)
        for item in items:
            method(event, **item)
        return
    normal = _normal_level(level)
    if _LEVEL_NUMBERS.get(normal, logging.INFO) < _STATE.min_level:
        return
    # What every item shares (bound context, then context variables) is merged and redacted once.
    shared: EventDict = dict(structlog.get_context(logger))
    for key, value in structlog.contextvars.get_contextvars().items():
        shared.setdefault(key, value)
    redaction = _STATE.redaction
    shared = redaction(printer, normal, shared)
    event = redaction.redactor.redact(event)
    ts = utc_iso(_STATE.clock.now())
    sink = _STATE.sink
    clock = _STATE.clock
    rows: list[Row] = []
    lines: list[str] = []
    render = _STATE.json_stdout and isinstance(printer, structlog.PrintLogger)
    per_item = render and _STATE.stdout_items
    encode_line = jsontext.dumps
    for item in items:
        event_dict: EventDict = {**shared, **redaction(printer, normal, dict(item)), "event": event}
        event_dict["level"] = normal
        event_dict.setdefault("ts", ts)
        if sink is not None:
            rows.append(event_to_row(event_dict, clock))
        if per_item:
            lines.append(encode_line(event_dict))
    if render and not per_item:
        ids = [str(item["entity_id"]) for item in items[:STDOUT_SAMPLE_IDS] if "entity_id" in item]
        summary: EventDict = {**shared, "event": event, "level": normal, "ts": ts, "count": len(items)}
        if ids:
            summary["entity_ids"] = ids + (["…"] if len(items) > len(ids) else [])
        lines.append(encode_line(redaction(printer, normal, summary)))
    if sink is not None:
        sink.offer_many(rows)
    if lines and isinstance(printer, structlog.PrintLogger):
        printer.msg("\n".join(lines))


def get_logger(**bound: Any) -> FilteringBoundLogger:
    """A logger bound with the given context (channel, flow, run_id, entity, entity_id ...)."""
    logger: FilteringBoundLogger = structlog.get_logger().bind(**bound)
    return logger


# --- the whole thing, as the daemon uses it -----------------------------------------------------


class LogBook:
    """The log database, its sink and the event bus: open once at start, close once at stop.

    Two connections: the sink's writer and one for reads and retention (WAL lets them run side by
    side), so a slow query never delays a batch.
    """

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection, sink: LogSink
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self.sink = sink
        assert sink.bus is not None
        self.bus: EventBus = sink.bus
        self._retention: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        sink: LogSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> LogBook:
        """Open ``path`` and start the writer. Pass the ``sink`` already given to configure_logging so
        lines logged before the database was open are kept."""
        db_path = Path(path)
        writer = await open_log_database(db_path)
        try:
            reader = await open_log_database(db_path)
        except BaseException:
            await writer.close()
            raise
        last = await latest_id(reader)
        if sink is None:
            sink = LogSink(clock=clock)
        if sink.bus is None:
            sink.bus = EventBus(last_id=last)
        else:
            sink.bus.note_last_id(last)
        await sink.start(writer)
        return cls(db_path, writer, reader, sink)

    @property
    def reader(self) -> aiosqlite.Connection:
        return self._reader

    async def query(self, **filters: Any) -> LogPage:
        """``query_logs`` on the read connection; see :func:`daemon.logquery.query_logs`."""
        return await query_logs(self._reader, **filters)

    async def rows_after(self, after_id: int, limit: int = 1000) -> list[LogRow]:
        return await rows_after(self._reader, after_id, limit)

    def start_retention(
        self,
        *,
        days: float | None,
        keep_rows: int | None,
        interval: float = 600.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> asyncio.Task[None]:
        if self._retention is not None:
            self._retention.cancel()
        self._retention = asyncio.create_task(
            run_retention(self._reader, days=days, keep_rows=keep_rows, interval=interval, clock=clock),
            name="logbook-retention",
        )
        return self._retention

    async def flush(self) -> None:
        await self.sink.flush()

    async def aclose(self) -> None:
        """Stop retention, drain the sink (no line lost), close the bus and both connections."""
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        await self.sink.aclose()
        self.bus.close()
        with contextlib.suppress(Exception):
            await self._reader.execute("PRAGMA optimize")
        await self._writer.close()
        await self._reader.close()


def bind_context(**values: Any) -> None:
    """Bind keys for every event logged from the current task (contextvars)."""
    structlog.contextvars.bind_contextvars(**values)


def clear_context(*keys: str) -> None:
    if keys:
        structlog.contextvars.unbind_contextvars(*keys)
    else:
        structlog.contextvars.clear_contextvars()
