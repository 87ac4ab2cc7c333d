"""Shipments as a carrier sees them: which ones to ask about, and what the carrier said.

A shipment is tracked while it has a code, its carrier is one a carrier channel tracks, its state is
not final (delivered, returned, invalid code) and it is younger than the tracking horizon. The state
lives in ``shipments.status`` next to the latest event, so "where is order 1234?" is one query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiosqlite

from channels.models import TrackingState, TrackingStatus
from daemon.clock import utc_iso
from daemon.jsontext import dumps
from daemon.store._sql import IN_JSON, json_list, parse_stamp, stamp
from daemon.store.db import transaction

FINAL_STATES: tuple[str, ...] = tuple(s.value for s in TrackingState if s.final)
KNOWN = frozenset(s.value for s in TrackingState) - {TrackingState.NOT_FOUND.value}
"""States only the carrier's events give: once a shipment has one, "not found" does not undo it."""


@dataclass(frozen=True, slots=True)
class TrackedShipment:
    id: int
    order_id: int
    order_channel: str
    order_number: str
    carrier: str
    tracking_code: str
    status: str


@dataclass(frozen=True, slots=True)
class TrackingChange:
    """A shipment whose state moved; ``order_complete``: every tracked shipment of its order is
    delivered now (the order may move to the delivered status)."""

    shipment: TrackedShipment
    before: str
    after: TrackingState
    order_complete: bool


def carrier_codes(carriers: Iterable[str]) -> list[str]:
    """Carrier codes as the queries compare them (``lower(carrier)``): trimmed, lower case, unique."""
    return sorted({c.strip().lower() for c in carriers if c.strip()})


async def due_for_tracking(
    conn: aiosqlite.Connection,
    carriers: Iterable[str],
    *,
    checked_before: datetime,
    created_after: datetime,
    limit: int,
) -> list[TrackedShipment]:
    """Open shipments of ``carriers`` (local codes, any case) not asked about since ``checked_before``,
    never-asked first, then least recently asked."""
    wanted = carrier_codes(carriers)
    if not wanted:
        return []
    rows = await conn.execute_fetchall(
        "SELECT s.id, s.order_id, o.channel, o.number, s.carrier, s.tracking_code, s.status "
        "FROM shipments s JOIN orders o ON o.id = s.order_id "
        f"WHERE s.tracking_code IS NOT NULL AND s.status NOT IN {IN_JSON} "
        "AND (s.tracking_checked_at IS NULL OR s.tracking_checked_at < ?) "
        f"AND lower(s.carrier) IN {IN_JSON} AND s.created_at >= ? "
        "ORDER BY s.tracking_checked_at IS NOT NULL, s.tracking_checked_at, s.id LIMIT ?",
        (json_list(FINAL_STATES), utc_iso(checked_before), json_list(wanted), utc_iso(created_after), limit),
    )
    return [
        TrackedShipment(
            id=int(r[0]),
            order_id=int(r[1]),
            order_channel=str(r[2]),
            order_number=str(r[3]),
            carrier=str(r[4]),
            tracking_code=str(r[5]).strip(),
            status=str(r[6]),
        )
        for r in rows
    ]


async def record_tracking(
    conn: aiosqlite.Connection,
    answers: Sequence[tuple[TrackedShipment, TrackingStatus | None]],
    carriers: Iterable[str],
    now: datetime,
) -> list[TrackingChange]:
    """Store what the carrier said about each shipment (checked now, state, latest event) in one
    transaction; returns the shipments whose state moved. No answer (None), or "not found" for a
    shipment the carrier had events for: only the check time moves, so the shipment keeps its state
    and waits for its next turn instead of being asked again at once."""
    moved: list[tuple[TrackedShipment, TrackingState]] = []
    async with transaction(conn):
        for shipment, answer in answers:
            # The carrier knew it before: a lookup that fails now is the carrier's glitch.
            lost = answer is not None and answer.state is TrackingState.NOT_FOUND and shipment.status in KNOWN
            if answer is None or lost:
                await conn.execute(
                    "UPDATE shipments SET tracking_checked_at = ? WHERE id = ?", (utc_iso(now), shipment.id)
                )
                continue
            event = answer.event
            delivered_at = (
                stamp(event.at if event and event.at else now)
                if answer.state is TrackingState.DELIVERED
                else None
            )
            await conn.execute(
                "UPDATE shipments SET tracking_checked_at = ?, status = ?, "
                "tracking_event = COALESCE(?, tracking_event), "
                "delivered_at = COALESCE(delivered_at, ?), "
                "updated_at = CASE WHEN status IS ? THEN updated_at ELSE ? END WHERE id = ?",
                (
                    utc_iso(now),
                    answer.state.value,
                    dumps(event.model_dump(mode="json")) if event else None,
                    delivered_at,
                    answer.state.value,
                    utc_iso(now),
                    shipment.id,
                ),
            )
            if shipment.status != answer.state.value:
                moved.append((shipment, answer.state))
        delivered = TrackingState.DELIVERED
        complete = await _orders_all_delivered(
            conn, {shipment.order_id for shipment, state in moved if state is delivered}, carriers
        )
    return [
        TrackingChange(shipment, shipment.status, state, state is delivered and shipment.order_id in complete)
        for shipment, state in moved
    ]


async def _orders_all_delivered(
    conn: aiosqlite.Connection, order_ids: set[int], carriers: Iterable[str]
) -> set[int]:
    """Of ``order_ids``, those whose every tracked shipment (with a code, of these carriers) is delivered."""
    if not order_ids:
        return set()
    rows = await conn.execute_fetchall(
        f"SELECT order_id FROM shipments WHERE order_id IN {IN_JSON} AND tracking_code IS NOT NULL "
        f"AND lower(carrier) IN {IN_JSON} GROUP BY order_id "
        "HAVING SUM(status <> 'delivered') = 0",
        (json_list(sorted(order_ids)), json_list(carrier_codes(carriers))),
    )
    return {int(r[0]) for r in rows}


ATTENTION_STATES: tuple[str, ...] = tuple(
    s.value
    for s in (
        TrackingState.EXCEPTION,
        TrackingState.RETURNING,
        TrackingState.RETURNED,
        TrackingState.INVALID_CODE,
    )
)
"""States a person must act on (call the carrier, refund or re-ship, fix the code)."""
UNKNOWN_GRACE = timedelta(days=3)
"""A label is often made before the parcel is posted; a code the carrier still does not know after
this long is worth a look (never posted, or a typo that happens to pass the check digit)."""
ATTENTION_HORIZON = timedelta(days=60)
"""Parcels older than this are not shown (the default ``tracking_horizon_days``)."""


@dataclass(frozen=True, slots=True)
class ParcelRecord:
    shipment_id: int
    channel: str
    order_id: int
    order_number: str
    carrier: str
    tracking_code: str
    status: str
    event: str | None
    since: datetime | None
    checked_at: datetime | None
    delivered_at: datetime | None


_PARCEL_COLUMNS = (
    "SELECT s.id, o.channel, o.id AS order_id, o.number, s.carrier, s.tracking_code, s.status, "
    "s.tracking_event, s.updated_at, s.tracking_checked_at, s.delivered_at "
    "FROM shipments s JOIN orders o ON o.id = s.order_id "
)


async def needing_attention(
    conn: aiosqlite.Connection, *, created_after: datetime, unknown_before: datetime, limit: int
) -> list[ParcelRecord]:
    """Parcels of open orders (not cancelled) that a carrier put in an :data:`ATTENTION_STATES`
    state, or still does not know although their shipment was made before ``unknown_before``;
    only shipments made after ``created_after`` (older ones are no longer tracked). Newest change first.
    """
    rows = await conn.execute_fetchall(
        _PARCEL_COLUMNS + "WHERE s.tracking_code IS NOT NULL AND s.tracking_checked_at IS NOT NULL "
        "AND o.stock_state <> 'released' AND s.created_at >= ? "
        f"AND (s.status IN {IN_JSON} OR (s.status = ? AND s.created_at < ?)) "
        "ORDER BY s.updated_at DESC, s.id DESC LIMIT ?",
        (
            utc_iso(created_after),
            json_list(ATTENTION_STATES),
            TrackingState.NOT_FOUND.value,
            utc_iso(unknown_before),
            limit,
        ),
    )
    return [_parcel(r) for r in rows]


async def of_order(conn: aiosqlite.Connection, order_id: int) -> list[ParcelRecord]:
    """An order's shipments that have a tracking code, in the order they were added."""
    rows = await conn.execute_fetchall(
        _PARCEL_COLUMNS + "WHERE s.order_id = ? AND s.tracking_code IS NOT NULL ORDER BY s.id", (order_id,)
    )
    return [_parcel(r) for r in rows]


def _parcel(r: aiosqlite.Row) -> ParcelRecord:
    return ParcelRecord(
        shipment_id=int(r["id"]),
        channel=str(r["channel"]),
        order_id=int(r["order_id"]),
        order_number=str(r["number"]),
        carrier=str(r["carrier"] or ""),
        tracking_code=str(r["tracking_code"]).strip(),
        status=str(r["status"]),
        event=_event_description(r["tracking_event"]),
        since=parse_stamp(r["updated_at"]),
        checked_at=parse_stamp(r["tracking_checked_at"]),
        delivered_at=parse_stamp(r["delivered_at"]),
    )


def _event_description(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    description = event.get("description") if isinstance(event, dict) else None
    return str(description) if description else None
