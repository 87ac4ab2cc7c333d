"""Bindings, mappings, cursors, import failures, tokens and never-integrated products."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import aiosqlite
import pytest

from daemon.store import bindings, import_failures, mappings, problems, sync_state, tokens
from daemon.store._documents import _fallback_is_valid_nfe_key, _fallback_validate_document
from daemon.store.db import transaction
from daemon.store.errors import BindingConflict, InvalidData
from tests.store.store_support import NOW, VALID_CNPJ, VALID_CPF, nfe_key, product


async def test_bindings(conn: aiosqlite.Connection) -> None:
    a = await product(conn, "A1")
    b = await product(conn, "B1")
    await bindings.set_binding(conn, "loja", "product", a, "li-1")
    await bindings.set_binding(conn, "loja", "product", a, "li-1")  # idempotent
    with pytest.raises(BindingConflict, match="'li-1' is already bound to local id"):
        await bindings.set_binding(conn, "loja", "product", b, "li-1")
    await bindings.set_bindings(conn, "ml", "product", [(a, "MLB1"), (b, "MLB2")])
    assert await bindings.remote_ids(conn, "ml", "product", [a, b, 999]) == {a: "MLB1", b: "MLB2"}
    assert await bindings.get_local_id(conn, "ml", "product", "MLB2") == b
    assert await bindings.delete_binding(conn, "ml", "product", b)
    assert not await bindings.delete_binding(conn, "ml", "product", b)
    assert await bindings.get_binding(conn, "ml", "product", b) is None


async def test_mappings_replace_and_translate(conn: aiosqlite.Connection) -> None:
    await mappings.load_mappings(conn, "loja", {"status": {"paid": "pedido_pago", "old": "x"}})
    assert (
        await mappings.load_mappings(conn, "loja", {"status": {"paid": "pedido_pago"}, "carrier": {"pac": 4}})
        == 2
    )
    assert await mappings.to_remote(conn, "loja", "status", "paid") == "pedido_pago"
    assert await mappings.to_local(conn, "loja", "status", "x") is None  # replaced
    table = await mappings.load_table(conn, "loja")
    assert table.to_local("carrier", "4") == "pac" and table.to_remote("carrier", "pac") == "4"
    with pytest.raises(InvalidData, match="'a' and 'b' both map to 'same'"):
        await mappings.load_mappings(conn, "loja", {"status": {"a": "same", "b": "same"}})
    assert await mappings.to_remote(conn, "loja", "status", "paid") == "pedido_pago"  # untouched


async def test_cursor_advances_only_with_the_commit(conn: aiosqlite.Connection) -> None:
    assert await sync_state.load(conn, "loja", "orders") == sync_state.Cursor()
    cursor = sync_state.Cursor(
        watermark=NOW, window_since=NOW, page_token="p2", window_max=NOW + timedelta(1)
    )
    with pytest.raises(RuntimeError):
        async with transaction(conn):
            await sync_state.save(conn, "loja", "orders", cursor, NOW)
            raise RuntimeError("page import failed")
    assert await sync_state.load(conn, "loja", "orders") == sync_state.Cursor()
    async with transaction(conn):
        await sync_state.save(conn, "loja", "orders", cursor, NOW)
    assert await sync_state.load(conn, "loja", "orders") == cursor
    finished = cursor.finish_window()
    assert finished == sync_state.Cursor(watermark=NOW + timedelta(1))
    assert not finished.in_window


async def test_import_failures_lifecycle(conn: aiosqlite.Connection) -> None:
    first = await import_failures.record(conn, "loja", "order", "77", "unknown SKU X", {"id": 77}, NOW)
    again = await import_failures.record(conn, "loja", "order", "77", "unknown SKU Y", {"id": 77}, NOW)
    assert first == again
    [failure] = await import_failures.list_open(conn, channel="loja")
    assert (failure.attempts, failure.error, failure.raw) == (2, "unknown SKU Y", {"id": 77})
    assert await import_failures.open_remote_ids(conn, "loja", "order") == ["77"]
    assert await import_failures.count_open(conn) == {("loja", "order"): 1}
    assert await import_failures.resolve(conn, "loja", "order", "77")
    assert await import_failures.list_open(conn) == []
    await import_failures.record(conn, "loja", "order", "77", "broke again", None, NOW)
    assert await import_failures.dismiss(conn, first)
    assert await import_failures.list_open(conn) == []


async def test_tokens_commit_at_once_and_never_show_in_repr(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    await tokens.save_tokens(conn, "ml", "ACCESS-SECRET", "REFRESH-SECRET", NOW + timedelta(hours=6), NOW)
    assert not conn.in_transaction
    other = sqlite3.connect(db_path)  # durable: another connection sees it at once
    try:
        row = other.execute("SELECT refresh_token FROM channel_tokens WHERE channel = 'ml'").fetchone()
    finally:
        other.close()
    assert row == ("REFRESH-SECRET",)
    loaded = await tokens.load_tokens(conn, "ml")
    assert loaded is not None and loaded.refresh_token == "REFRESH-SECRET"
    assert loaded.expires_at == NOW + timedelta(hours=6)
    assert "SECRET" not in repr(loaded) and "SECRET" not in str(loaded)


async def test_never_integrated_products(conn: aiosqlite.Connection) -> None:
    a = await product(conn, "A1")
    b = await product(conn, "B1")
    await product(conn, "OFF", sync_enabled=False)
    await bindings.set_binding(conn, "loja", "product", a, "li-1")
    found = await problems.never_integrated(conn)
    assert [(p.channel, p.sku) for p in found] == [("loja", "B1"), ("ml", "A1"), ("ml", "B1")]
    page = await problems.never_integrated(conn, limit=1, after=("loja", b))
    assert [(p.channel, p.product_id) for p in page] == [("ml", a)]


def test_fallback_validators_agree_with_known_values() -> None:
    assert _fallback_validate_document(VALID_CPF) == "52998224725"
    assert _fallback_validate_document(VALID_CNPJ) == "11222333000181"
    with pytest.raises(ValueError, match="check digit"):
        _fallback_validate_document("529.982.247-24")
    assert _fallback_is_valid_nfe_key(nfe_key())
    assert not _fallback_is_valid_nfe_key(
        nfe_key()[:-1] + "0" if nfe_key()[-1] != "0" else nfe_key()[:-1] + "1"
    )
