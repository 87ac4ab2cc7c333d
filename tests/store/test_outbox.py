"""Change capture, coalescing, the version guard, failures and retries, channel mirroring."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import aiosqlite
import pytest

from daemon.store import outbox, prices, stock
from daemon.store.channels import sync_channels
from tests.store.store_support import NOW, outbox_rows, product


async def _clear(conn: aiosqlite.Connection) -> None:
    await conn.execute("DELETE FROM outbox")


async def test_two_movements_coalesce_into_one_pending_row(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1")
    await _clear(conn)
    await stock.add_movement(conn, pid, "MAIN", 5)
    await stock.add_movement(conn, pid, "MAIN", -2)
    assert await outbox_rows(conn, "stock", pid) == {"loja": ("pending", 2), "ml": ("pending", 2)}
    due = await outbox.claim_due(conn, "loja", "stock", 100, NOW)
    assert [(r.entity_id, r.version) for r in due] == [(pid, 2)]


async def test_a_change_during_the_push_stays_pending(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=5)
    claimed = await outbox.claim_due(conn, "loja", "stock", 100, NOW)
    assert [r.entity_id for r in claimed] == [pid]
    await stock.add_movement(conn, pid, "MAIN", -1)  # arrives while the push is on the wire
    assert await outbox.mark_sent(conn, claimed, NOW) == 0
    state, version = (await outbox_rows(conn, "stock", pid))["loja"]
    assert state == "pending" and version == claimed[0].version + 1
    again = await outbox.claim_due(conn, "loja", "stock", 100, NOW)
    assert await outbox.mark_sent(conn, again, NOW) == 1
    assert (await outbox_rows(conn, "stock", pid))["loja"][0] == "sent"
    assert await outbox.claim_due(conn, "loja", "stock", 100, NOW) == []
    # a later change sends it again
    await stock.add_movement(conn, pid, "MAIN", 3)
    assert [r.entity_id for r in await outbox.claim_due(conn, "loja", "stock", 100, NOW)] == [pid]


async def test_a_claim_takes_the_oldest_due_rows_across_pending_and_failed(
    conn: aiosqlite.Connection,
) -> None:
    """Oldest change first whether the row is pending or a failure whose retry time has come; the
    limit cuts the merged order, excluded ids are skipped, failures not yet due wait."""
    ids = [await product(conn, f"A{i}", on_hand=1) for i in range(6)]
    await _clear(conn)
    for age, pid in zip([50, 10, 40, 20, 30, 5], ids, strict=True):
        await conn.execute(
            "INSERT INTO outbox (channel, entity, entity_id, changed_at) VALUES ('loja', 'stock', ?, ?)",
            (pid, (NOW - timedelta(minutes=age)).isoformat()),
        )
    claimed = await outbox.claim_due(conn, "loja", "stock", 10, NOW)
    failed_due, failed_later = claimed[2], claimed[3]  # ages 30 and 20 minutes
    await outbox.mark_failed(conn, failed_due, "HTTP 503", NOW - timedelta(minutes=1), max_attempts=5)
    await outbox.mark_failed(conn, failed_later, "HTTP 503", NOW + timedelta(hours=1), max_attempts=5)
    oldest_first = [ids[0], ids[2], ids[4], ids[1], ids[5]]  # ages 50, 40, 30 (failed, due), 10, 5
    assert [r.entity_id for r in await outbox.claim_due(conn, "loja", "stock", 10, NOW)] == oldest_first
    assert [r.entity_id for r in await outbox.claim_due(conn, "loja", "stock", 3, NOW)] == oldest_first[:3]
    skip = [claimed[0].id, failed_due.id]
    rest = await outbox.claim_due(conn, "loja", "stock", 2, NOW, exclude=skip)
    assert [r.entity_id for r in rest] == [ids[2], ids[1]]


async def test_failures_back_off_then_park(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=1)
    [row] = await outbox.claim_due(conn, "loja", "stock", 10, NOW)
    state = await outbox.mark_failed(
        conn, row, "HTTP 503", NOW, max_attempts=3, backoff_base=10, rng=lambda: 1.0
    )
    assert state == "failed"
    assert await outbox.claim_due(conn, "loja", "stock", 10, NOW) == []
    due_at = await outbox.next_due_at(conn, "loja", "stock")
    assert due_at == NOW + timedelta(seconds=10)
    [row] = await outbox.claim_due(conn, "loja", "stock", 10, NOW + timedelta(seconds=10))
    assert row.attempts == 1
    assert (
        await outbox.mark_failed(conn, row, "HTTP 503", NOW, max_attempts=3, backoff_base=10, rng=lambda: 0.0)
        == "failed"
    )
    assert await outbox.next_due_at(conn, "loja", "stock") == NOW + timedelta(seconds=10)  # 20 s halved
    [row] = await outbox.claim_due(conn, "loja", "stock", 10, NOW + timedelta(hours=1))
    assert await outbox.mark_failed(conn, row, "HTTP 503 again", NOW, max_attempts=3) == "parked"
    assert await outbox.claim_due(conn, "loja", "stock", 10, NOW + timedelta(days=1)) == []
    [item] = await outbox.list_items(conn, state="parked")
    assert (item.sku, item.attempts, item.last_error) == ("A1", 3, "HTTP 503 again")
    assert await outbox.counts(conn) == {
        ("loja", "stock"): {"parked": 1},
        ("ml", "stock"): {"pending": 1},
        ("loja", "product"): {"pending": 1},
        ("ml", "product"): {"pending": 1},
    }
    assert await outbox.retry(conn, channel="loja") == 1
    [row] = await outbox.claim_due(conn, "loja", "stock", 10, NOW)
    assert (row.entity_id, row.attempts) == (pid, 0)


async def test_not_retryable_parks_at_once_and_failure_is_version_guarded(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=1)
    [row] = await outbox.claim_due(conn, "loja", "stock", 10, NOW)
    await stock.add_movement(conn, pid, "MAIN", 1)
    assert await outbox.mark_failed(conn, row, "old data", NOW, max_attempts=5) == "superseded"
    assert (await outbox_rows(conn, "stock", pid))["loja"][0] == "pending"
    [row] = await outbox.claim_due(conn, "loja", "stock", 10, NOW)
    assert (
        await outbox.mark_failed(conn, row, "SKU rejected", NOW, max_attempts=5, retryable=False) == "parked"
    )


async def test_new_change_revives_a_parked_row(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=1)
    [row] = await outbox.claim_due(conn, "loja", "stock", 10, NOW)
    await outbox.mark_failed(conn, row, "bad", NOW, max_attempts=1)
    await stock.add_movement(conn, pid, "MAIN", 1)
    [row] = await outbox.claim_due(conn, "loja", "stock", 10, NOW)
    assert row.attempts == 0


async def test_manual_enqueue_and_explanations(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1", on_hand=4)
    [row] = await outbox.claim_due(conn, "ml", "stock", 10, NOW)
    await outbox.mark_sent(conn, [row], NOW)
    assert await outbox.enqueue(conn, None, "stock", [pid]) == 2  # every enabled channel
    assert (await outbox_rows(conn, "stock", pid))["ml"] == ("pending", row.version + 1)
    with pytest.raises(ValueError, match="outbox entity"):
        await outbox.enqueue(conn, "ml", "stocks", [pid])  # type: ignore[arg-type]

    await outbox.record_pushed(conn, "ml", "stock", [(pid, 4, {"on_hand": {"MAIN": 4}})], NOW)
    explained = await outbox.explain(conn, "ml", "stock", pid)
    assert explained is not None
    assert (explained.value, explained.explanation, explained.pushed_at) == (4, {"on_hand": {"MAIN": 4}}, NOW)
    assert await outbox.explain(conn, "loja", "stock", pid) is None


async def test_sync_channels_queues_an_initial_push_once(conn: aiosqlite.Connection) -> None:
    a = await product(conn, "A1", on_hand=2)
    b = await product(conn, "B1", sync_enabled=False)
    await prices.set_price(conn, "A1", list_price=Decimal("10.00"))
    report = await sync_channels(
        conn,
        [("loja", "lojaintegrada", True), ("ml", "mercadolivre", True), ("shopee", "shopee", True)],
    )
    assert report.added == ["shopee"] and report.initial_push == {"shopee": 3}
    rows = await conn.execute_fetchall(
        "SELECT entity, entity_id FROM outbox WHERE channel = 'shopee' ORDER BY entity"
    )
    assert [(r["entity"], r["entity_id"]) for r in rows] == [("price", a), ("product", a), ("stock", a)]
    assert b not in {r["entity_id"] for r in rows}
    again = await sync_channels(
        conn,
        [("loja", "lojaintegrada", True), ("ml", "mercadolivre", True), ("shopee", "shopee", True)],
    )
    assert again.added == [] and again.initial_push == {}


async def test_disabled_channels_get_no_changes_and_a_full_push_when_enabled(
    conn: aiosqlite.Connection,
) -> None:
    pid = await product(conn, "A1", on_hand=2)
    report = await sync_channels(conn, [("loja", "lojaintegrada", True), ("ml", "mercadolivre", False)])
    assert report.disabled == ["ml"]
    await _clear(conn)
    await stock.add_movement(conn, pid, "MAIN", 1)
    assert set(await outbox_rows(conn, "stock", pid)) == {"loja"}
    report = await sync_channels(conn, [("loja", "lojaintegrada", True), ("ml", "mercadolivre", True)])
    assert report.enabled == ["ml"]
    assert (await outbox_rows(conn, "stock", pid))["ml"][0] == "pending"
    report = await sync_channels(conn, [("loja", "lojaintegrada", True)])
    assert report.removed == ["ml"]
    await stock.add_movement(conn, pid, "MAIN", 1)
    assert (await outbox_rows(conn, "stock", pid))["ml"] == ("pending", 1)  # untouched since removal
