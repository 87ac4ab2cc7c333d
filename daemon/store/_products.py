"""Product lookups shared by the repositories (kept apart so catalog can import stock and prices)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import aiosqlite

from daemon.store._sql import IN_JSON, json_list, parse_decimal, parse_stamp
from daemon.store.errors import NotFoundError

PRODUCT_COLUMNS = (
    "id, sku, ean, code, name, description, weight_kg, active, is_kit, manage_stock, "
    "sync_enabled, created_at, updated_at"
)


@dataclass(frozen=True)
class Product:
    id: int
    sku: str
    ean: str | None
    code: str | None
    name: str
    description: str
    weight_kg: Decimal | None
    active: bool
    is_kit: bool
    manage_stock: bool
    sync_enabled: bool
    created_at: datetime | None
    updated_at: datetime | None


class ProductRef(NamedTuple):
    """The few columns the stock and price pushes read, for thousands of products a second."""

    id: int
    sku: str
    manage_stock: bool
    sync_enabled: bool


def product_from_row(r: aiosqlite.Row) -> Product:
    return Product(
        id=int(r["id"]),
        sku=r["sku"],
        ean=r["ean"],
        code=r["code"],
        name=r["name"],
        description=r["description"] or "",
        weight_kg=parse_decimal(r["weight_kg"]),
        active=bool(r["active"]),
        is_kit=bool(r["is_kit"]),
        manage_stock=bool(r["manage_stock"]),
        sync_enabled=bool(r["sync_enabled"]),
        created_at=parse_stamp(r["created_at"]),
        updated_at=parse_stamp(r["updated_at"]),
    )


async def ids_by_sku(conn: aiosqlite.Connection, skus: Iterable[str]) -> dict[str, int]:
    rows = await conn.execute_fetchall(
        f"SELECT id, sku FROM products WHERE sku IN {IN_JSON}", (json_list(skus),)
    )
    return {str(r["sku"]): int(r["id"]) for r in rows}


async def id_for_sku(conn: aiosqlite.Connection, sku: str) -> int:
    found = await ids_by_sku(conn, [sku])
    if sku not in found:
        raise NotFoundError(f"no product with SKU {sku!r}")
    return found[sku]
