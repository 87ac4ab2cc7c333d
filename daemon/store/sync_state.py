"""Pull cursors per (channel, flow): saved inside the page's transaction, so they advance only with it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import aiosqlite

from daemon.clock import utc_iso
from daemon.store._sql import parse_stamp, stamp
from daemon.store.db import write_lock


@dataclass(frozen=True)
class Cursor:
    """``watermark``: highest remote updated_at fully imported. While a window is being paged,
    ``window_since`` is its start, ``page_token`` the next page and ``window_max`` the highest
    updated_at seen so far; when the window ends, ``window_max`` becomes the watermark."""

    watermark: datetime | None = None
    window_since: datetime | None = None
    page_token: str | None = None
    window_max: datetime | None = None

    @property
    def in_window(self) -> bool:
        return self.window_since is not None or self.page_token is not None

    def finish_window(self) -> Cursor:
        """The cursor after the last page of a window: the watermark moves up, the window closes."""
        candidates = [m for m in (self.watermark, self.window_max) if m is not None]
        return replace(
            self,
            watermark=max(candidates) if candidates else None,
            window_since=None,
            page_token=None,
            window_max=None,
        )


async def load(conn: aiosqlite.Connection, channel: str, flow: str) -> Cursor:
    rows = list(
        await conn.execute_fetchall(
            "SELECT watermark, window_since, page_token, window_max FROM sync_state "
            "WHERE channel = ? AND flow = ?",
            (channel, flow),
        )
    )
    if not rows:
        return Cursor()
    r = rows[0]
    return Cursor(
        watermark=parse_stamp(r["watermark"]),
        window_since=parse_stamp(r["window_since"]),
        page_token=r["page_token"],
        window_max=parse_stamp(r["window_max"]),
    )


async def save(conn: aiosqlite.Connection, channel: str, flow: str, cursor: Cursor, now: datetime) -> None:
    """Call inside the transaction that imports the page: the cursor commits with the page."""
    async with write_lock(conn):
        await conn.execute(
            "INSERT INTO sync_state (channel, flow, watermark, window_since, page_token, window_max, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel, flow) DO UPDATE SET "
            "watermark = excluded.watermark, window_since = excluded.window_since, "
            "page_token = excluded.page_token, window_max = excluded.window_max, "
            "updated_at = excluded.updated_at",
            (
                channel,
                flow,
                stamp(cursor.watermark),
                stamp(cursor.window_since),
                cursor.page_token,
                stamp(cursor.window_max),
                utc_iso(now),
            ),
        )


async def reset(conn: aiosqlite.Connection, channel: str, flow: str | None = None) -> int:
    """Forget cursors (a full re-read); idempotent import makes that safe."""
    async with write_lock(conn):
        if flow is None:
            cur = await conn.execute("DELETE FROM sync_state WHERE channel = ?", (channel,))
        else:
            cur = await conn.execute("DELETE FROM sync_state WHERE channel = ? AND flow = ?", (channel, flow))
    return max(cur.rowcount, 0)
