"""OAuth tokens a channel must keep across restarts (rotating, single-use refresh tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from daemon.clock import utc_iso
from daemon.store._sql import parse_stamp, stamp
from daemon.store.db import transaction


@dataclass(frozen=True)
class TokenSet:
    access_token: str | None
    refresh_token: str | None
    expires_at: datetime | None

    def __repr__(self) -> str:  # tokens never reach a log line through a repr
        return (
            f"TokenSet(access_token={'***' if self.access_token else None}, "
            f"refresh_token={'***' if self.refresh_token else None}, expires_at={self.expires_at!r})"
        )

    __str__ = __repr__


async def load_tokens(conn: aiosqlite.Connection, channel: str) -> TokenSet | None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT access_token, refresh_token, expires_at FROM channel_tokens WHERE channel = ?",
            (channel,),
        )
    )
    if not rows:
        return None
    r = rows[0]
    return TokenSet(r["access_token"], r["refresh_token"], parse_stamp(r["expires_at"]))


async def save_tokens(
    conn: aiosqlite.Connection,
    channel: str,
    access_token: str | None,
    refresh_token: str | None,
    expires_at: datetime | None,
    now: datetime,
) -> None:
    """Durably committed before returning when called outside a transaction: a rotated refresh
    token must survive a crash. Inside a caller's transaction it commits with it, so give it a
    transaction of its own (never a page's): a rollback could lose the only valid refresh token.
    """
    async with transaction(conn):
        await conn.execute(
            "INSERT INTO channel_tokens (channel, access_token, refresh_token, expires_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel) DO UPDATE SET "
            "access_token = excluded.access_token, refresh_token = excluded.refresh_token, "
            "expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            (channel, access_token, refresh_token, stamp(expires_at), utc_iso(now)),
        )


async def delete_tokens(conn: aiosqlite.Connection, channel: str) -> bool:
    async with transaction(conn):
        cur = await conn.execute("DELETE FROM channel_tokens WHERE channel = ?", (channel,))
    return cur.rowcount > 0
