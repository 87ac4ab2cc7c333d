"""The outbox the push flows drain, and the values they pushed (with how each was computed).

Triggers keep one row per (channel, entity, entity_id) and bump ``version`` on every newer change.
A push records the version it read; ``mark_sent``/``mark_failed`` only touch a row whose version is
unchanged, so a change that arrives while the push is on the wire stays pending and goes out next.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import aiosqlite

from daemon.clock import utc_iso
from daemon.store._sql import ENQUEUE_CONFLICT, IN_JSON, dumps, json_list, parse_stamp
from daemon.store.db import transaction, write_lock
from daemon.store.errors import InvalidData

Entity = Literal["product", "stock", "price", "order_update"]
ENTITIES: frozenset[str] = frozenset({"product", "stock", "price", "order_update"})
States = Literal["pending", "sent", "failed", "parked"]
STATES: frozenset[str] = frozenset({"pending", "sent", "failed", "parked"})
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class OutboxRow:
    """What a push flow needs to send one item and settle it afterwards."""

    id: int
    channel: str
    entity: str
    entity_id: int
    version: int
    attempts: int


@dataclass(frozen=True)
class OutboxItem:
    """One row for people (TUI/CLI ``outbox`` views)."""

    id: int
    channel: str
    entity: str
    entity_id: int
    sku: str | None
    order_number: str | None
    state: str
    version: int
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    changed_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True)
class PushedValue:
    channel: str
    entity: str
    entity_id: int
    value: Any
    explanation: dict[str, Any]
    pushed_at: datetime | None


def _check_entity(entity: str) -> None:
    if entity not in ENTITIES:
        raise InvalidData(f"outbox entity must be one of {sorted(ENTITIES)}, not {entity!r}")


# --- draining --------------------------------------------------------------------------------------


async def claim_due(
    conn: aiosqlite.Connection,
    channel: str,
    entity: Entity,
    limit: int,
    now: datetime,
    *,
    exclude: Collection[int] = (),
) -> list[OutboxRow]:
    """Rows to push now: every pending row, and failed rows whose retry time has come; oldest first.

    Pending rows are due regardless of ``next_attempt_at`` (triggers stamp it with SQLite's clock,
    which need not agree with an injected one). Nothing is locked: one flow drains one
    (channel, entity), and the version guard settles any race with new changes. ``exclude``: outbox
    ids a pipelined flow holds: the batch on the wire and the previous one, whose settle has not
    committed yet.
    """
    # One compound SELECT ordered as a whole: SQLite merges the pending rows (index outbox_queue, in
    # claim order) with the failed ones whose time has come and stops at the limit, instead of
    # sorting every pending row of the entity first (12 ms a claim with 20,000 pending).
    skip = f" AND id NOT IN {IN_JSON.replace('?', '?5')}" if exclude else ""
    columns = "SELECT id, entity_id, version, attempts, changed_at FROM outbox"
    sql = (
        f"{columns} WHERE channel = ?1 AND entity = ?2 AND state = 'pending'{skip}"
        f" UNION ALL {columns}"
        f" WHERE channel = ?1 AND entity = ?2 AND state = 'failed' AND next_attempt_at <= ?3{skip}"
        " ORDER BY changed_at, id LIMIT ?4"
    )
    params: tuple[object, ...] = (channel, entity, utc_iso(now), limit)
    if exclude:
        params += (json_list(exclude),)
    # The whole claim comes back as one JSON value: fetching a few hundred rows one step at a time
    # hands the GIL to and from the event loop's thread per row while a batch is on the wire.
    rows = list(
        await conn.execute_fetchall(
            f"SELECT json_group_array(json_array(id, entity_id, version, attempts)) FROM ({sql})",
            params,
        )
    )
    claimed = json.loads(rows[0][0]) if rows else []
    return [OutboxRow(r[0], channel, entity, r[1], r[2], r[3]) for r in claimed]


async def mark_sent(conn: aiosqlite.Connection, rows: Sequence[OutboxRow], now: datetime) -> int:
    """Settle pushed rows; returns how many were settled (the rest changed meanwhile: still pending)."""
    if not rows:
        return 0
    # One statement for the whole batch: executemany steps once per row, and each step hands the
    # GIL back and forth with the event loop's thread.
    async with transaction(conn):  # one commit for the batch, not one per row
        cursor = await conn.execute(
            "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = 0, last_error = NULL "
            "FROM (SELECT value ->> 0 AS id, value ->> 1 AS version FROM json_each(?)) AS settled "
            "WHERE outbox.id = settled.id AND outbox.version = settled.version",
            (utc_iso(now), json_list([row.id, row.version] for row in rows)),
        )
    return max(cursor.rowcount, 0)


def backoff_delay(
    attempts: int, base: float, maximum: float, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with 'equal jitter': between half and all of base * 2^(attempts-1)."""
    ceiling = min(maximum, base * (2 ** max(0, attempts - 1)))
    return float(ceiling / 2 + rng() * ceiling / 2)


async def mark_failed(
    conn: aiosqlite.Connection,
    row: OutboxRow,
    error: str,
    now: datetime,
    *,
    max_attempts: int,
    backoff_base: float = 30.0,
    backoff_max: float = 3600.0,
    rng: Callable[[], float] = random.random,
    retryable: bool = True,
) -> str:
    """Record a failed push: 'failed' with a retry time, 'parked' past the bound (or when not
    retryable), or 'superseded' when a newer change arrived meanwhile (the row stays pending)."""
    state, params = _failure(row, error, now, max_attempts, backoff_base, backoff_max, rng, retryable)
    async with write_lock(conn):
        cursor = await conn.execute(_FAIL_SQL, params)
    return state if cursor.rowcount > 0 else "superseded"


async def mark_failed_many(
    conn: aiosqlite.Connection,
    failures: Sequence[tuple[OutboxRow, str]],
    now: datetime,
    *,
    max_attempts: int,
    backoff_base: float = 30.0,
    backoff_max: float = 3600.0,
    rng: Callable[[], float] = random.random,
    retryable: bool = True,
) -> dict[int, str]:
    """Many failures in one transaction; returns the state each row was given (by outbox id).

    A row whose version moved on is left pending; with many rows that is not reported per row.
    """
    result: dict[int, str] = {}
    params: list[tuple[object, ...]] = []
    for row, error in failures:
        state, row_params = _failure(row, error, now, max_attempts, backoff_base, backoff_max, rng, retryable)
        result[row.id] = state
        params.append(row_params)
    if params:
        async with transaction(conn):
            await conn.executemany(_FAIL_SQL, params)
    return result


_FAIL_SQL = (
    "UPDATE outbox SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ? "
    "WHERE id = ? AND version = ?"
)


def _failure(
    row: OutboxRow,
    error: str,
    now: datetime,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
    rng: Callable[[], float],
    retryable: bool,
) -> tuple[str, tuple[object, ...]]:
    attempts = row.attempts + 1
    parked = not retryable or attempts >= max_attempts
    delay = 0.0 if parked else backoff_delay(attempts, backoff_base, backoff_max, rng)
    state = "parked" if parked else "failed"
    due = utc_iso(now + timedelta(seconds=delay))
    return state, (state, attempts, due, error[:MAX_ERROR_CHARS], row.id, row.version)


async def retry(
    conn: aiosqlite.Connection,
    *,
    ids: Iterable[int] | None = None,
    channel: str | None = None,
    entity: Entity | None = None,
) -> int:
    """Failed and parked rows back to pending with a fresh attempt count; returns how many.

    With no filter at all, every failed and parked row is retried.
    """
    where = ["state IN ('failed', 'parked')"]
    params: list[object] = []
    if ids is not None:
        where.append(f"id IN {IN_JSON}")
        params.append(json_list(ids))
    if channel is not None:
        where.append("channel = ?")
        params.append(channel)
    if entity is not None:
        _check_entity(entity)
        where.append("entity = ?")
        params.append(entity)
    async with write_lock(conn):
        cursor = await conn.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, last_error = NULL, "
            "next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now') "
            f"WHERE {' AND '.join(where)}",
            params,
        )
    return max(cursor.rowcount, 0)


async def reschedule_failed(conn: aiosqlite.Connection, channel: str, now: datetime) -> int:
    """Make a channel's failed rows due now (it answers again after an outage); returns how many.

    Attempts are kept, so an item that fails on its own merits is still parked after the bound.
    """
    async with write_lock(conn):
        cursor = await conn.execute(
            "UPDATE outbox SET next_attempt_at = ? "
            "WHERE channel = ? AND state = 'failed' AND next_attempt_at > ?",
            (utc_iso(now), channel, utc_iso(now)),
        )
    return max(cursor.rowcount, 0)


async def enqueue(
    conn: aiosqlite.Connection,
    channel: str | None,
    entity: Entity,
    entity_ids: Iterable[int],
    *,
    only_settled: bool = False,
) -> int:
    """Queue entities by hand ("push this product's stock now"); None = every enabled channel.

    Coalesces like the triggers: an already queued row gets a new version, a sent one goes pending.
    ``only_settled`` leaves queued and failing rows alone (a queued one is coming anyway, a failing
    one keeps its own retry schedule) and queues only rows that are new or were sent.
    """
    _check_entity(entity)
    ids = json_list(sorted({int(i) for i in entity_ids}))
    if channel is None:
        sql = (
            "INSERT INTO outbox (channel, entity, entity_id) "
            "SELECT c.name, ?, j.value FROM channels c, json_each(?) j WHERE c.enabled"
        )
        params: tuple[object, ...] = (entity, ids)
    else:
        sql = (
            "INSERT INTO outbox (channel, entity, entity_id) "
            "SELECT ?, ?, j.value FROM json_each(?) j WHERE true"
        )
        params = (channel, entity, ids)
    async with write_lock(conn):
        guard = " WHERE outbox.state = 'sent'" if only_settled else ""
        cursor = await conn.execute(sql + ENQUEUE_CONFLICT + guard, params)
    return max(cursor.rowcount, 0)


async def next_due_at(conn: aiosqlite.Connection, channel: str, entity: Entity) -> datetime | None:
    """When the next pending/failed row is due (in the past when something is pending now)."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT MIN(next_attempt_at) AS due FROM outbox "
            "WHERE channel = ? AND entity = ? AND state IN ('pending', 'failed')",
            (channel, entity),
        )
    )
    return parse_stamp(rows[0]["due"]) if rows else None


async def pending_kinds(conn: aiosqlite.Connection, channels: Iterable[str]) -> list[tuple[str, str]]:
    """``(channel, entity)`` pairs of ``channels`` that have pending rows.

    One index probe per pair: the change watcher asks after every commit, and a ``DISTINCT`` over the
    state column read the whole outbox each time (every entity ever synced, on every channel).
    """
    names = json_list(channels)
    entities = " UNION ALL ".join(f"SELECT '{entity}' AS entity" for entity in sorted(ENTITIES))
    rows = await conn.execute_fetchall(
        f"SELECT j.value, e.entity FROM json_each(?) j, ({entities}) e WHERE EXISTS ("
        "SELECT 1 FROM outbox o WHERE o.channel = j.value AND o.entity = e.entity AND o.state = 'pending')",
        (names,),
    )
    return [(str(r[0]), str(r[1])) for r in rows]


async def has_pending(conn: aiosqlite.Connection, channel: str, entity: Entity) -> bool:
    rows = list(
        await conn.execute_fetchall(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE channel = ? AND entity = ? "
            "AND state = 'pending') AS p",
            (channel, entity),
        )
    )
    return bool(rows[0]["p"])


# --- looking ---------------------------------------------------------------------------------------


async def counts(conn: aiosqlite.Connection) -> dict[tuple[str, str], dict[str, int]]:
    """``{(channel, entity): {state: n}}`` for status displays."""
    rows = await conn.execute_fetchall(
        "SELECT channel, entity, state, COUNT(*) AS n FROM outbox GROUP BY channel, entity, state"
    )
    result: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        result.setdefault((r["channel"], r["entity"]), {})[r["state"]] = int(r["n"])
    return result


async def list_items(
    conn: aiosqlite.Connection,
    *,
    state: str | None = None,
    channel: str | None = None,
    entity: str | None = None,
    limit: int = 100,
    after_id: int | None = None,
) -> list[OutboxItem]:
    """A page of rows by ascending id (keyset: pass the last id as ``after_id``)."""
    where = ["o.id > ?"]
    params: list[object] = [after_id or 0]
    if state is not None:
        if state not in STATES:
            raise InvalidData(f"outbox state must be one of {sorted(STATES)}, not {state!r}")
        where.append("o.state = ?")
        params.append(state)
    if channel is not None:
        where.append("o.channel = ?")
        params.append(channel)
    if entity is not None:
        _check_entity(entity)
        where.append("o.entity = ?")
        params.append(entity)
    params.append(limit)
    rows = await conn.execute_fetchall(
        "SELECT o.*, p.sku AS sku, ord.number AS order_number FROM outbox o "
        "LEFT JOIN products p ON p.id = o.entity_id AND o.entity IN ('product', 'stock', 'price') "
        "LEFT JOIN orders ord ON ord.id = o.entity_id AND o.entity = 'order_update' "
        f"WHERE {' AND '.join(where)} ORDER BY o.id LIMIT ?",
        params,
    )
    return [
        OutboxItem(
            id=int(r["id"]),
            channel=r["channel"],
            entity=r["entity"],
            entity_id=int(r["entity_id"]),
            sku=r["sku"],
            order_number=r["order_number"],
            state=r["state"],
            version=int(r["version"]),
            attempts=int(r["attempts"]),
            next_attempt_at=parse_stamp(r["next_attempt_at"]),
            last_error=r["last_error"],
            changed_at=parse_stamp(r["changed_at"]),
            sent_at=parse_stamp(r["sent_at"]),
        )
        for r in rows
    ]


# --- pushed values ---------------------------------------------------------------------------------


async def record_pushed(
    conn: aiosqlite.Connection,
    channel: str,
    entity: Entity,
    items: Sequence[tuple[int, object, Mapping[str, Any]]],
    now: datetime,
) -> None:
    """Remember what each entity was pushed as, and why: ``[(entity_id, value, explanation)]``."""
    if not items:
        return
    rows = json_list(
        [entity_id, _value_json(value), dumps(dict(explanation))] for entity_id, value, explanation in items
    )
    async with transaction(conn):  # one statement, not one step per row (see mark_sent)
        await conn.execute(
            "INSERT INTO pushed_values (channel, entity, entity_id, value, explanation, pushed_at) "
            "SELECT ?, ?, value ->> 0, value ->> 1, value ->> 2, ? FROM json_each(?) WHERE true "
            "ON CONFLICT (channel, entity, entity_id) DO UPDATE SET "
            "value = excluded.value, explanation = excluded.explanation, pushed_at = excluded.pushed_at",
            (channel, entity, utc_iso(now), rows),
        )


def _value_json(value: object) -> str:
    """``dumps(value)``; a stock quantity (a plain int) is its own JSON text, without the encoder."""
    return str(value) if type(value) is int else dumps(value)


async def pushed_values(
    conn: aiosqlite.Connection, channel: str, entity: Entity, entity_ids: Iterable[int]
) -> dict[int, PushedValue]:
    """The last pushed values of many entities (e.g. to skip re-sending an unchanged balance)."""
    rows = await conn.execute_fetchall(
        f"SELECT * FROM pushed_values WHERE channel = ? AND entity = ? AND entity_id IN {IN_JSON}",
        (channel, entity, json_list(entity_ids)),
    )
    return {int(r["entity_id"]): _pushed(r) for r in rows}


async def last_pushed(
    conn: aiosqlite.Connection, channel: str, entity: Entity, entity_ids: Iterable[int]
) -> dict[int, object]:
    """Only the values last pushed, without their explanations: what a drift sweep compares.

    One JSON object for the whole chunk (one fetch, one decode) instead of a row and two decodes per
    product, so a sweep over a big catalog does not hold the event loop for long at a time."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT json_group_object(entity_id, json(value)) FROM pushed_values "
            f"WHERE channel = ? AND entity = ? AND entity_id IN {IN_JSON}",
            (channel, entity, json_list(entity_ids)),
        )
    )
    found: dict[str, object] = json.loads(rows[0][0]) if rows and rows[0][0] else {}
    return {int(key): value for key, value in found.items()}


async def explain(
    conn: aiosqlite.Connection, channel: str, entity: Entity, entity_id: int
) -> PushedValue | None:
    """Why does the channel show this? The value last pushed and the steps that produced it."""
    found = await pushed_values(conn, channel, entity, [entity_id])
    return found.get(entity_id)


def _pushed(r: aiosqlite.Row) -> PushedValue:
    explanation = json.loads(r["explanation"])
    return PushedValue(
        channel=r["channel"],
        entity=r["entity"],
        entity_id=int(r["entity_id"]),
        value=json.loads(r["value"]),
        explanation=explanation if isinstance(explanation, dict) else {"value": explanation},
        pushed_at=parse_stamp(r["pushed_at"]),
    )
