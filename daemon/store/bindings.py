"""Bindings (vínculos): which channel record an ERP record is, per channel and entity."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Literal

import aiosqlite

from daemon.store._sql import IN_JSON, json_list
from daemon.store.db import transaction, write_lock
from daemon.store.errors import BindingConflict, InvalidData

Entity = Literal["product", "order", "customer"]
ENTITIES: frozenset[str] = frozenset({"product", "order", "customer"})


def _check(entity: str) -> None:
    if entity not in ENTITIES:
        raise InvalidData(f"binding entity must be one of {sorted(ENTITIES)}, not {entity!r}")


async def get_binding(conn: aiosqlite.Connection, channel: str, entity: Entity, local_id: int) -> str | None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT remote_id FROM bindings WHERE channel = ? AND entity = ? AND local_id = ?",
            (channel, entity, local_id),
        )
    )
    return str(rows[0]["remote_id"]) if rows else None


async def get_local_id(
    conn: aiosqlite.Connection, channel: str, entity: Entity, remote_id: str
) -> int | None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT local_id FROM bindings WHERE channel = ? AND entity = ? AND remote_id = ?",
            (channel, entity, remote_id),
        )
    )
    return int(rows[0]["local_id"]) if rows else None


async def remote_ids(
    conn: aiosqlite.Connection, channel: str, entity: Entity, local_ids: Iterable[int]
) -> dict[int, str]:
    """Remote ids of many local records in one query; unbound ids are absent."""
    rows = await conn.execute_fetchall(
        f"SELECT local_id, remote_id FROM bindings WHERE channel = ? AND entity = ? "
        f"AND local_id IN {IN_JSON}",
        (channel, entity, json_list(local_ids)),
    )
    return {int(r["local_id"]): str(r["remote_id"]) for r in rows}


async def local_ids(
    conn: aiosqlite.Connection, channel: str, entity: Entity, remote_ids_: Iterable[str]
) -> dict[str, int]:
    rows = await conn.execute_fetchall(
        f"SELECT local_id, remote_id FROM bindings WHERE channel = ? AND entity = ? "
        f"AND remote_id IN {IN_JSON}",
        (channel, entity, json_list(str(r) for r in remote_ids_)),
    )
    return {str(r["remote_id"]): int(r["local_id"]) for r in rows}


async def set_binding(
    conn: aiosqlite.Connection, channel: str, entity: Entity, local_id: int, remote_id: str
) -> None:
    """Bind (or re-bind) a local record; a remote id already bound to another record is refused."""
    await set_bindings(conn, channel, entity, [(local_id, remote_id)])


async def set_bindings(
    conn: aiosqlite.Connection, channel: str, entity: Entity, pairs: Sequence[tuple[int, str]]
) -> None:
    """Many bindings at once (a product push's results); all or none."""
    _check(entity)
    if not pairs:
        return
    try:
        async with transaction(conn):
            taken = await local_ids(conn, channel, entity, [remote for _, remote in pairs])
            for local_id, remote_id in pairs:
                owner = taken.get(str(remote_id))
                if owner is not None and owner != local_id:
                    raise BindingConflict(
                        f"channel {channel!r}: {entity} {remote_id!r} is already bound to local id "
                        f"{owner}, cannot bind it to {local_id}; unlink {owner} first"
                    )
            await conn.executemany(
                "INSERT INTO bindings (channel, entity, local_id, remote_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (channel, entity, local_id) DO UPDATE SET remote_id = excluded.remote_id "
                "WHERE remote_id IS NOT excluded.remote_id",
                [(channel, entity, local_id, str(remote_id)) for local_id, remote_id in pairs],
            )
    except sqlite3.IntegrityError as exc:  # two pairs of this very batch share a remote id
        raise BindingConflict(f"channel {channel!r}: {entity} bindings conflict: {exc}") from exc


async def delete_binding(conn: aiosqlite.Connection, channel: str, entity: Entity, local_id: int) -> bool:
    """Unlink; True when there was a binding. The next product push creates a new remote record."""
    async with write_lock(conn):
        cursor = await conn.execute(
            "DELETE FROM bindings WHERE channel = ? AND entity = ? AND local_id = ?",
            (channel, entity, local_id),
        )
    return cursor.rowcount > 0
