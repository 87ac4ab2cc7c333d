"""Products, lookups and the CSV import."""

from __future__ import annotations

from decimal import Decimal

import aiosqlite
import pytest

from daemon.store import catalog, prices, stock
from daemon.store.errors import AmbiguousProduct
from tests.store.store_support import ean13, outbox_rows, product


async def test_upsert_writes_only_real_changes(conn: aiosqlite.Connection) -> None:
    created = await catalog.upsert_product(conn, "A1", "Caneca", weight_kg=Decimal("0.35"))
    assert created.created and created.changed
    version = (await outbox_rows(conn, "product", created.product_id))["loja"][1]
    same = await catalog.upsert_product(conn, "A1", "Caneca", weight_kg=Decimal("0.35"))
    assert not same.created and not same.changed
    assert (await outbox_rows(conn, "product", created.product_id))["loja"][1] == version
    renamed = await catalog.upsert_product(conn, "A1", "Caneca azul", weight_kg=Decimal("0.35"))
    assert renamed.changed
    assert (await outbox_rows(conn, "product", created.product_id))["loja"][1] == version + 1


async def test_lookups_and_ambiguous_ean(conn: aiosqlite.Connection) -> None:
    ean = ean13("789100000001")
    a = await product(conn, "A1", ean=ean, code="C-1")
    assert (await catalog.get_product_by_sku(conn, "A1")).id == a  # type: ignore[union-attr]
    assert (await catalog.get_product_by_ean(conn, ean)).id == a  # type: ignore[union-attr]
    assert (await catalog.find_product(conn, "code", "C-1")).id == a  # type: ignore[union-attr]
    assert await catalog.find_product(conn, "sku", "nope") is None
    await product(conn, "B1", ean=ean)
    with pytest.raises(AmbiguousProduct, match="'A1', 'B1'"):
        await catalog.get_product_by_ean(conn, ean)


CSV = """sku;name;ean;list_price;sale_price;stock;warehouse;active
A1;Caneca;{ean};119,90;99,90;10;MAIN;sim
B1;;;10,00;;5;MAIN;1
C1;Camiseta;123;abc;;-2;MAIN;talvez
D1;Boné;;1.234,56;;3;LOJA;1
A1;Caneca de novo;;;;;;
E1;Meia;;15,00;20,00;;;1
F1;"Nome com ; ponto e vírgula";;5;;7;;0
"""


async def test_csv_import_reports_bad_rows_and_keeps_the_good_ones(conn: aiosqlite.Connection) -> None:
    text = CSV.format(ean=ean13("789100000002"))
    report = await catalog.import_products_csv(conn, text, default_warehouse="MAIN")
    problems = {(e.line, e.column) for e in report.errors}
    assert problems == {
        (3, "name"),  # new product without a name
        (4, "ean"),
        (4, "list_price"),
        (4, "stock"),
        (4, "active"),
        (5, "warehouse"),  # unknown warehouse LOJA
        (6, "sku"),  # A1 repeated
        (7, "sale_price"),  # above list price
    }
    messages = {str(e) for e in report.errors}
    assert "line 5, column warehouse: unknown warehouse 'LOJA' (known: ['MAIN'])" in messages
    assert "line 6, column sku: 'A1' already appears on line 2" in messages
    assert (report.created, report.updated, report.unchanged) == (2, 0, 0)

    a1 = await catalog.get_product_by_sku(conn, "A1")
    f1 = await catalog.get_product_by_sku(conn, "F1")
    assert a1 is not None and f1 is not None
    assert f1.name == "Nome com ; ponto e vírgula" and not f1.active
    price = (await prices.get_prices(conn, [a1.id]))[a1.id]
    assert (price.list_price, price.sale_price) == (Decimal("119.90"), Decimal("99.90"))
    assert await stock.levels(conn, [a1.id, f1.id]) == {a1.id: {"MAIN": 10}, f1.id: {"MAIN": 7}}
    for sku in ("B1", "C1", "D1", "E1"):
        assert await catalog.get_product_by_sku(conn, sku) is None


async def test_csv_reimport_is_a_no_op(conn: aiosqlite.Connection) -> None:
    text = "sku,name,list_price,stock\nA1,Caneca,10.00,4\n"
    first = await catalog.import_products_csv(conn, text, default_warehouse="MAIN")
    assert (first.created, first.prices_changed, first.stock_changed, first.errors) == (1, 1, 1, [])
    pid = (await catalog.get_product_by_sku(conn, "A1")).id  # type: ignore[union-attr]
    before = await outbox_rows(conn, "product", pid), await outbox_rows(conn, "stock", pid)
    second = await catalog.import_products_csv(conn, text, default_warehouse="MAIN")
    assert (second.unchanged, second.prices_changed, second.stock_changed) == (1, 0, 0)
    assert (await outbox_rows(conn, "product", pid), await outbox_rows(conn, "stock", pid)) == before
    third = await catalog.import_products_csv(conn, "sku,stock\nA1,6\n", default_warehouse="MAIN")
    assert (third.unchanged, third.stock_changed) == (1, 1)
    assert await stock.levels(conn, [pid]) == {pid: {"MAIN": 6}}
    assert (await catalog.get_product_by_sku(conn, "A1")).name == "Caneca"  # type: ignore[union-attr]


async def test_csv_header_problems_import_nothing(conn: aiosqlite.Connection) -> None:
    report = await catalog.import_products_csv(conn, "sku,nome,preco\nA1,Caneca,10\n")
    assert [(e.line, e.column) for e in report.errors] == [(1, "nome"), (1, "preco")]
    assert await catalog.get_product_by_sku(conn, "A1") is None
