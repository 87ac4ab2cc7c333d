"""De-para tables (status, carrier, payment, category) per channel, mirrored from settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import aiosqlite

from daemon.store.db import transaction
from daemon.store.errors import InvalidData


@dataclass(frozen=True)
class MappingTable:
    """One channel's de-para, in memory: load it once per page instead of a query per lookup."""

    channel: str
    to_remote_map: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    to_local_map: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def to_remote(self, kind: str, local: str) -> str | None:
        return self.to_remote_map.get(kind, {}).get(local)

    def to_local(self, kind: str, remote: str) -> str | None:
        return self.to_local_map.get(kind, {}).get(remote)


async def load_mappings(
    conn: aiosqlite.Connection, channel: str, tables: Mapping[str, Mapping[str, str | int]]
) -> int:
    """Replace every mapping row of ``channel`` with ``{kind: {local: remote}}``; returns the count.

    Two local values mapped to the same remote code cannot be read back unambiguously, so that is
    an error naming both, and nothing is replaced.
    """
    rows: list[tuple[str, str, str, str]] = []
    for kind, pairs in tables.items():
        seen: dict[str, str] = {}
        for local, remote in pairs.items():
            remote_text = str(remote)
            if remote_text in seen:
                raise InvalidData(
                    f"channel {channel!r}: mappings.{kind}: {seen[remote_text]!r} and {local!r} "
                    f"both map to {remote_text!r}"
                )
            seen[remote_text] = local
            rows.append((channel, kind, str(local), remote_text))
    async with transaction(conn):
        await conn.execute("DELETE FROM mappings WHERE channel = ?", (channel,))
        await conn.executemany(
            "INSERT INTO mappings (channel, kind, local, remote) VALUES (?, ?, ?, ?)", rows
        )
    return len(rows)


async def load_table(conn: aiosqlite.Connection, channel: str) -> MappingTable:
    to_remote: dict[str, dict[str, str]] = {}
    to_local: dict[str, dict[str, str]] = {}
    rows = await conn.execute_fetchall(
        "SELECT kind, local, remote FROM mappings WHERE channel = ? ORDER BY rowid", (channel,)
    )
    for row in rows:
        to_remote.setdefault(row["kind"], {}).setdefault(row["local"], row["remote"])
        to_local.setdefault(row["kind"], {})[row["remote"]] = row["local"]
    return MappingTable(channel, to_remote, to_local)


async def to_remote(conn: aiosqlite.Connection, channel: str, kind: str, local: str) -> str | None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT remote FROM mappings WHERE channel = ? AND kind = ? AND local = ? ORDER BY rowid LIMIT 1",
            (channel, kind, local),
        )
    )
    return str(rows[0]["remote"]) if rows else None


async def to_local(conn: aiosqlite.Connection, channel: str, kind: str, remote: str) -> str | None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT local FROM mappings WHERE channel = ? AND kind = ? AND remote = ?",
            (channel, kind, remote),
        )
    )
    return str(rows[0]["local"]) if rows else None
