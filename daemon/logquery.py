"""Reading the sync log: keyset pages newest first, and rows after an id for event replay.

The log grows to millions of rows, so no query may scan it whole. Every page walks down the id space
in windows (``id`` is the rowid: a range on it is free, and every index ends in it), starting small and
doubling while the filters are sparse, and stops at the page size, the end of history, or a time
budget. Stopping early returns fewer rows with a ``next_cursor``: the client just asks again. Time
bounds become id bounds through the ``ts`` index (ids rise with time, allowing for a few minutes of
skew between when an event happened and when its batch was committed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, get_args

import aiosqlite

from daemon.clock import parse_iso, utc_iso
from daemon.controlapi.wire import Level, LogPage, LogRow

LEVELS: tuple[str, ...] = get_args(Level)
PROBLEM_LEVELS = ("warning", "error", "critical")
COLUMNS = "id, ts, level, event, channel, flow, run_id, entity, entity_id, remote_id, data"
TS_SKEW = timedelta(minutes=5)
"""How far a row's ts may run ahead of a later row's (queueing, threads, small clock steps)."""

MAX_LIMIT = 5000


def levels_at_least(level: str) -> tuple[str, ...]:
    """The levels at or above ``level``; raises ValueError naming the accepted ones."""
    try:
        index = LEVELS.index(level)
    except ValueError:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}") from None
    return LEVELS[index:]


def row_from_db(record: Sequence[Any]) -> LogRow:
    """A sync_log row as the wire shape (tolerant of rows written by hand with odd values)."""
    data: dict[str, Any]
    try:
        loaded = json.loads(record[10]) if record[10] else {}
        data = loaded if isinstance(loaded, dict) else {"value": loaded}
    except (TypeError, ValueError):
        data = {"raw": str(record[10])}
    level = record[2] if record[2] in LEVELS else "info"
    return LogRow(
        id=record[0],
        ts=parse_iso(record[1]),
        level=level,
        event=record[3],
        channel=record[4],
        flow=record[5],
        run_id=record[6],
        entity=record[7],
        entity_id=record[8],
        remote_id=record[9],
        data=data,
    )


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _scalar(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]


async def _id_bounds(
    conn: aiosqlite.Connection, since: datetime | None, until: datetime | None
) -> tuple[int, int | None]:
    """(lo, hi): every row with since <= ts < until has lo < id < hi (hi None: no upper bound)."""
    lo, hi = 0, None
    if since is not None:
        before = await _scalar(
            conn,
            "SELECT id FROM sync_log INDEXED BY sync_log_ts WHERE ts < ? ORDER BY ts DESC LIMIT 1",
            (utc_iso(since - TS_SKEW),),
        )
        if before is not None:
            lo = int(before)
    if until is not None:
        after = await _scalar(
            conn,
            "SELECT id FROM sync_log INDEXED BY sync_log_ts WHERE ts >= ? ORDER BY ts LIMIT 1",
            (utc_iso(until + TS_SKEW),),
        )
        if after is not None:
            hi = int(after)
    return lo, hi


def page_query(
    *,
    channel: str | None = None,
    flow: str | None = None,
    level: str | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = None,
) -> tuple[str, list[Any]]:
    """The SQL of one window of a page and its filter parameters; the caller appends
    ``(id_low_exclusive, id_high_exclusive, limit)``. Written so each filter can use its index."""
    where: list[str] = []
    params: list[Any] = []
    if channel is not None:
        where.append("channel = ?")
        params.append(channel)
    if flow is not None:
        where.append("flow = ?")
        params.append(flow)
    if level is not None:
        wanted = levels_at_least(level)
        if set(wanted) <= set(PROBLEM_LEVELS):
            # The literal term lets SQLite use the partial index of problems.
            where.append("level IN ('warning', 'error', 'critical')")
        if len(wanted) < len(LEVELS):
            where.append(f"level IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
    if entity is not None:
        # Without entity_id the entity index would sort the whole window; walk ids instead.
        where.append("entity = ?" if entity_id is not None else "+entity = ?")
        params.append(entity)
    if entity_id is not None:
        where.append("entity_id = ?")
        params.append(entity_id)
    if since is not None:
        where.append("+ts >= ?")  # bounded through ids instead (see _id_bounds); no ts index here
        params.append(utc_iso(since))
    if until is not None:
        where.append("+ts < ?")
        params.append(utc_iso(until))
    if q:
        where.append("(event LIKE ? ESCAPE '\\' OR data LIKE ? ESCAPE '\\')")
        pattern = _like_pattern(q)
        params.extend([pattern, pattern])
    sql = (
        f"SELECT {COLUMNS} FROM sync_log WHERE "
        + " AND ".join([*where, "id > ?", "id < ?"])
        + " ORDER BY id DESC LIMIT ?"
    )
    return sql, params


async def query_logs(
    conn: aiosqlite.Connection,
    *,
    channel: str | None = None,
    flow: str | None = None,
    level: str | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = None,
    cursor: int | None = None,
    limit: int = 200,
    time_budget: float = 0.25,
    first_window: int = 20_000,
    max_window: int = 400_000,
) -> LogPage:
    """One page of the log, newest first: rows with ``id < cursor`` matching every filter given.

    ``level`` is a minimum (``warning`` includes errors); ``q`` is a substring of the event name or
    its data (case-insensitive for ASCII); ``since``/``until`` are a half-open ts range. A page may
    hold fewer than ``limit`` rows when the time budget ran out; ``next_cursor`` is None only when no
    older row can match.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    sql, params = page_query(
        channel=channel,
        flow=flow,
        level=level,
        entity=entity,
        entity_id=entity_id,
        since=since,
        until=until,
        q=q,
    )
    lo, hi_bound = await _id_bounds(conn, since, until)
    newest = await _scalar(conn, "SELECT max(id) FROM sync_log")
    if newest is None:
        return LogPage(rows=[], next_cursor=None)
    hi = int(newest) + 1
    if hi_bound is not None:
        hi = min(hi, hi_bound)
    if cursor is not None:
        hi = min(hi, cursor)

    found: list[Sequence[Any]] = []
    window = first_window
    started = time.monotonic()
    while hi - 1 > lo and len(found) <= limit:
        w_lo = max(lo, hi - 1 - window)
        window_started = time.monotonic()
        async with conn.execute(sql, [*params, w_lo, hi, limit + 1 - len(found)]) as cur:
            found.extend(await cur.fetchall())
        hi = w_lo + 1
        now = time.monotonic()
        left = time_budget - (now - started)
        if left <= 0:
            break
        # Grow while cheap, but never past what the budget left can scan at the speed just seen.
        speed = window / max(now - window_started, 1e-6)
        window = max(first_window // 4, min(window * 2, max_window, int(speed * left / 2)))
    if len(found) > limit:
        rows = [row_from_db(r) for r in found[:limit]]
        return LogPage(rows=rows, next_cursor=rows[-1].id)
    rows = [row_from_db(r) for r in found]
    return LogPage(rows=rows, next_cursor=hi if hi - 1 > lo else None)


async def rows_after(conn: aiosqlite.Connection, after_id: int, limit: int = 1000) -> list[LogRow]:
    """Rows with ``id > after_id``, oldest first (event replay)."""
    async with conn.execute(
        f"SELECT {COLUMNS} FROM sync_log WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
    ) as cur:
        records = await cur.fetchall()
    return [row_from_db(r) for r in records]


async def latest_id(conn: aiosqlite.Connection) -> int:
    value = await _scalar(conn, "SELECT max(id) FROM sync_log")
    return int(value) if value is not None else 0
