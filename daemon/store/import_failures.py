"""Remote records that could not be imported: parked where people see them, retried next pass."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from daemon.clock import utc_iso
from daemon.store._sql import dumps, parse_stamp
from daemon.store.db import transaction, write_lock

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class ImportFailure:
    id: int
    channel: str
    entity: str
    remote_id: str
    error: str
    raw: Any
    attempts: int
    state: str
    first_seen_at: datetime | None
    last_seen_at: datetime | None


async def record(
    conn: aiosqlite.Connection,
    channel: str,
    entity: str,
    remote_id: str,
    error: str,
    raw: object,
    now: datetime,
) -> int:
    """Park (or re-park) a record: attempts + 1, reopened if it had been resolved or dismissed.

    A dismissed record that fails again *the same way* stays dismissed: pulls overlap by a lookback, so
    the same order is fetched again on the next runs, and a dismissal must outlive that.
    """
    raw_text = raw if isinstance(raw, str) or raw is None else dumps(raw)
    stamp = utc_iso(now)
    async with write_lock(conn):
        rows = list(
            await conn.execute_fetchall(
                "INSERT INTO import_failures (channel, entity, remote_id, error, raw, attempts, state, "
                "first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, 1, 'open', ?, ?) "
                "ON CONFLICT (channel, entity, remote_id) DO UPDATE SET error = excluded.error, "
                "raw = excluded.raw, attempts = attempts + 1, "
                "state = CASE WHEN state = 'dismissed' AND error = excluded.error THEN 'dismissed' "
                "ELSE 'open' END, "
                "last_seen_at = excluded.last_seen_at RETURNING id",
                (channel, entity, remote_id, error[:MAX_ERROR_CHARS], raw_text, stamp, stamp),
            )
        )
    return int(rows[0]["id"])


async def resolve(conn: aiosqlite.Connection, channel: str, entity: str, remote_id: str) -> bool:
    """The record imported fine now; True when an open failure was closed."""
    async with write_lock(conn):
        cur = await conn.execute(
            "UPDATE import_failures SET state = 'resolved' "
            "WHERE channel = ? AND entity = ? AND remote_id = ? AND state = 'open'",
            (channel, entity, remote_id),
        )
    return cur.rowcount > 0


async def resolve_many(conn: aiosqlite.Connection, channel: str, entity: str, remote_ids: list[str]) -> int:
    if not remote_ids:
        return 0
    async with transaction(conn):
        cur = await conn.executemany(
            "UPDATE import_failures SET state = 'resolved' "
            "WHERE channel = ? AND entity = ? AND remote_id = ? AND state = 'open'",
            [(channel, entity, r) for r in remote_ids],
        )
    return max(cur.rowcount, 0)


async def dismiss(conn: aiosqlite.Connection, failure_id: int) -> bool:
    """Someone decided to ignore it; it comes back (open) only if the record fails again."""
    async with write_lock(conn):
        cur = await conn.execute(
            "UPDATE import_failures SET state = 'dismissed' WHERE id = ? AND state = 'open'",
            (failure_id,),
        )
    return cur.rowcount > 0


async def list_open(
    conn: aiosqlite.Connection,
    *,
    channel: str | None = None,
    entity: str | None = None,
    limit: int = 100,
    after_id: int | None = None,
) -> list[ImportFailure]:
    where = ["state = 'open'", "id > ?"]
    params: list[object] = [after_id or 0]
    if channel is not None:
        where.append("channel = ?")
        params.append(channel)
    if entity is not None:
        where.append("entity = ?")
        params.append(entity)
    params.append(limit)
    rows = await conn.execute_fetchall(
        f"SELECT * FROM import_failures WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", params
    )
    return [_failure(r) for r in rows]


async def open_remote_ids(conn: aiosqlite.Connection, channel: str, entity: str) -> list[str]:
    """Remote ids to fetch again on the next pass."""
    rows = await conn.execute_fetchall(
        "SELECT remote_id FROM import_failures WHERE channel = ? AND entity = ? AND state = 'open' "
        "ORDER BY id",
        (channel, entity),
    )
    return [str(r["remote_id"]) for r in rows]


async def count_open(conn: aiosqlite.Connection) -> dict[tuple[str, str], int]:
    rows = await conn.execute_fetchall(
        "SELECT channel, entity, COUNT(*) AS n FROM import_failures WHERE state = 'open' "
        "GROUP BY channel, entity"
    )
    return {(r["channel"], r["entity"]): int(r["n"]) for r in rows}


def _failure(r: aiosqlite.Row) -> ImportFailure:
    raw: Any = r["raw"]
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            raw = json.loads(raw)
    return ImportFailure(
        id=int(r["id"]),
        channel=r["channel"],
        entity=r["entity"],
        remote_id=r["remote_id"],
        error=r["error"],
        raw=raw,
        attempts=int(r["attempts"]),
        state=r["state"],
        first_seen_at=parse_stamp(r["first_seen_at"]),
        last_seen_at=parse_stamp(r["last_seen_at"]),
    )
