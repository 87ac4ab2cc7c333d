"""The configured channels, mirrored into the ``channels`` table the change-capture triggers fan out to.

A channel that is new to the database, or switched from disabled to enabled, gets a full initial
push queued: every sync-enabled product, its stock, and its price (when it has one). Triggers skip
disabled channels, so a channel coming back from being disabled has missed changes and needs the
same full pass. Removing a channel from the settings deletes only its ``channels`` row; its
bindings, outbox rows and cursors stay, so adding it back resumes where it was (with a full push).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import aiosqlite

from daemon.store._sql import ENQUEUE_CONFLICT, json_list
from daemon.store.db import transaction


@dataclass(frozen=True)
class ChannelSyncReport:
    added: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    """Existing channels switched from disabled to enabled."""
    disabled: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    initial_push: dict[str, int] = field(default_factory=dict)
    """Outbox rows queued per channel for its initial push."""


async def sync_channels(
    conn: aiosqlite.Connection, configured: Iterable[tuple[str, str, bool]]
) -> ChannelSyncReport:
    """Make the ``channels`` table equal to ``[(name, kind, enabled)]`` and queue initial pushes."""
    wanted = {name: (kind, bool(enabled)) for name, kind, enabled in configured}
    report = ChannelSyncReport()
    async with transaction(conn):
        rows = await conn.execute_fetchall("SELECT name, kind, enabled FROM channels")
        existing = {r["name"]: (r["kind"], bool(r["enabled"])) for r in rows}
        removed = sorted(set(existing) - set(wanted))
        if removed:
            await conn.execute(
                "DELETE FROM channels WHERE name IN (SELECT value FROM json_each(?))",
                (json_list(removed),),
            )
        report.removed.extend(removed)
        await conn.executemany(
            "INSERT INTO channels (name, kind, enabled) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET kind = excluded.kind, enabled = excluded.enabled "
            "WHERE kind IS NOT excluded.kind OR enabled IS NOT excluded.enabled",
            [(name, kind, int(enabled)) for name, (kind, enabled) in sorted(wanted.items())],
        )
        for name, (_kind, enabled) in sorted(wanted.items()):
            before = existing.get(name)
            if before is None:
                report.added.append(name)
            elif enabled and not before[1]:
                report.enabled.append(name)
            elif not enabled and before[1]:
                report.disabled.append(name)
            if enabled and (before is None or not before[1]):
                report.initial_push[name] = await queue_full_push(conn, name)
    return report


async def set_holds(conn: aiosqlite.Connection, holds: Mapping[str, Iterable[str]]) -> None:
    """Record, per channel, the remote statuses it holds stock back in itself (none: NULL), which the
    trigger ``orders_enqueue_own_stock_on_hold_change`` reads."""
    async with transaction(conn):
        await conn.executemany(
            "UPDATE channels SET holds_stock_in = ?1 WHERE name = ?2 AND holds_stock_in IS NOT ?1",
            [
                (json_list(sorted(codes)) if (codes := set(statuses)) else None, name)
                for name, statuses in holds.items()
            ],
        )


async def queue_full_push(
    conn: aiosqlite.Connection, channel: str, product_ids: Iterable[int] | None = None
) -> int:
    """Queue product, stock and price for every sync-enabled product on one channel (or only for
    ``product_ids``: a product just linked by hand)."""
    only = "" if product_ids is None else "AND p.id IN (SELECT value FROM json_each(?)) "
    params: tuple[object, ...] = (channel,) if product_ids is None else (channel, json_list(product_ids))
    async with transaction(conn):
        cursor = await conn.execute(
            "INSERT INTO outbox (channel, entity, entity_id) "
            "SELECT ?, e.entity, p.id FROM products p "
            "JOIN (SELECT 'product' AS entity UNION ALL SELECT 'stock' UNION ALL SELECT 'price') e "
            "WHERE p.sync_enabled "
            + only
            + "AND (e.entity <> 'price' OR EXISTS (SELECT 1 FROM prices pr WHERE pr.product_id = p.id))"
            + ENQUEUE_CONFLICT,
            params,
        )
    return max(cursor.rowcount, 0)


async def channel_names(conn: aiosqlite.Connection, *, enabled_only: bool = True) -> list[str]:
    rows = await conn.execute_fetchall(
        "SELECT name FROM channels" + (" WHERE enabled" if enabled_only else "") + " ORDER BY name"
    )
    return [str(r["name"]) for r in rows]
