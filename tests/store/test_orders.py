"""Order import: idempotence, echoes, reservations, release, debit, invoices and tracking."""

from __future__ import annotations

from decimal import Decimal

import aiosqlite
import pytest

from channels.models import RemoteOrder, RemoteShipment
from daemon.store import bindings, catalog, customers, mappings, orders, stock
from daemon.store.db import transaction
from daemon.store.errors import InvalidCustomerDocument, InvalidData, OrderImportError, UnknownProduct
from tests.store.store_support import NOW, VALID_CNPJ, nfe_key, outbox_rows, product, remote_order

STATUS = {
    "paid": "pedido_pago",
    "invoiced": "faturado",
    "shipped": "pedido_enviado",
    "cancelled": "pedido_cancelado",
}


async def _import(
    conn: aiosqlite.Connection, order: RemoteOrder, channel: str = "loja", **kwargs: object
) -> orders.ImportOutcome:
    local = {v: k for k, v in STATUS.items()}[order.status]
    return await orders.import_order(
        conn,
        channel,
        order,
        local_status=local,
        sale_warehouse="MAIN",
        now=NOW,
        **kwargs,  # type: ignore[arg-type]
    )


async def _count(conn: aiosqlite.Connection, sql: str, *params: object) -> int:
    rows = list(await conn.execute_fetchall(sql, params))
    return int(rows[0][0])


async def _atp(conn: aiosqlite.Connection, pid: int) -> int:
    return (await stock.available_to_promise(conn, [pid], ["MAIN"], 0))[pid].quantity


async def test_import_is_idempotent(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=10)
    first = await _import(conn, remote_order("1001", items=(("A1", 2),)))
    second = await _import(conn, remote_order("1001", items=(("A1", 2),)))
    assert first.result == "created" and first.stock == "reserved"
    assert second == orders.ImportOutcome("unchanged", first.order_id)
    assert await _count(conn, "SELECT COUNT(*) FROM orders") == 1
    assert await _count(conn, "SELECT COUNT(*) FROM order_items") == 1
    assert await _count(conn, "SELECT COUNT(*) FROM customers") == 1
    assert await _atp(conn, pid) == 8  # reserved once
    record = await orders.get_order(conn, first.order_id)
    assert record is not None
    assert (record.status, record.remote_status, record.sale_warehouse) == ("paid", "pedido_pago", "MAIN")


async def test_import_reserves_on_every_channel_and_is_echo_free(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=10)
    await conn.execute("DELETE FROM outbox")
    outcome = await _import(conn, remote_order("1001"))
    assert set(await outbox_rows(conn, "stock", pid)) == {"loja", "ml"}  # the other channel lowers too
    assert await outbox_rows(conn, "order_update", outcome.order_id) == {}

    # the channel moves the order on: local status follows, nothing is queued to push back
    updated = await _import(conn, remote_order("1001", status="pedido_enviado"))
    assert updated.result == "updated" and set(updated.changes) == {"status", "remote_status"}
    assert await outbox_rows(conn, "order_update", outcome.order_id) == {}


async def test_our_pushed_status_coming_back_changes_nothing(conn: aiosqlite.Connection) -> None:
    await product(conn, "A1", on_hand=10)
    await mappings.load_mappings(conn, "loja", {"status": STATUS})
    table = await mappings.load_table(conn, "loja")
    outcome = await _import(conn, remote_order("1001"))
    order_id = outcome.order_id
    # the ERP ships the order: queued for the channel
    assert await orders.set_local_status(conn, order_id, "shipped")
    assert (await outbox_rows(conn, "order_update", order_id))["loja"][0] == "pending"
    payload = await orders.order_update_payload(conn, order_id)
    assert payload is not None and payload.status_to_push(table) == "pedido_enviado"
    await orders.mark_updates_pushed(
        conn, [orders.UpdatePushed(order_id, remote_status="pedido_enviado")], NOW
    )
    payload = await orders.order_update_payload(conn, order_id)
    assert payload is not None and payload.nothing_to_push(table)
    # the next pull sees our own status: unchanged, nothing queued, no second debit
    await conn.execute("DELETE FROM outbox")
    again = await _import(conn, remote_order("1001", status="pedido_enviado"))
    assert again.result == "unchanged"
    assert await outbox_rows(conn, "order_update", order_id) == {}


async def test_cancel_releases_the_reservation(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=10)
    await _import(conn, remote_order("1001", items=(("A1", 4),)))
    assert await _atp(conn, pid) == 6
    cancelled = await _import(conn, remote_order("1001", status="pedido_cancelado", items=(("A1", 4),)))
    assert cancelled.stock == "released"
    assert await _atp(conn, pid) == 10
    assert await _count(conn, "SELECT COUNT(*) FROM stock_movements WHERE reason = 'sale'") == 0


async def test_invoice_debits_exactly_once(conn: aiosqlite.Connection) -> None:
    a = await product(conn, "A1", on_hand=10)
    b = await product(conn, "B1", on_hand=10)
    kit = await product(conn, "KIT")
    await catalog.set_kit_components(conn, kit, [(a, 1), (b, 2)])
    outcome = await _import(conn, remote_order("1001", items=(("A1", 2), ("KIT", 1))))
    assert await _atp(conn, a) == 10 - 3
    assert await orders.set_local_status(conn, outcome.order_id, "invoiced")
    assert await _import(conn, remote_order("1001", status="pedido_enviado", items=(("A1", 2), ("KIT", 1))))
    assert not await orders.set_local_status(conn, outcome.order_id, "shipped")  # already shipped
    await orders.set_local_status(conn, outcome.order_id, "delivered")
    rows = await conn.execute_fetchall(
        "SELECT product_id, delta, reference FROM stock_movements WHERE reason = 'sale' ORDER BY product_id"
    )
    assert [(r["product_id"], r["delta"], r["reference"]) for r in rows] == [
        (a, -3, f"order:{outcome.order_id}"),
        (b, -2, f"order:{outcome.order_id}"),
    ]
    assert await stock.levels(conn, [a, b]) == {a: {"MAIN": 7}, b: {"MAIN": 8}}
    assert await _atp(conn, a) == 7  # no longer reserved, now debited


async def test_order_first_seen_already_cancelled_reserves_nothing(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=5)
    outcome = await _import(conn, remote_order("1", status="pedido_cancelado", items=(("A1", 5),)))
    assert outcome.stock == "released"
    assert await _atp(conn, pid) == 5


async def test_unknown_product_names_the_sku(conn: aiosqlite.Connection) -> None:
    with pytest.raises(UnknownProduct, match="SKU 'GHOST'"):
        await _import(conn, remote_order("1", items=(("GHOST", 1),)))
    assert await _count(conn, "SELECT COUNT(*) FROM orders") == 0


async def test_missing_products_can_be_created_off_the_channels(conn: aiosqlite.Connection) -> None:
    order = remote_order("1", items=(("NEW1", 1),))
    item = order.items[0].model_copy(update={"remote_product_id": "li-77"})
    order = order.model_copy(update={"items": (item, item)})
    outcome = await _import(conn, order, create_missing_products=True)
    assert outcome.created_products == ("NEW1",)
    created = await catalog.get_product_by_sku(conn, "NEW1")
    assert created is not None and not created.sync_enabled
    assert await bindings.get_binding(conn, "loja", "product", created.id) == "li-77"


async def test_items_link_by_binding_then_by_ean(conn: aiosqlite.Connection) -> None:
    from tests.store.store_support import ean13

    ean = ean13("789100000009")
    bound = await product(conn, "BOUND")
    by_ean = await product(conn, "BYEAN", ean=ean)
    await bindings.set_binding(conn, "loja", "product", bound, "li-1")
    order = remote_order("1", items=(("x", 1), ("y", 1)))
    items = (
        order.items[0].model_copy(update={"sku": "whatever", "remote_product_id": "li-1"}),
        order.items[1].model_copy(update={"sku": None, "ean": ean}),
    )
    outcome = await _import(conn, order.model_copy(update={"items": items}), link_by="ean")
    record = await orders.get_order(conn, outcome.order_id)
    assert record is not None and [i.product_id for i in record.items] == [bound, by_ean]


async def test_invalid_cpf_is_a_clear_error_and_spares_the_rest_of_the_page(
    conn: aiosqlite.Connection,
) -> None:
    await product(conn, "A1", on_hand=10)
    async with transaction(conn):
        with pytest.raises(
            InvalidCustomerDocument, match=r"customer 'Maria Silva': invalid CPF/CNPJ"
        ) as caught:
            await _import(conn, remote_order("bad", document="111.222.333-00"))
        assert isinstance(caught.value, OrderImportError)
        assert "check digit" in str(caught.value)
        await _import(conn, remote_order("good"))
    remote_ids = [r[0] for r in await conn.execute_fetchall("SELECT remote_id FROM orders")]
    assert remote_ids == ["good"]
    assert await _count(conn, "SELECT COUNT(*) FROM order_items") == 1


async def test_customers_match_by_document_then_email(conn: aiosqlite.Connection) -> None:
    await product(conn, "A1", on_hand=10)
    one = await _import(conn, remote_order("1", document="52998224725"))
    two = await _import(conn, remote_order("2", document="529.982.247-25", email=None), channel="ml")
    three = await _import(conn, remote_order("3", document=None, email="MARIA@example.com"))
    four = await _import(conn, remote_order("4", document=VALID_CNPJ, email="loja@example.com"))
    ids = {
        (await orders.get_order(conn, o.order_id)).customer_id  # type: ignore[union-attr]
        for o in (one, two, three)
    }
    assert len(ids) == 1
    company = (await orders.get_order(conn, four.order_id)).customer_id  # type: ignore[union-attr]
    assert company not in ids
    assert (await customers.get_customer(conn, company)).document == "11222333000181"  # type: ignore[arg-type, union-attr]


async def test_fractional_quantities_are_refused(conn: aiosqlite.Connection) -> None:
    await product(conn, "A1", on_hand=10)
    order = remote_order("1")
    item = order.items[0].model_copy(update={"quantity": Decimal("1.5")})
    with pytest.raises(OrderImportError, match="whole positive"):
        await _import(conn, order.model_copy(update={"items": (item,)}))


async def test_invoice_and_tracking_are_pushed_once(conn: aiosqlite.Connection) -> None:
    await product(conn, "A1", on_hand=10)
    order = remote_order("1001").model_copy(
        update={"shipments": (RemoteShipment(remote_id="env-9", carrier="PAC", tracking_code=None),)}
    )
    outcome = await _import(conn, order)
    order_id = outcome.order_id
    await conn.execute("DELETE FROM outbox")
    key = nfe_key()
    spaced = " ".join(key[i : i + 4] for i in range(0, 44, 4))
    invoice_id = await orders.add_invoice(conn, ("loja", "1001"), "123", "1", spaced, NOW)
    assert await orders.add_invoice(conn, order_id, "123", "1", key, NOW) == invoice_id
    with pytest.raises(InvalidData, match="check digit"):
        await orders.add_invoice(conn, order_id, "124", "1", key[:-1] + str((int(key[-1]) + 1) % 10), NOW)
    shipment_id = await orders.add_tracking(conn, order_id, "correios_pac", "BR123", None)
    assert (await outbox_rows(conn, "order_update", order_id))["loja"] == ("pending", 2)

    payload = await orders.order_update_payload(conn, order_id)
    assert payload is not None
    assert payload.invoice_to_push is not None and payload.invoice_to_push.access_key == key
    [shipment] = payload.tracking_to_push
    assert (shipment.id, shipment.remote_id, shipment.tracking_code) == (shipment_id, "env-9", "BR123")
    await orders.mark_updates_pushed(
        conn, [orders.UpdatePushed(order_id, invoice_id=invoice_id, tracking=[(shipment_id, "BR123")])], NOW
    )
    payload = await orders.order_update_payload(conn, order_id)
    assert payload is not None and payload.invoice_to_push is None and payload.tracking_to_push == ()


async def test_tracking_from_the_channel_is_not_pushed_back(conn: aiosqlite.Connection) -> None:
    await product(conn, "A1", on_hand=10)
    order = remote_order("1001").model_copy(
        update={"shipments": (RemoteShipment(remote_id="env-1", carrier="SEDEX", tracking_code="QB1"),)}
    )
    outcome = await _import(conn, order)
    assert await outbox_rows(conn, "order_update", outcome.order_id) == {}
    payload = await orders.order_update_payload(conn, outcome.order_id)
    assert payload is not None and payload.tracking_to_push == ()
    assert await _import(conn, order) == orders.ImportOutcome("unchanged", outcome.order_id)


async def test_reconcile_applies_stock_rules_to_statuses_written_by_sql(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=10)
    outcome = await _import(conn, remote_order("1", items=(("A1", 3),)))
    await conn.execute("UPDATE orders SET status = 'invoiced' WHERE id = ?", (outcome.order_id,))
    assert await orders.reconcile_stock_states(conn) == [outcome.order_id]
    assert await orders.reconcile_stock_states(conn) == []
    assert await stock.levels(conn, [pid]) == {pid: {"MAIN": 7}}


async def test_shipments_without_a_remote_id_are_matched_by_tracking_code(conn: aiosqlite.Connection) -> None:
    await product(conn, "A1", on_hand=10)
    order = remote_order("1001").model_copy(
        update={"shipments": (RemoteShipment(carrier="SEDEX", tracking_code="QB9"),)}
    )
    outcome = await _import(conn, order)
    assert await _import(conn, order) == orders.ImportOutcome("unchanged", outcome.order_id)
    assert await _count(conn, "SELECT COUNT(*) FROM shipments") == 1
