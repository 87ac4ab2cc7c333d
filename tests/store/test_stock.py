"""Movements, levels, kits and available-to-promise (with its explanation)."""

from __future__ import annotations

import aiosqlite
import pytest

from daemon.store import catalog, orders, stock
from daemon.store import channels as channels_repo
from daemon.store.errors import InvalidData, NotFoundError, UnknownWarehouse
from tests.store.store_support import NOW, outbox_rows, product, remote_order


async def test_set_stock_writes_the_difference_as_a_movement(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1")
    assert await stock.set_stock(conn, "A1", "MAIN", 7) == 7
    assert await stock.set_stock(conn, "A1", "MAIN", 4) == -3
    assert await stock.set_stock(conn, "A1", "MAIN", 4) == 0
    rows = await conn.execute_fetchall(
        "SELECT delta, reason FROM stock_movements WHERE product_id = ?", (pid,)
    )
    assert [(r["delta"], r["reason"]) for r in rows] == [(7, "count"), (-3, "count")]
    assert await stock.levels(conn, [pid]) == {pid: {"MAIN": 4}}


async def test_movement_errors_name_the_problem(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1")
    with pytest.raises(UnknownWarehouse, match=r"'NOPE'.*MAIN"):
        await stock.add_movement(conn, pid, "NOPE", 1)
    with pytest.raises(NotFoundError, match="SKU 'ZZ'"):
        await stock.set_stock(conn, "ZZ", "MAIN", 1)
    with pytest.raises(InvalidData, match=">= 0"):
        await stock.set_stock(conn, "A1", "MAIN", -1)


async def test_atp_subtracts_reservations_of_every_channel_and_the_buffer(conn: aiosqlite.Connection) -> None:
    await stock.ensure_warehouse(conn, "SEC", "Secundário")
    pid = await product(conn, "A1", on_hand=10)
    await stock.set_stock(conn, "A1", "SEC", 3)
    await orders.import_order(
        conn,
        "loja",
        remote_order("1", items=(("A1", 2),)),
        local_status="paid",
        sale_warehouse="MAIN",
        now=NOW,
    )
    await orders.import_order(
        conn, "ml", remote_order("2", items=(("A1", 1),)), local_status="paid", sale_warehouse="MAIN", now=NOW
    )
    figure = (await stock.available_to_promise(conn, [pid], ["MAIN", "SEC"], buffer=1))[pid]
    assert figure.quantity == 13 - 3 - 1
    assert figure.explanation["on_hand"] == {"MAIN": 10, "SEC": 3}
    assert figure.explanation["reserved_by_channel"] == {"loja": 2, "ml": 1}
    assert figure.explanation["buffer"] == 1
    assert figure.explanation["formula"] == "13 on hand - 3 reserved - 1 buffer = 9"
    only_main = (await stock.available_to_promise(conn, [pid], ["MAIN"], buffer=0))[pid]
    assert only_main.quantity == 7


async def test_atp_never_goes_negative(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=1)
    await orders.import_order(
        conn,
        "loja",
        remote_order("1", items=(("A1", 3),)),
        local_status="paid",
        sale_warehouse="MAIN",
        now=NOW,
    )
    figure = (await stock.available_to_promise(conn, [pid], ["MAIN"], buffer=2))[pid]
    assert figure.quantity == 0
    assert figure.explanation["computed"] == -4
    assert "never negative" in figure.explanation["formula"]


async def test_kit_stock_follows_its_components(conn: aiosqlite.Connection) -> None:
    a = await product(conn, "A1", on_hand=10)
    b = await product(conn, "B1", on_hand=9)
    kit = await product(conn, "KIT")
    await conn.execute("DELETE FROM outbox")
    assert await catalog.set_kit_components(conn, kit, [(a, 2), (b, 3)])
    assert (await outbox_rows(conn, "stock", kit))["loja"][0] == "pending"
    figures = await stock.available_to_promise(conn, [kit, a], ["MAIN"], buffer=1)
    assert figures[kit].quantity == min(10 // 2, 9 // 3) - 1
    explanation = figures[kit].explanation
    assert explanation["kit_minimum"] == 3 and explanation["limited_by"] == "B1"
    assert [(c["sku"], c["per_kit"], c["kits"]) for c in explanation["components"]] == [
        ("A1", 2, 5),
        ("B1", 3, 3),
    ]
    # a component's movement re-queues the kit
    await conn.execute("DELETE FROM outbox")
    await stock.add_movement(conn, b, "MAIN", 3)
    assert (await outbox_rows(conn, "stock", kit))["ml"][0] == "pending"
    assert (await stock.available_to_promise(conn, [kit], ["MAIN"], 0))[kit].quantity == 4
    # kits hold no stock of their own
    with pytest.raises(InvalidData, match="is a kit"):
        await stock.add_movement(conn, kit, "MAIN", 1)


async def test_selling_a_kit_reserves_its_components(conn: aiosqlite.Connection) -> None:
    a = await product(conn, "A1", on_hand=10)
    b = await product(conn, "B1", on_hand=10)
    kit = await product(conn, "KIT")
    other_kit = await product(conn, "KIT2")
    await catalog.set_kit_components(conn, kit, [(a, 2), (b, 1)])
    await catalog.set_kit_components(conn, other_kit, [(a, 5)])
    await conn.execute("DELETE FROM outbox")
    await orders.import_order(
        conn,
        "loja",
        remote_order("1", items=(("KIT", 3),)),
        local_status="paid",
        sale_warehouse="MAIN",
        now=NOW,
    )
    for pid in (kit, a, b, other_kit):  # the component and the kit sharing it are queued too
        assert (await outbox_rows(conn, "stock", pid))["ml"][0] == "pending"
    figures = await stock.available_to_promise(conn, [a, b, kit, other_kit], ["MAIN"], 0)
    assert figures[a].quantity == 10 - 6
    assert figures[b].quantity == 10 - 3
    assert figures[kit].quantity == min(4 // 2, 7 // 1)
    assert figures[other_kit].quantity == 0


async def test_kits_do_not_nest(conn: aiosqlite.Connection) -> None:
    a = await product(conn, "A1")
    kit = await product(conn, "KIT")
    big = await product(conn, "BIG")
    await catalog.set_kit_components(conn, kit, [(a, 1)])
    with pytest.raises(InvalidData, match="kits themselves"):
        await catalog.set_kit_components(conn, big, [(kit, 1)])
    with pytest.raises(InvalidData, match="component of kit"):
        await catalog.set_kit_components(conn, a, [(big, 1)])
    with pytest.raises(InvalidData, match="itself"):
        await catalog.set_kit_components(conn, big, [(big, 1)])
    assert not await catalog.set_kit_components(conn, kit, [(a, 1)])  # unchanged
    assert await catalog.set_kit_components(conn, kit, [])
    assert not (await catalog.get_product(conn, kit)).is_kit  # type: ignore[union-attr]


async def test_atp_batch_uses_a_fixed_number_of_queries(conn: aiosqlite.Connection) -> None:
    ids = [await product(conn, f"P{i}", on_hand=i) for i in range(30)]
    statements: list[str] = []
    await conn.set_trace_callback(statements.append)
    try:
        figures = await stock.available_to_promise(conn, ids, ["MAIN"], 0)
    finally:
        await conn.set_trace_callback(None)  # type: ignore[arg-type]
    assert [figures[i].quantity for i in ids] == list(range(30))
    assert len(statements) == 3


HOLDS = stock.HeldByChannel("loja", frozenset({"aguardando_pagamento", "pagamento_em_analise"}))


async def import_on(
    conn: aiosqlite.Connection, channel: str, remote_id: str, status: str, *items: tuple[str, int]
) -> int:
    result = await orders.import_order(
        conn,
        channel,
        remote_order(remote_id, status=status, items=items, paid=False),
        local_status="placed",
        sale_warehouse="MAIN",
        now=NOW,
    )
    return result.order_id


async def test_a_channel_that_holds_its_own_orders_is_not_charged_for_them_twice(
    conn: aiosqlite.Connection,
) -> None:
    pid = await product(conn, "A1", on_hand=10)
    await import_on(conn, "loja", "1", "aguardando_pagamento", ("A1", 2))  # held by loja itself
    await import_on(conn, "loja", "2", "pedido_pago", ("A1", 1))  # not held: reserved here only
    await import_on(conn, "ml", "3", "aguardando_pagamento", ("A1", 3))  # ml's order: ml's business
    everywhere = (await stock.available_to_promise(conn, [pid], ["MAIN"], 0))[pid]
    assert everywhere.quantity == 10 - 6
    for_loja = (await stock.available_to_promise(conn, [pid], ["MAIN"], 1, held=HOLDS))[pid]
    assert for_loja.quantity == 10 - 6 + 2 - 1
    assert for_loja.explanation["held_by_channel"] == 2
    assert for_loja.explanation["formula"] == (
        "10 on hand - 6 reserved + 2 held by the channel itself - 1 buffer = 5"
    )
    assert "held_by_channel" not in everywhere.explanation
    nobody_holds = stock.HeldByChannel("loja", frozenset())
    assert (await stock.available_to_promise(conn, [pid], ["MAIN"], 0, held=nobody_holds))[pid].quantity == 4


async def test_a_kit_held_by_the_channel_is_added_back_to_the_kit_not_its_components(
    conn: aiosqlite.Connection,
) -> None:
    a = await product(conn, "A1", on_hand=10)
    kit = await product(conn, "KIT")
    assert await catalog.set_kit_components(conn, kit, [(a, 2)])
    await import_on(conn, "loja", "1", "pagamento_em_analise", ("KIT", 1))
    figures = await stock.available_to_promise(conn, [kit, a], ["MAIN"], 0, held=HOLDS)
    assert figures[kit].quantity == (10 - 2) // 2 + 1  # loja sells 5 kits in all, 1 of them held
    assert figures[kit].explanation["held_by_channel"] == 1
    assert "+ 1 held by the channel itself" in figures[kit].explanation["formula"]
    assert figures[a].quantity == 8  # loja holds the kit, not the component sold on its own


async def test_an_order_moving_in_or_out_of_a_held_status_requeues_its_own_channels_stock(
    conn: aiosqlite.Connection,
) -> None:
    pid = await product(conn, "A1", on_hand=10)
    await channels_repo.set_holds(conn, {"loja": ["aguardando_pagamento", "pagamento_em_analise"], "ml": []})
    order_id = await import_on(conn, "loja", "1", "aguardando_pagamento", ("A1", 2))

    async def requeued_after(remote_status: str) -> dict[str, tuple[str, int]]:
        await conn.execute("DELETE FROM outbox")
        await conn.execute("UPDATE orders SET remote_status = ? WHERE id = ?", (remote_status, order_id))
        return await outbox_rows(conn, "stock", pid)

    assert await requeued_after("pagamento_em_analise") == {}  # held either way
    assert (await requeued_after("pedido_pago"))["loja"][0] == "pending"  # released by loja: push
    assert list(await requeued_after("pedido_em_separacao")) == []  # held neither way
    assert list(await requeued_after("aguardando_pagamento")) == ["loja"]  # only its own channel
    await channels_repo.set_holds(conn, {"loja": []})
    assert await requeued_after("pedido_pago") == {}  # nobody holds: the figure does not move
