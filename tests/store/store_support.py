"""Helpers shared by the store tests (data builders and outbox peeks)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import aiosqlite

from channels.models import RemoteCustomer, RemoteOrder, RemoteOrderItem
from daemon.store import catalog, stock

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
VALID_CPF = "529.982.247-25"
VALID_CNPJ = "11.222.333/0001-81"


async def product(
    conn: aiosqlite.Connection,
    sku: str,
    on_hand: int | None = None,
    *,
    ean: str | None = None,
    code: str | None = None,
    sync_enabled: bool = True,
    manage_stock: bool = True,
) -> int:
    result = await catalog.upsert_product(
        conn,
        sku,
        f"Produto {sku}",
        ean=ean,
        code=code,
        sync_enabled=sync_enabled,
        manage_stock=manage_stock,
    )
    if on_hand is not None:
        await stock.set_stock(conn, sku, "MAIN", on_hand)
    return result.product_id


async def outbox_rows(conn: aiosqlite.Connection, entity: str, entity_id: int) -> dict[str, tuple[str, int]]:
    """``{channel: (state, version)}`` for one entity."""
    rows = await conn.execute_fetchall(
        "SELECT channel, state, version FROM outbox WHERE entity = ? AND entity_id = ?", (entity, entity_id)
    )
    return {r["channel"]: (r["state"], int(r["version"])) for r in rows}


def remote_order(
    remote_id: str = "1001",
    *,
    status: str = "pedido_pago",
    items: tuple[tuple[str, int], ...] = (("A1", 2),),
    document: str | None = VALID_CPF,
    paid: bool = True,
    email: str | None = "maria@example.com",
) -> RemoteOrder:
    return RemoteOrder(
        remote_id=remote_id,
        number=remote_id,
        status=status,
        paid=paid,
        created_at=NOW,
        updated_at=NOW,
        customer=RemoteCustomer(name="Maria Silva", email=email, document=document),
        items=tuple(
            RemoteOrderItem(
                sku=sku, name=f"Produto {sku}", quantity=Decimal(qty), unit_price=Decimal("10.00")
            )
            for sku, qty in items
        ),
        total=Decimal("20.00"),
        raw={"id": remote_id},
    )


def nfe_key(prefix43: str = "3526110000000000000155001000000123100000001") -> str:
    """A 44-digit access key with a correct mod-11 check digit."""
    assert len(prefix43) == 43
    total, weight = 0, 2
    for char in reversed(prefix43):
        total += int(char) * weight
        weight = 2 if weight == 9 else weight + 1
    check = 11 - total % 11
    return prefix43 + str(0 if check >= 10 else check)


def ean13(prefix12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(prefix12))
    return prefix12 + str((10 - total % 10) % 10)
