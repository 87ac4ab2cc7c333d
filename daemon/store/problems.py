"""Products that never made it to a channel: sync-enabled, but with no product binding there."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True)
class NeverIntegrated:
    channel: str
    product_id: int
    sku: str
    name: str


async def never_integrated(
    conn: aiosqlite.Connection,
    *,
    channel: str | None = None,
    limit: int = 100,
    after: tuple[str, int] | None = None,
) -> list[NeverIntegrated]:
    """Per enabled channel, ordered by (channel, product id); pass the last pair as ``after``."""
    where = ["c.enabled", "p.sync_enabled", "b.local_id IS NULL"]
    params: list[object] = []
    if channel is not None:
        where.append("c.name = ?")
        params.append(channel)
    if after is not None:
        where.append("(c.name, p.id) > (?, ?)")
        params.extend(after)
    params.append(limit)
    rows = await conn.execute_fetchall(
        "SELECT c.name AS channel, p.id, p.sku, p.name FROM channels c CROSS JOIN products p "
        "LEFT JOIN bindings b ON b.channel = c.name AND b.entity = 'product' AND b.local_id = p.id "
        f"WHERE {' AND '.join(where)} ORDER BY c.name, p.id LIMIT ?",
        params,
    )
    return [NeverIntegrated(r["channel"], int(r["id"]), r["sku"], r["name"]) for r in rows]
