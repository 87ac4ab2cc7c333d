"""ERP prices and the price each channel is sent: per-channel adjustment and scheduled promotions.

A scheduled promotion (``promo_price`` between ``promo_start`` and ``promo_end``, end exclusive)
wins over the standing ``sale_price``. Nothing in the database changes when a promotion starts or
ends, so the prices flow asks :func:`next_price_boundary` when to wake and
:func:`products_crossing` which products to queue then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import aiosqlite

from daemon.clock import utc_iso
from daemon.store._products import id_for_sku
from daemon.store._sql import CENTS, IN_JSON, json_list, money_text, parse_decimal, parse_stamp, stamp
from daemon.store.db import transaction
from daemon.store.errors import InvalidData

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class PriceRow:
    product_id: int
    list_price: Decimal
    sale_price: Decimal | None
    cost_price: Decimal | None
    promo_price: Decimal | None
    promo_start: datetime | None
    promo_end: datetime | None


@dataclass(frozen=True)
class PriceFigure:
    """The prices one channel is sent, and every step that produced them."""

    product_id: int
    list_price: Decimal
    sale_price: Decimal | None
    """The promotional price in force at ``now`` (adjusted), or None."""
    cost_price: Decimal | None
    promo_start: datetime | None
    """Set only when the scheduled promotion is the one in force (channels that take dates)."""
    promo_end: datetime | None
    explanation: dict[str, Any]


def check_money(value: Decimal, what: str, *, positive: bool = False) -> Decimal:
    """A price as stored: finite, not negative (or > 0), at most two decimal places."""
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise InvalidData(f"{what} {value!r} is not a number") from exc
    if not number.is_finite():
        raise InvalidData(f"{what} {value!r} is not a number")
    if number < 0 or (positive and number == 0):
        raise InvalidData(f"{what} must be {'> 0' if positive else '>= 0'}, got {number}")
    if number != number.quantize(CENTS):
        raise InvalidData(f"{what} {number} has more than two decimal places")
    return number.quantize(CENTS)


def _optional_money(value: Decimal | None, what: str, *, positive: bool = False) -> Decimal | None:
    return None if value is None else check_money(value, what, positive=positive)


def adjust(value: Decimal, percent: Decimal) -> Decimal:
    """``value`` raised (or lowered) by ``percent`` %, rounded half-up to cents."""
    return (value * (HUNDRED + percent) / HUNDRED).quantize(CENTS, rounding=ROUND_HALF_UP)


async def set_price(
    conn: aiosqlite.Connection,
    sku: str,
    list_price: Decimal,
    sale_price: Decimal | None = None,
    cost_price: Decimal | None = None,
    promo_price: Decimal | None = None,
    promo_start: datetime | None = None,
    promo_end: datetime | None = None,
) -> bool:
    """Replace the product's prices (None clears a field); True when anything changed.

    An unchanged price writes nothing, so no push is queued for it.
    """
    list_ = check_money(list_price, f"{sku}: list_price", positive=True)
    sale = _optional_money(sale_price, f"{sku}: sale_price", positive=True)
    cost = _optional_money(cost_price, f"{sku}: cost_price")
    promo = _optional_money(promo_price, f"{sku}: promo_price", positive=True)
    for label, price in (("sale_price", sale), ("promo_price", promo)):
        if price is not None and price > list_:
            raise InvalidData(f"{sku}: {label} {price} is above list_price {list_}")
    for label, moment in (("promo_start", promo_start), ("promo_end", promo_end)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidData(f"{sku}: {label} must carry a timezone")
    if promo_start and promo_end and promo_start >= promo_end:
        raise InvalidData(f"{sku}: promo_start {promo_start} is not before promo_end {promo_end}")
    if (promo_start or promo_end) and promo is None:
        raise InvalidData(f"{sku}: promotion dates given without promo_price")
    values = (
        money_text(list_),
        None if sale is None else money_text(sale),
        None if cost is None else money_text(cost),
        None if promo is None else money_text(promo),
        stamp(promo_start),
        stamp(promo_end),
    )
    async with transaction(conn):
        product_id = await id_for_sku(conn, sku)
        cursor = await conn.execute(
            "INSERT INTO prices (product_id, list_price, sale_price, cost_price, promo_price, "
            "promo_start, promo_end) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (product_id) DO UPDATE SET list_price = excluded.list_price, "
            "sale_price = excluded.sale_price, cost_price = excluded.cost_price, "
            "promo_price = excluded.promo_price, promo_start = excluded.promo_start, "
            "promo_end = excluded.promo_end, "
            "updated_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now') "
            "WHERE list_price IS NOT excluded.list_price OR sale_price IS NOT excluded.sale_price "
            "OR cost_price IS NOT excluded.cost_price OR promo_price IS NOT excluded.promo_price "
            "OR promo_start IS NOT excluded.promo_start OR promo_end IS NOT excluded.promo_end",
            (product_id, *values),
        )
    return cursor.rowcount > 0


async def get_prices(conn: aiosqlite.Connection, product_ids: Iterable[int]) -> dict[int, PriceRow]:
    rows = await conn.execute_fetchall(
        f"SELECT * FROM prices WHERE product_id IN {IN_JSON}", (json_list(product_ids),)
    )
    result: dict[int, PriceRow] = {}
    for r in rows:
        list_price = parse_decimal(r["list_price"])
        if list_price is None:
            continue  # written by hand and unreadable: effective_prices reports it
        result[int(r["product_id"])] = PriceRow(
            product_id=int(r["product_id"]),
            list_price=list_price,
            sale_price=parse_decimal(r["sale_price"]),
            cost_price=parse_decimal(r["cost_price"]),
            promo_price=parse_decimal(r["promo_price"]),
            promo_start=parse_stamp(r["promo_start"]),
            promo_end=parse_stamp(r["promo_end"]),
        )
    return result


async def effective_prices(
    conn: aiosqlite.Connection, product_ids: Iterable[int], adjust_percent: Decimal, now: datetime
) -> dict[int, PriceFigure]:
    """The prices a channel with ``adjust_percent`` should show at ``now``; products without a
    (readable) price are absent. One query for the batch."""
    percent = Decimal(adjust_percent)
    rows = await get_prices(conn, product_ids)
    return {pid: _figure(row, percent, now) for pid, row in rows.items()}


def promo_in_force(row: PriceRow, now: datetime) -> bool:
    if row.promo_price is None:
        return False
    started = row.promo_start is None or row.promo_start <= now
    not_ended = row.promo_end is None or now < row.promo_end
    return started and not_ended


def _figure(row: PriceRow, percent: Decimal, now: datetime) -> PriceFigure:
    list_adjusted = adjust(row.list_price, percent)
    steps: dict[str, Any] = {
        "list_price": money_text(row.list_price),
        "adjust_percent": format(percent, "f"),
        "rounding": "half-up to cents",
        "list_price_adjusted": money_text(list_adjusted),
        "now": utc_iso(now),
    }
    promo_start = promo_end = None
    sale: Decimal | None = None
    if row.promo_price is not None:
        in_force = promo_in_force(row, now)
        steps["promotion"] = {
            "promo_price": money_text(row.promo_price),
            "start": None if row.promo_start is None else utc_iso(row.promo_start),
            "end": None if row.promo_end is None else utc_iso(row.promo_end),
            "in_force": in_force,
        }
        if in_force:
            sale = row.promo_price
            promo_start, promo_end = row.promo_start, row.promo_end
            steps["sale_source"] = "scheduled promotion"
    if sale is None and row.sale_price is not None:
        sale = row.sale_price
        steps["sale_source"] = "standing sale_price"
    sale_adjusted: Decimal | None = None
    if sale is None:
        steps["sale_source"] = None
    else:
        sale_adjusted = adjust(sale, percent)
        steps["sale_price"] = money_text(sale)
        steps["sale_price_adjusted"] = money_text(sale_adjusted)
        if sale_adjusted >= list_adjusted:
            steps["sale_dropped"] = "not below the list price, so no promotion is sent"
            sale_adjusted = None
            promo_start = promo_end = None
    steps["result"] = {
        "list_price": money_text(list_adjusted),
        "sale_price": None if sale_adjusted is None else money_text(sale_adjusted),
    }
    return PriceFigure(
        product_id=row.product_id,
        list_price=list_adjusted,
        sale_price=sale_adjusted,
        cost_price=row.cost_price,
        promo_start=promo_start,
        promo_end=promo_end,
        explanation=steps,
    )


async def _promo_rows(conn: aiosqlite.Connection) -> list[tuple[int, datetime | None, datetime | None]]:
    rows = await conn.execute_fetchall(
        "SELECT product_id, promo_start, promo_end FROM prices WHERE promo_price IS NOT NULL "
        "AND (promo_start IS NOT NULL OR promo_end IS NOT NULL)"
    )
    return [(int(r["product_id"]), parse_stamp(r["promo_start"]), parse_stamp(r["promo_end"])) for r in rows]


async def next_price_boundary(conn: aiosqlite.Connection, now: datetime) -> datetime | None:
    """The next promotion start or end after ``now`` (times are parsed, not compared as text, since
    the ERP may write them by hand in another ISO form)."""
    upcoming = [
        moment
        for _, start, end in await _promo_rows(conn)
        for moment in (start, end)
        if moment is not None and moment > now
    ]
    return min(upcoming, default=None)


async def products_crossing(conn: aiosqlite.Connection, after: datetime, until: datetime) -> list[int]:
    """Products whose promotion started or ended in ``(after, until]``: queue their price push."""
    return sorted(
        {
            pid
            for pid, start, end in await _promo_rows(conn)
            if any(m is not None and after < m <= until for m in (start, end))
        }
    )
