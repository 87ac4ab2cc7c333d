"""Orders: idempotent import from channels, the stock they reserve/debit/release, invoices, tracking.

Stock rules (the same whether the status came from a channel or from the ERP):

* an open order reserves its items (``stock_state='reserved'``): available-to-promise drops on
  every channel at once;
* ``cancelled`` releases the reservation (a debited order stays debited: a return is a movement
  someone makes on purpose);
* ``invoiced`` / ``shipped`` / ``delivered`` debits the sale warehouse exactly once, with
  ``sale`` movements referenced ``order:<id>`` (kits debit their components).

Echo guard: ``orders.remote_status`` is the status the channel is known to have. An import changes
the local status only when the channel's status moved; our own pushed status coming back changes
nothing, and an imported change is never queued to be pushed back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

import aiosqlite

from channels.models import RemoteOrder, RemoteOrderItem, RemoteShipment
from daemon.clock import utc_iso
from daemon.store import bindings as bindings_repo
from daemon.store import catalog
from daemon.store import mappings as mappings_repo
from daemon.store import stock as stock_repo
from daemon.store._documents import is_valid_nfe_key
from daemon.store._sql import IN_JSON, NOW_SQL, decimal_text, dumps, json_list, parse_stamp, stamp
from daemon.store.customers import find_or_create_customer
from daemon.store.db import transaction
from daemon.store.errors import (
    AmbiguousProduct,
    InvalidData,
    NotFoundError,
    OrderImportError,
    UnknownProduct,
    UnknownWarehouse,
)

CANCELLED_STATUSES: frozenset[str] = frozenset({"cancelled"})
DEBIT_STATUSES: frozenset[str] = frozenset({"invoiced", "shipped", "delivered"})

StockState = Literal["reserved", "debited", "released"]


@dataclass(frozen=True)
class ImportOutcome:
    result: Literal["created", "updated", "unchanged"]
    order_id: int
    changes: tuple[str, ...] = ()
    """Which fields moved on a re-import (status, remote_status, paid, shipments)."""
    stock: StockState | None = None
    """The stock transition this import caused, if any."""
    created_products: tuple[str, ...] = ()
    """SKUs created because ``create_missing_products`` was on."""


# --- import ----------------------------------------------------------------------------------------


async def import_order(
    conn: aiosqlite.Connection,
    channel: str,
    order: RemoteOrder,
    *,
    local_status: str,
    sale_warehouse: str,
    link_by: catalog.LinkKey = "sku",
    create_missing_products: bool = False,
    mappings: mappings_repo.MappingTable | None = None,
    now: datetime,
) -> ImportOutcome:
    """Create or update the order ``(channel, order.remote_id)``; safe to call again with the same data.

    ``local_status`` is ``order.status`` already mapped through the channel's de-para.
    ``mappings`` (the channel's table, loaded once per page) maps carrier and payment codes; unmapped
    codes are stored as the channel sent them. Runs in a savepoint: raising OrderImportError (or
    any error) undoes this order only, so the caller can park it and carry on with its page.
    """
    table = mappings or await mappings_repo.load_table(conn, channel)
    async with transaction(conn):
        rows = list(
            await conn.execute_fetchall(
                "SELECT id, status, remote_status, paid, stock_state, sale_warehouse FROM orders "
                "WHERE channel = ? AND remote_id = ?",
                (channel, order.remote_id),
            )
        )
        if rows:
            return await _reimport(conn, rows[0], order, local_status, table, now)
        return await _create(
            conn, channel, order, local_status, sale_warehouse, link_by, create_missing_products, table, now
        )


async def _create(
    conn: aiosqlite.Connection,
    channel: str,
    order: RemoteOrder,
    local_status: str,
    sale_warehouse: str,
    link_by: catalog.LinkKey,
    create_missing: bool,
    table: mappings_repo.MappingTable,
    now: datetime,
) -> ImportOutcome:
    label = f"order {order.number!r} ({channel})"
    if not order.items:
        raise OrderImportError(f"{label} has no items")
    quantities = [_quantity(label, item) for item in order.items]
    product_ids, created = await _resolve_items(conn, channel, label, order.items, link_by, create_missing)
    customer_id = await find_or_create_customer(conn, order.customer)
    payment = order.payments[0].method if order.payments else None
    carrier = next((s.carrier for s in order.shipments if s.carrier), None)
    initial_state: StockState = "released" if local_status in CANCELLED_STATUSES else "reserved"
    rows = list(
        await conn.execute_fetchall(
            "INSERT INTO orders (channel, remote_id, number, status, remote_status, paid, customer_id, "
            "carrier, payment_method, total, shipping_cost, discount, stock_state, note, "
            "shipping_address, raw, remote_created_at, remote_updated_at, imported_at, updated_at, "
            "sale_warehouse) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING id",
            (
                channel,
                order.remote_id,
                order.number,
                local_status,
                order.status,
                int(order.paid),
                customer_id,
                None if carrier is None else (table.to_local("carrier", carrier) or carrier),
                None if payment is None else (table.to_local("payment", payment) or payment),
                decimal_text(order.total),
                decimal_text(order.shipping_cost),
                decimal_text(order.discount),
                initial_state,
                f"{channel} #{order.number}",
                None
                if order.shipping_address is None
                else dumps(order.shipping_address.model_dump(mode="json")),
                dumps(order.raw),
                utc_iso(order.created_at),
                utc_iso(order.updated_at),
                utc_iso(now),
                utc_iso(now),
                sale_warehouse,
            ),
        )
    )
    order_id = int(rows[0]["id"])
    await conn.executemany(
        "INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                order_id,
                pid,
                item.sku or item.ean or item.remote_product_id or "",
                item.name,
                qty,
                decimal_text(item.unit_price),
            )
            for item, pid, qty in zip(order.items, product_ids, quantities, strict=True)
        ],
    )
    await _merge_shipments(conn, order_id, order.shipments, table, now)
    transition = await _apply_stock_rule(
        conn, order_id, local_status, initial_state, sale_warehouse, label=label, now=now
    )
    return ImportOutcome(
        "created",
        order_id,
        stock=transition or initial_state,
        created_products=tuple(created),
    )


async def _reimport(
    conn: aiosqlite.Connection,
    row: aiosqlite.Row,
    order: RemoteOrder,
    local_status: str,
    table: mappings_repo.MappingTable,
    now: datetime,
) -> ImportOutcome:
    order_id = int(row["id"])
    sets: dict[str, object] = {}
    status = str(row["status"])
    if order.status != row["remote_status"]:
        sets["remote_status"] = order.status
        if local_status != status:
            sets["status"] = local_status
            status = local_status
    if order.paid != bool(row["paid"]):
        sets["paid"] = int(order.paid)
    shipments_changed = await _merge_shipments(conn, order_id, order.shipments, table, now)
    changes = tuple(sets) + (("shipments",) if shipments_changed else ())
    if not changes:
        return ImportOutcome("unchanged", order_id)
    if sets:
        sets.update(
            raw=dumps(order.raw), remote_updated_at=utc_iso(order.updated_at), updated_at=utc_iso(now)
        )
        await conn.execute(
            f"UPDATE orders SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
            (*sets.values(), order_id),
        )
    transition = None
    if "status" in sets:
        transition = await _apply_stock_rule(
            conn,
            order_id,
            status,
            row["stock_state"],
            row["sale_warehouse"],
            label=f"order {order.number!r}",
            now=now,
        )
    return ImportOutcome("updated", order_id, changes, stock=transition)


def _quantity(label: str, item: RemoteOrderItem) -> int:
    if item.quantity <= 0 or item.quantity != item.quantity.to_integral_value():
        raise OrderImportError(
            f"{label}: item {item.sku or item.name!r} has quantity {item.quantity}; "
            "only whole positive quantities can be reserved"
        )
    return int(item.quantity)


def _link_value(item: RemoteOrderItem, link_by: catalog.LinkKey) -> str | None:
    """The channel's field matched against ours: SKU and code both come from the item's SKU."""
    value = item.ean if link_by == "ean" else item.sku
    return (value or "").strip() or None


async def _resolve_items(
    conn: aiosqlite.Connection,
    channel: str,
    label: str,
    items: Sequence[RemoteOrderItem],
    link_by: catalog.LinkKey,
    create_missing: bool,
) -> tuple[list[int], list[str]]:
    """Local product per item: the channel binding, else ``link_by``, else (optionally) a new product."""
    bound = await bindings_repo.local_ids(
        conn, channel, "product", [i.remote_product_id for i in items if i.remote_product_id]
    )
    try:
        linked = await catalog.find_products(
            conn, link_by, [v for i in items if (v := _link_value(i, link_by))]
        )
    except AmbiguousProduct as exc:
        raise OrderImportError(f"{label}: {exc}") from exc
    result: list[int] = []
    created: list[str] = []
    made: dict[str, int] = {}  # the same unknown SKU twice in one order creates one product
    for item in items:
        pid = bound.get(item.remote_product_id or "")
        value = _link_value(item, link_by)
        if pid is None and value is not None and value in linked:
            pid = linked[value].id
        if pid is None:
            if not create_missing:
                raise UnknownProduct(
                    f"{label}: item SKU {item.sku!r} ({item.name!r}) matches no product by {link_by}"
                    + (f" {value!r}" if value and link_by != "sku" else "")
                    + "; create or link the product, or turn on create_missing_products"
                )
            pid = made.get(value or "")
            if pid is None:
                pid = await _create_product(conn, channel, label, item, link_by)
                created.append(item.sku or item.ean or "")
                if value is not None:
                    made[value] = pid
        result.append(pid)
    return result, created


async def _create_product(
    conn: aiosqlite.Connection, channel: str, label: str, item: RemoteOrderItem, link_by: catalog.LinkKey
) -> int:
    """A product the ERP did not know, created from the order item. It is kept off the channels
    (sync_enabled = 0) until someone gives it a price and turns it on."""
    sku = (item.sku or (item.ean if link_by == "ean" else None) or "").strip()
    if not sku:
        raise UnknownProduct(f"{label}: item {item.name!r} has no SKU to create a product from")
    if await catalog.get_product_by_sku(conn, sku) is not None:
        raise UnknownProduct(
            f"{label}: item SKU {sku!r} is not linked by {link_by}, and a product with that SKU "
            f"already exists with a different {link_by}; fix the product's {link_by}"
        )
    ean = (item.ean or "").strip() or None
    if ean is not None:
        try:
            ean = catalog.check_gtin(ean)
        except InvalidData:
            ean = None  # a channel's bad EAN must not stop the order; the product can be fixed later
    rows = list(
        await conn.execute_fetchall(
            "INSERT INTO products (sku, ean, code, name, sync_enabled) VALUES (?, ?, ?, ?, 0) RETURNING id",
            (sku, ean, sku if link_by == "code" else None, item.name.strip() or sku),
        )
    )
    pid = int(rows[0]["id"])
    if item.remote_product_id:
        await conn.execute(
            "INSERT OR IGNORE INTO bindings (channel, entity, local_id, remote_id) "
            "VALUES (?, 'product', ?, ?)",
            (channel, pid, item.remote_product_id),
        )
    return pid


async def _merge_shipments(
    conn: aiosqlite.Connection,
    order_id: int,
    remote: Sequence[RemoteShipment],
    table: mappings_repo.MappingTable,
    now: datetime,
) -> bool:
    """Shipments the channel reports, matched by remote id (or, without one, by tracking code);
    their tracking codes are marked as already on the channel, so they are never pushed back."""
    if not remote:
        return False
    rows = list(
        await conn.execute_fetchall(
            "SELECT id, remote_id, tracking_code, remote_tracking_code FROM shipments "
            "WHERE order_id = ? ORDER BY id",
            (order_id,),
        )
    )
    by_remote = {str(r["remote_id"]): r for r in rows if r["remote_id"] is not None}
    by_code = {str(code): r for r in rows for code in (r["tracking_code"], r["remote_tracking_code"]) if code}
    changed = False
    for shipment in remote:
        carrier = (
            None
            if shipment.carrier is None
            else (table.to_local("carrier", shipment.carrier) or shipment.carrier)
        )
        if shipment.remote_id:
            existing = by_remote.get(shipment.remote_id)
        else:
            existing = by_code.get(shipment.tracking_code or "")
        if existing is None:
            if shipment.remote_id is None and not shipment.tracking_code:
                continue
            await conn.execute(
                "INSERT INTO shipments (order_id, remote_id, carrier, tracking_code, remote_tracking_code, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    order_id,
                    shipment.remote_id,
                    carrier,
                    shipment.tracking_code,
                    shipment.tracking_code,
                    utc_iso(now),
                    utc_iso(now),
                ),
            )
            changed = True
        elif shipment.tracking_code and shipment.tracking_code != existing["remote_tracking_code"]:
            await conn.execute(
                "UPDATE shipments SET remote_tracking_code = ?, "
                "tracking_code = CASE WHEN tracking_code IS NULL OR tracking_code = remote_tracking_code "
                "THEN ? ELSE tracking_code END, updated_at = ? WHERE id = ?",
                (shipment.tracking_code, shipment.tracking_code, utc_iso(now), existing["id"]),
            )
            changed = True
    return changed


# --- stock rules -----------------------------------------------------------------------------------


def target_stock_state(status: str, current: str) -> StockState | None:
    """Where stock_state should go for ``status``, or None to stay."""
    if status in DEBIT_STATUSES:
        return "debited" if current != "debited" else None
    if status in CANCELLED_STATUSES:
        return "released" if current == "reserved" else None
    return "reserved" if current == "released" else None


async def _apply_stock_rule(
    conn: aiosqlite.Connection,
    order_id: int,
    status: str,
    current: str,
    warehouse: str | None,
    *,
    label: str,
    now: datetime | None,
) -> StockState | None:
    target = target_stock_state(status, current)
    if target is None:
        return None
    if target != "debited":
        await conn.execute(
            "UPDATE orders SET stock_state = ? WHERE id = ? AND stock_state = ?", (target, order_id, current)
        )
        return target
    if not warehouse:
        raise OrderImportError(f"{label}: no sale warehouse to debit the sale from")
    try:
        warehouse_id = (await stock_repo.warehouse_ids(conn, [warehouse]))[warehouse]
    except UnknownWarehouse as exc:
        raise OrderImportError(f"{label}: sale warehouse: {exc}") from exc
    cursor = await conn.execute(
        "UPDATE orders SET stock_state = 'debited' WHERE id = ? AND stock_state <> 'debited'", (order_id,)
    )
    if cursor.rowcount == 0:
        return None  # someone else debited it: exactly once
    rows = await conn.execute_fetchall(
        "SELECT COALESCE(kc.component_id, oi.product_id) AS product_id, "
        "SUM(oi.quantity * COALESCE(kc.quantity, 1)) AS quantity "
        "FROM order_items oi JOIN products p ON p.id = oi.product_id "
        "LEFT JOIN kit_components kc ON kc.kit_id = oi.product_id "
        "JOIN products sp ON sp.id = COALESCE(kc.component_id, oi.product_id) "
        "WHERE oi.order_id = ? AND sp.manage_stock "
        "AND NOT (p.is_kit AND kc.component_id IS NULL) "
        "GROUP BY 1 ORDER BY 1",
        (order_id,),
    )
    await stock_repo.insert_movements(
        conn,
        [
            (int(r["product_id"]), warehouse_id, -int(r["quantity"]), "sale", f"order:{order_id}")
            for r in rows
        ],
        now=now,
    )
    return "debited"


async def set_local_status(
    conn: aiosqlite.Connection,
    order_id: int,
    status: str,
    *,
    sale_warehouse: str | None = None,
    now: datetime | None = None,
) -> bool:
    """The ERP changes an order's status: queued to be pushed, and the stock rules applied.

    ``sale_warehouse`` overrides the one recorded at import. True when the status changed.
    """
    async with transaction(conn):
        rows = list(
            await conn.execute_fetchall(
                "SELECT number, status, stock_state, sale_warehouse FROM orders WHERE id = ?", (order_id,)
            )
        )
        if not rows:
            raise NotFoundError(f"no order with id {order_id}")
        row = rows[0]
        if row["status"] == status:
            return False
        warehouse = sale_warehouse or row["sale_warehouse"]
        await conn.execute(
            f"UPDATE orders SET status = ?, updated_at = COALESCE(?, {NOW_SQL}) WHERE id = ?",
            (status, stamp(now), order_id),
        )
        try:
            await _apply_stock_rule(
                conn,
                order_id,
                status,
                row["stock_state"],
                warehouse,
                label=f"order {row['number']!r}",
                now=now,
            )
        except OrderImportError as exc:
            raise InvalidData(str(exc)) from exc
    return True


async def reconcile_stock_states(
    conn: aiosqlite.Connection, *, default_warehouse: str | None = None, now: datetime | None = None
) -> list[int]:
    """Apply the stock rules to orders whose status was changed by plain SQL; returns their ids.

    Orders that cannot be debited (no warehouse) are left as they are and reported by the next run.
    """
    debit = json_list(sorted(DEBIT_STATUSES))
    cancel = json_list(sorted(CANCELLED_STATUSES))
    rows = await conn.execute_fetchall(
        "SELECT id, number, status, stock_state, sale_warehouse FROM orders WHERE "
        f"(status IN {IN_JSON} AND stock_state <> 'debited') "
        f"OR (status IN {IN_JSON} AND stock_state = 'reserved') "
        f"OR (status NOT IN {IN_JSON} AND status NOT IN {IN_JSON} AND stock_state = 'released') "
        "ORDER BY id",
        (debit, cancel, debit, cancel),
    )
    fixed: list[int] = []
    for r in rows:
        try:
            async with transaction(conn):
                done = await _apply_stock_rule(
                    conn,
                    int(r["id"]),
                    r["status"],
                    r["stock_state"],
                    r["sale_warehouse"] or default_warehouse,
                    label=f"order {r['number']!r}",
                    now=now,
                )
        except OrderImportError:
            continue
        if done:
            fixed.append(int(r["id"]))
    return fixed


# --- invoices and tracking -------------------------------------------------------------------------


async def resolve_order_id(conn: aiosqlite.Connection, order: int | tuple[str, str]) -> int:
    """The order's id, by id or by ``(channel, order number or remote id)``; NotFoundError if none."""
    if isinstance(order, int):
        rows = list(await conn.execute_fetchall("SELECT id FROM orders WHERE id = ?", (order,)))
        if not rows:
            raise NotFoundError(f"no order with id {order}")
        return int(rows[0]["id"])
    channel, number = order
    rows = list(
        await conn.execute_fetchall(
            "SELECT id FROM orders WHERE channel = ? AND (number = ? OR remote_id = ?) "
            "ORDER BY number = ? DESC, id LIMIT 2",
            (channel, number, number, number),
        )
    )
    if not rows:
        raise NotFoundError(f"no order {number!r} on channel {channel!r}")
    return int(rows[0]["id"])


def normalise_access_key(access_key: str) -> str:
    """44 digits (spaces allowed in the input) with a valid mod-11 check digit."""
    key = "".join(access_key.split())
    if len(key) != 44 or not key.isdigit():
        raise InvalidData(f"NF-e access key must be 44 digits, got {len(key)} characters")
    if not is_valid_nfe_key(key):
        raise InvalidData(f"NF-e access key ...{key[-6:]} has a wrong check digit")
    return key


async def add_invoice(
    conn: aiosqlite.Connection,
    order: int | tuple[str, str],
    number: str,
    series: str,
    access_key: str,
    issued_at: datetime,
    *,
    danfe_url: str | None = None,
    xml_url: str | None = None,
    xml: str | None = None,
) -> int:
    """Attach an NF-e to an order (by id or by ``(channel, order number)``); queues its push.

    Adding the same access key to the same order again returns the existing invoice.
    """
    key = normalise_access_key(access_key)
    async with transaction(conn):
        order_id = await resolve_order_id(conn, order)
        rows = list(
            await conn.execute_fetchall("SELECT id, order_id FROM invoices WHERE access_key = ?", (key,))
        )
        if rows:
            if int(rows[0]["order_id"]) != order_id:
                raise InvalidData(f"NF-e ...{key[-6:]} is already attached to order id {rows[0]['order_id']}")
            return int(rows[0]["id"])
        rows = list(
            await conn.execute_fetchall(
                "INSERT INTO invoices (order_id, number, series, access_key, issued_at, danfe_url, "
                "xml_url, xml) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (order_id, number, series, key, utc_iso(issued_at), danfe_url, xml_url, xml),
            )
        )
    return int(rows[0]["id"])


async def add_tracking(
    conn: aiosqlite.Connection,
    order_id: int,
    carrier: str | None,
    code: str,
    url: str | None = None,
    shipment_remote_id: str | None = None,
) -> int:
    """Record a tracking code (queues its push). Fills the channel's shipment when there is one
    (by remote id, or the only shipment without a code); the same code again changes nothing."""
    code = code.strip()
    if not code:
        raise InvalidData(f"order {order_id}: tracking code must not be empty")
    async with transaction(conn):
        await resolve_order_id(conn, order_id)
        rows = list(
            await conn.execute_fetchall(
                "SELECT id, remote_id, tracking_code FROM shipments WHERE order_id = ? ORDER BY id",
                (order_id,),
            )
        )
        target = None
        if shipment_remote_id is not None:
            target = next((r for r in rows if r["remote_id"] == shipment_remote_id), None)
        if target is None:
            target = next((r for r in rows if r["tracking_code"] == code), None)
        if target is None:
            empty = [r for r in rows if r["tracking_code"] is None]
            target = empty[0] if len(empty) == 1 else None
        if target is None:
            found = list(
                await conn.execute_fetchall(
                    "INSERT INTO shipments (order_id, remote_id, carrier, tracking_code, tracking_url) "
                    "VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (order_id, shipment_remote_id, carrier, code, url),
                )
            )
            return int(found[0]["id"])
        await conn.execute(
            "UPDATE shipments SET tracking_code = ?, carrier = COALESCE(?, carrier), "
            "tracking_url = COALESCE(?, tracking_url), remote_id = COALESCE(remote_id, ?), "
            "updated_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now') "
            "WHERE id = ? AND (tracking_code IS NOT ? OR carrier IS NOT COALESCE(?, carrier) "
            "OR tracking_url IS NOT COALESCE(?, tracking_url) OR remote_id IS NOT COALESCE(remote_id, ?))",
            (code, carrier, url, shipment_remote_id, target["id"], code, carrier, url, shipment_remote_id),
        )
        return int(target["id"])


# --- order updates (push) --------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceRecord:
    id: int
    number: str
    series: str
    access_key: str
    issued_at: datetime | None
    danfe_url: str | None
    xml_url: str | None
    pushed_at: datetime | None


@dataclass(frozen=True)
class ShipmentRecord:
    id: int
    remote_id: str | None
    carrier: str | None
    tracking_code: str | None
    tracking_url: str | None
    status: str
    remote_tracking_code: str | None
    """The code the channel already has (came from it, or we pushed it)."""


@dataclass(frozen=True)
class OrderUpdateData:
    """What the order_updates flow needs for one order, and what the channel already has."""

    order_id: int
    channel: str
    remote_id: str
    number: str
    status: str
    remote_status: str
    paid: bool
    invoices: tuple[InvoiceRecord, ...] = ()
    shipments: tuple[ShipmentRecord, ...] = ()

    def status_to_push(self, table: mappings_repo.MappingTable) -> str | None:
        """The channel status code to set, or None (already there, or no mapping for it)."""
        wanted = table.to_remote("status", self.status)
        return wanted if wanted is not None and wanted != self.remote_status else None

    @property
    def invoice_to_push(self) -> InvoiceRecord | None:
        """The newest invoice not yet accepted by the channel."""
        pending = [i for i in self.invoices if i.pushed_at is None]
        return pending[-1] if pending else None

    @property
    def tracking_to_push(self) -> tuple[ShipmentRecord, ...]:
        return tuple(
            s for s in self.shipments if s.tracking_code and s.tracking_code != s.remote_tracking_code
        )

    def nothing_to_push(self, table: mappings_repo.MappingTable) -> bool:
        return (
            self.status_to_push(table) is None and self.invoice_to_push is None and not self.tracking_to_push
        )


@dataclass(frozen=True)
class UpdatePushed:
    """What the channel accepted for one order: recorded so nothing is pushed (or imported) twice."""

    order_id: int
    remote_status: str | None = None
    invoice_id: int | None = None
    tracking: Sequence[tuple[int, str]] = field(default_factory=tuple)
    """``(shipment_id, tracking_code)`` pairs as pushed."""


async def order_update_payloads(
    conn: aiosqlite.Connection, order_ids: Iterable[int]
) -> dict[int, OrderUpdateData]:
    """Batch form: three queries for any number of orders; missing orders are absent."""
    ids = json_list(sorted({int(i) for i in order_ids}))
    orders = await conn.execute_fetchall(
        "SELECT id, channel, remote_id, number, status, remote_status, paid FROM orders "
        f"WHERE id IN {IN_JSON}",
        (ids,),
    )
    invoices: dict[int, list[InvoiceRecord]] = {}
    for r in await conn.execute_fetchall(
        f"SELECT * FROM invoices WHERE order_id IN {IN_JSON} ORDER BY id", (ids,)
    ):
        invoices.setdefault(int(r["order_id"]), []).append(
            InvoiceRecord(
                int(r["id"]),
                r["number"],
                r["series"],
                r["access_key"],
                parse_stamp(r["issued_at"]),
                r["danfe_url"],
                r["xml_url"],
                parse_stamp(r["pushed_at"]),
            )
        )
    shipments: dict[int, list[ShipmentRecord]] = {}
    for r in await conn.execute_fetchall(
        f"SELECT * FROM shipments WHERE order_id IN {IN_JSON} ORDER BY id", (ids,)
    ):
        shipments.setdefault(int(r["order_id"]), []).append(
            ShipmentRecord(
                int(r["id"]),
                r["remote_id"],
                r["carrier"],
                r["tracking_code"],
                r["tracking_url"],
                r["status"],
                r["remote_tracking_code"],
            )
        )
    return {
        int(r["id"]): OrderUpdateData(
            order_id=int(r["id"]),
            channel=r["channel"],
            remote_id=r["remote_id"],
            number=r["number"],
            status=r["status"],
            remote_status=r["remote_status"],
            paid=bool(r["paid"]),
            invoices=tuple(invoices.get(int(r["id"]), ())),
            shipments=tuple(shipments.get(int(r["id"]), ())),
        )
        for r in orders
    }


async def order_update_payload(conn: aiosqlite.Connection, order_id: int) -> OrderUpdateData | None:
    return (await order_update_payloads(conn, [order_id])).get(order_id)


async def mark_updates_pushed(
    conn: aiosqlite.Connection, pushed: Sequence[UpdatePushed], now: datetime
) -> None:
    """Record what the channel now has. Setting remote_status does not queue anything; a tracking
    code changed meanwhile is not marked (it still differs, so it goes out next time)."""
    statuses = [(p.remote_status, p.order_id) for p in pushed if p.remote_status is not None]
    invoices = [(utc_iso(now), p.invoice_id) for p in pushed if p.invoice_id is not None]
    tracking = [(code, sid, code) for p in pushed for sid, code in p.tracking]
    async with transaction(conn):
        if statuses:
            await conn.executemany("UPDATE orders SET remote_status = ? WHERE id = ?", statuses)
        if invoices:
            await conn.executemany(
                "UPDATE invoices SET pushed_at = ? WHERE id = ? AND pushed_at IS NULL", invoices
            )
        if tracking:
            await conn.executemany(
                "UPDATE shipments SET remote_tracking_code = ? WHERE id = ? AND tracking_code = ?",
                tracking,
            )


# --- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderItemRecord:
    product_id: int
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class OrderRecord:
    id: int
    channel: str
    remote_id: str
    number: str
    status: str
    remote_status: str
    paid: bool
    customer_id: int | None
    carrier: str | None
    payment_method: str | None
    total: Decimal
    stock_state: str
    sale_warehouse: str | None
    items: tuple[OrderItemRecord, ...]


async def get_order(conn: aiosqlite.Connection, order_id: int) -> OrderRecord | None:
    rows = list(await conn.execute_fetchall("SELECT * FROM orders WHERE id = ?", (order_id,)))
    if not rows:
        return None
    r = rows[0]
    items = await conn.execute_fetchall(
        "SELECT product_id, sku, name, quantity, unit_price FROM order_items WHERE order_id = ? ORDER BY id",
        (order_id,),
    )
    return OrderRecord(
        id=int(r["id"]),
        channel=r["channel"],
        remote_id=r["remote_id"],
        number=r["number"],
        status=r["status"],
        remote_status=r["remote_status"],
        paid=bool(r["paid"]),
        customer_id=r["customer_id"],
        carrier=r["carrier"],
        payment_method=r["payment_method"],
        total=Decimal(r["total"]),
        stock_state=r["stock_state"],
        sale_warehouse=r["sale_warehouse"],
        items=tuple(
            OrderItemRecord(
                int(i["product_id"]), i["sku"], i["name"], int(i["quantity"]), Decimal(i["unit_price"])
            )
            for i in items
        ),
    )


async def find_order_id(conn: aiosqlite.Connection, channel: str, remote_id: str) -> int | None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT id FROM orders WHERE channel = ? AND remote_id = ?", (channel, remote_id)
        )
    )
    return int(rows[0]["id"]) if rows else None


async def existing_remote_ids(
    conn: aiosqlite.Connection, channel: str, remote_ids: Iterable[str]
) -> set[str]:
    """Which of these channel order ids are already imported (the completeness audit)."""
    rows = await conn.execute_fetchall(
        f"SELECT remote_id FROM orders WHERE channel = ? AND remote_id IN {IN_JSON}",
        (channel, json_list(str(r) for r in remote_ids)),
    )
    return {str(r["remote_id"]) for r in rows}
