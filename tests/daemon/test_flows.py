"""The flows against the real store, the real connector and the loopback simulator, run one batch at
a time (no loop, no timing): what each run reads, sends and records."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import pytest

from channels.models import FlowName, PushResult, StockPush
from daemon.clock import SYSTEM_CLOCK
from daemon.erp import ErpService
from daemon.flows.runner import FlowTiming
from daemon.store import bindings, catalog, channels, import_failures, orders, outbox, stock
from daemon.store._products import id_for_sku
from daemon.store.errors import BindingConflict
from tests.daemon.conftest import World


def skus(world: World) -> list[str]:
    return [p["sku"] for p in world.sim.state()["products"]]


async def test_stock_push_sends_available_to_promise_and_explains_it(world: World) -> None:
    result = await world.run(FlowName.STOCK)
    assert result.failed == 0 and result.done == 6
    first = skus(world)[0]
    assert world.sim_stock(first) == 5
    async with world.db.read() as conn:
        product = await catalog.get_product_by_sku(conn, first)
        assert product is not None
        pushed = await outbox.explain(conn, "loja", "stock", product.id)
    assert pushed is not None and pushed.value == 5
    assert pushed.explanation  # how 5 was computed is kept next to it


async def test_one_bad_item_does_not_fail_the_batch(world: World) -> None:
    async with world.db.write() as conn:
        await catalog.upsert_product(conn, "NOT-ON-CHANNEL", "Fantasma")
        await stock.set_stock(conn, "NOT-ON-CHANNEL", "MAIN", 3)
    result = await world.run(FlowName.STOCK)
    assert result.done == 6 and result.failed == 1
    async with world.db.read() as conn:
        bad = [
            i
            for i in await outbox.list_items(conn, channel="loja", entity="stock")
            if i.sku == "NOT-ON-CHANNEL"
        ]
    assert bad[0].state in ("failed", "parked") and "NOT-ON-CHANNEL" in (bad[0].last_error or "")


async def test_a_change_during_the_push_is_not_lost(world: World) -> None:
    first = skus(world)[0]
    await world.run(FlowName.STOCK)
    original = world.connector.push_stock

    async def push_and_change(batch: Sequence[StockPush]) -> list[PushResult]:
        results = await original(batch)
        async with world.db.write() as conn:  # the ERP sells one unit while the push is on the wire
            product = await catalog.get_product_by_sku(conn, first)
            assert product is not None
            await stock.add_movement(conn, product.id, "MAIN", -1, "sale")
        return results

    async with world.db.write() as conn:
        await stock.set_stock(conn, first, "MAIN", 20)
    world.connector.push_stock = push_and_change  # type: ignore[method-assign]
    await world.run(FlowName.STOCK)
    assert world.sim_stock(first) == 20
    world.connector.push_stock = original  # type: ignore[method-assign]
    await world.run(FlowName.STOCK)
    assert world.sim_stock(first) == 19  # the coalesced newer change went out next


async def test_orders_import_filters_statuses_and_is_idempotent(world: World) -> None:
    sku = skus(world)[0]
    paid = world.sim.create_orders(2, items=[(sku, 1)], status="pedido_pago")
    world.sim.create_orders(1, items=[(sku, 1)], status="aguardando_pagamento")
    first = await world.run(FlowName.ORDERS)
    assert first.done == 2
    async with world.db.read() as conn:
        imported = await orders.existing_remote_ids(conn, "loja", [str(n) for n in paid])
        rows = list(await conn.execute_fetchall("SELECT COUNT(*) FROM orders"))
    assert imported == {str(n) for n in paid}
    assert rows[0][0] == 2
    again = await world.run(FlowName.ORDERS)  # the lookback window overlaps: nothing new, nothing twice
    assert again.done == 0
    async with world.db.read() as conn:
        counts = list(
            await conn.execute_fetchall("SELECT COUNT(*), (SELECT COUNT(*) FROM order_items) FROM orders")
        )
    assert tuple(counts[0]) == (2, 2)


async def test_an_imported_sale_lowers_the_stock_pushed(world: World) -> None:
    sku = skus(world)[0]
    await world.run(FlowName.STOCK)
    assert world.sim_stock(sku) == 5
    world.sim.create_orders(1, items=[(sku, 2)], status="pedido_pago")
    await world.run(FlowName.ORDERS)
    await world.run(FlowName.STOCK)
    assert world.sim_stock(sku) == 3  # reserved by the open order, on every channel


def sim_stock_row(world: World, sku: str) -> dict[str, int]:
    (row,) = [p["estoque"] for p in world.sim.state()["products"] if p["sku"] == sku]
    return {k: int(row[k]) for k in ("quantidade", "quantidade_reservada", "quantidade_disponivel")}


@pytest.mark.parametrize("holds", [False, True])
async def test_a_channel_that_holds_its_own_unpaid_orders_is_not_charged_twice(
    world: World, holds: bool
) -> None:
    """Loja Integrada holds stock for its orders awaiting payment and sells what it was sent minus
    that (the simulator models it). Without ``channel_holds_stock_in`` the order counts twice there;
    with it, the shop sells exactly the ERP's available-to-promise, and once the order is paid (the
    platform lets go of its hold) the next pull queues the lower figure at once."""
    held = frozenset({"aguardando_pagamento", "pagamento_em_analise"}) if holds else frozenset()
    world.config = replace(
        world.config,
        order_statuses=world.config.order_statuses | {"aguardando_pagamento"},
        channel_holds_stock_in=held,
    )
    async with world.db.write() as conn:
        await channels.set_holds(conn, {"loja": held})
    sku = skus(world)[0]
    await world.run(FlowName.STOCK)
    numero = world.sim.create_orders(1, items=[(sku, 2)], status="aguardando_pagamento")[0]
    await world.run(FlowName.ORDERS)
    await world.run(FlowName.STOCK)
    if holds:
        assert sim_stock_row(world, sku) == {
            "quantidade": 5,
            "quantidade_reservada": 2,
            "quantidade_disponivel": 3,
        }
    else:  # what the shop sells is 2 short: the reservation is subtracted by both sides
        assert sim_stock_row(world, sku)["quantidade_disponivel"] == 1
    world.sim.set_order_status(numero, "pedido_pago")
    await world.run(FlowName.ORDERS)
    async with world.db.read() as conn:
        queued = await conn.execute_fetchall(
            "SELECT COUNT(*) FROM outbox WHERE channel = 'loja' AND entity = 'stock' AND state = 'pending'"
        )
    assert next(iter(queued))[0] == (1 if holds else 0)
    await world.run(FlowName.STOCK)
    assert sim_stock_row(world, sku) == {
        "quantidade": 3,
        "quantidade_reservada": 0,
        "quantidade_disponivel": 3,
    }


async def test_unknown_sku_parks_the_order_and_a_later_run_lets_it_in(world: World) -> None:
    sku = skus(world)[0]
    async with world.db.write() as conn:  # the ERP does not know this product yet
        await conn.execute("UPDATE products SET sku = 'RENAMED' WHERE sku = ?", (sku,))
    good = world.sim.create_orders(1, items=[(skus(world)[1], 1)], status="pedido_pago")
    bad = world.sim.create_orders(1, items=[(sku, 1)], status="pedido_pago")
    result = await world.run(FlowName.ORDERS)
    assert result.done == 1 and result.failed == 1
    async with world.db.read() as conn:
        parked = await import_failures.list_open(conn, channel="loja")
        assert await orders.existing_remote_ids(conn, "loja", [str(good[0])]) == {str(good[0])}
    assert [p.remote_id for p in parked] == [str(bad[0])]
    assert sku in parked[0].error
    async with world.db.write() as conn:  # someone fixes the catalog
        await conn.execute("UPDATE products SET sku = ? WHERE sku = 'RENAMED'", (sku,))
    await world.run(FlowName.ORDERS)
    async with world.db.read() as conn:
        assert await import_failures.list_open(conn, channel="loja") == []
        assert await orders.existing_remote_ids(conn, "loja", [str(bad[0])]) == {str(bad[0])}


async def test_order_updates_push_invoice_and_tracking_once_and_never_echo(world: World) -> None:
    from daemon.documents import make_nfe_key

    numero = world.sim.create_orders(1, items=[(skus(world)[0], 1)], status="pedido_pago")[0]
    await world.run(FlowName.ORDERS)
    async with world.db.write() as conn:
        order_id = await orders.find_order_id(conn, "loja", str(numero))
        assert order_id is not None
        await orders.add_invoice(conn, order_id, "1234", "1", make_nfe_key(1234), SYSTEM_CLOCK.now())
        await orders.add_tracking(conn, order_id, "correios_pac", "BR123456789BR")
        await orders.set_local_status(conn, order_id, "shipped", sale_warehouse="MAIN")
    result = await world.run(FlowName.ORDER_UPDATES)
    assert result.done == 1
    remote = next(o for o in world.sim.state()["orders"] if o["numero"] == numero)
    assert remote["situacao"] == "pedido_enviado"
    assert remote["envios"][0]["objeto"] == "BR123456789BR"
    assert remote["nf"] is not None
    # The next pull sees our own change come back: it must not queue another push.
    await world.run(FlowName.ORDERS)
    async with world.db.read() as conn:
        pending = [
            i
            for i in await outbox.list_items(conn, channel="loja", entity="order_update")
            if i.state == "pending"
        ]
    assert pending == []
    assert (await world.run(FlowName.ORDER_UPDATES)).done == 0


async def test_price_adjustment_is_applied_per_channel(world: World) -> None:
    world.config = replace(world.config, price_adjust_percent=Decimal("10"))
    await world.run(FlowName.PRICES)
    first = world.sim.state()["products"][0]
    assert Decimal(first["preco"]["cheio"]) == Decimal("11.00")


async def test_products_flow_links_existing_products_by_sku_instead_of_duplicating(world: World) -> None:
    before = len(world.sim.state()["products"])
    await world.drain(FlowName.PRODUCTS)
    assert len(world.sim.state()["products"]) == before
    async with world.db.read() as conn:
        rows = list(await conn.execute_fetchall("SELECT COUNT(*) FROM bindings WHERE entity = 'product'"))
    assert rows[0][0] == before
    rng = random.Random(1)
    assert rng  # deterministic data above; nothing random in the assertions


async def test_interval_sweep_pushes_values_that_drifted_without_a_trigger(world: World) -> None:
    await world.drain(FlowName.PRODUCTS)  # link every product
    await world.drain(FlowName.STOCK)
    first = skus(world)[0]
    assert world.sim_stock(first) == 5
    world.config = replace(world.config, stock_buffer=2)  # a reload changed the safety buffer
    assert (await world.run(FlowName.STOCK)).done == 0  # a wake-up run: nothing queued, nothing sent
    swept = await world.run(FlowName.STOCK, sweep=True)
    assert swept.more  # drift found and queued
    await world.drain(FlowName.STOCK)
    assert world.sim_stock(first) == 3
    assert (await world.run(FlowName.STOCK, sweep=True)).more is False  # nothing drifts any more


def requests_to(world: World, route: str) -> int:
    return int(world.sim.state()["counters"]["by_route"].get(route, 0))


async def outbox_states(world: World, entity: str) -> dict[str, int]:
    async with world.db.read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT state, COUNT(*) FROM outbox WHERE entity = ? GROUP BY state", (entity,)
        )
    return {str(r[0]): int(r[1]) for r in rows}


async def test_with_the_products_flow_on_stock_and_price_wait_for_it_to_link(world: World) -> None:
    world.config = replace(world.config, flows={f: FlowTiming(60, 50) for f in FlowName})
    async with world.db.write() as conn:  # a product the channel has never seen
        report = await catalog.import_products_csv(
            conn, "sku,name,list_price,sale_price,stock,warehouse\nNOVO-1,Produto novo,20.00,,9,MAIN"
        )
        assert not report.errors
    lookups = requests_to(world, "GET /v1/produto")

    for flow in (FlowName.STOCK, FlowName.PRICES):
        result = await world.run(flow)
        assert (result.done, result.failed, result.contacted) == (0, 0, False)
    assert requests_to(world, "GET /v1/produto") == lookups  # no SKU lookups, no "not on the channel"
    assert await outbox_states(world, "stock") == {"sent": 7}
    assert await outbox_states(world, "product") == {"pending": 7}

    await world.drain(FlowName.PRODUCTS)  # creates NOVO-1, links the six by SKU, queues their values
    assert await outbox_states(world, "stock") == {"pending": 7}
    puts = requests_to(world, "PUT /v1/produto_estoque/{ident}")
    await world.drain(FlowName.STOCK)
    await world.drain(FlowName.PRICES)
    assert requests_to(world, "PUT /v1/produto_estoque/{ident}") - puts == 7  # one each, no repeats
    assert world.sim_stock("NOVO-1") == 9
    assert await outbox_states(world, "stock") == {"sent": 7}
    assert await outbox_states(world, "price") == {"sent": 7}


async def test_an_unlinked_product_with_nothing_queued_is_queued_for_the_products_flow(world: World) -> None:
    world.config = replace(world.config, flows={f: FlowTiming(60, 50) for f in FlowName})
    await world.drain(FlowName.PRODUCTS)
    await world.drain(FlowName.STOCK)
    first, second = skus(world)[:2]
    async with world.db.write() as conn:
        ids = [await id_for_sku(conn, sku) for sku in (first, second)]
        for pid in ids:  # the links are gone (an operator unlinked them); the product rows stay sent
            await bindings.delete_binding(conn, "loja", "product", pid)
        # The second product's last push failed: its own retry schedule brings it back, the stock flow
        # must not reset it (attempts, backoff).
        await conn.execute(
            "UPDATE outbox SET state = 'failed' WHERE entity = 'product' AND entity_id = ?", (ids[1],)
        )
        await outbox.enqueue(conn, "loja", "stock", ids)
    result = await world.run(FlowName.STOCK)
    assert (result.done, result.failed) == (0, 0)
    async with world.db.read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT entity_id, state FROM outbox WHERE entity = 'product' AND entity_id IN (?, ?)", ids
        )
    assert {int(r[0]): str(r[1]) for r in rows} == {ids[0]: "pending", ids[1]: "failed"}
    # The products flow links the first again (and retries the second on its own schedule): both
    # get their stock queued again once linked.
    await world.drain(FlowName.PRODUCTS)
    assert (await world.run(FlowName.STOCK)).done == 2


async def test_an_operator_links_a_product_by_hand_and_unlinks_it(world: World) -> None:
    """`product link` binds a SKU to the listing the operator names (the automatic link by key found
    nothing there) and queues what the channel must hear; `product unlink` forgets the binding, and
    the next push finds the product by its key again. Refusals name what is wrong."""
    erp = ErpService(world.db, SYSTEM_CLOCK, locale="en")
    sim_products = world.sim.state()["products"]
    first, second = sim_products[0], sim_products[1]
    async with world.db.write() as conn:  # the ERP names this product differently: no automatic link
        await conn.execute("UPDATE products SET sku = 'ERP-ONLY' WHERE sku = ?", (first["sku"],))
        pid = await id_for_sku(conn, "ERP-ONLY")
        await conn.execute("DELETE FROM outbox")
    result = await erp.link_product("ERP-ONLY", "loja", f" {first['id']} ")
    assert result.ok and result.details["remote_id"] == str(first["id"])
    async with world.db.read() as conn:
        assert await bindings.remote_ids(conn, "loja", "product", [pid]) == {pid: str(first["id"])}
    assert await outbox_states(world, "stock") == {"pending": 1}
    await world.run(FlowName.STOCK)
    assert world.sim_stock(first["sku"]) == 5  # pushed to the listing named by hand

    with pytest.raises(BindingConflict, match="already bound"):
        await erp.link_product(second["sku"], "loja", str(first["id"]))
    with pytest.raises(ValueError, match="empty"):
        await erp.link_product(second["sku"], "loja", "  ")
    with pytest.raises(KeyError, match="NOPE"):
        await erp.link_product("NOPE", "loja", "1")

    result = await erp.unlink_product("ERP-ONLY", "loja")
    assert result.details["remote_id"] == str(first["id"])
    with pytest.raises(KeyError, match="not linked"):
        await erp.unlink_product("ERP-ONLY", "loja")
    async with world.db.write() as conn:  # the SKUs agree again: the next push links by key
        await conn.execute("UPDATE products SET sku = ? WHERE id = ?", (first["sku"], pid))
    await erp.push_stock(first["sku"], ["loja"])
    await world.run(FlowName.STOCK)
    async with world.db.read() as conn:
        assert await bindings.remote_ids(conn, "loja", "product", [pid]) == {pid: str(first["id"])}
