"""The orders completeness audit: an order the "changed since" pull never sees still reaches the ERP,
once, and is reported; the audit runs once per interval and costs one listing request a page."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from channels.base import PermanentError
from channels.models import FlowName
from daemon.clock import FakeClock
from daemon.store import import_failures, orders
from tests.daemon.conftest import World

HOUR = 3600.0


def search_requests(world: World) -> int:
    return int(world.sim.state()["counters"]["by_route"].get("GET /v1/pedido/search", 0))


def sku(world: World, index: int = 0) -> str:
    return str(world.sim.state()["products"][index]["sku"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def audited(world: World) -> World:
    world.config = replace(world.config, order_audit_interval=6 * HOUR, order_audit_window=26 * HOUR)
    return world


async def imported(world: World, remote_ids: list[int]) -> set[str]:
    async with world.db.read() as conn:
        return await orders.existing_remote_ids(conn, "loja", [str(n) for n in remote_ids])


async def test_the_audit_imports_an_order_the_pull_never_sees_and_reports_it(
    audited: World, clock: FakeClock
) -> None:
    world = audited
    world.sim.create_orders(1, items=[(sku(world), 1)], status="pedido_pago")
    await world.run(FlowName.ORDERS, clock=clock)  # the first pull: it only sets the audit's baseline
    late = world.sim.create_orders(
        1, items=[(sku(world), 1)], status="pedido_pago", modified_at=clock.now() - timedelta(days=3)
    )
    clock.advance(HOUR)
    result = await world.run(FlowName.ORDERS, clock=clock)
    assert result.done == 0 and not await imported(world, late)  # the pull's blind spot

    clock.advance(6 * HOUR)
    with structlog.testing.capture_logs() as logs:
        result = await world.run(FlowName.ORDERS, clock=clock)
    assert await imported(world, late) == {str(late[0])}
    assert result.done == 1
    missing = [e for e in logs if e["event"] == "orders.audit_missing"]
    assert missing and missing[0]["remote_ids"] == [str(late[0])] and missing[0]["log_level"] == "warning"
    (summary,) = [e for e in logs if e["event"] == "orders.audit"]
    assert (summary["listed"], summary["missing"], summary["imported"]) == (2, 1, 1)
    assert any(e["event"] == "order.imported_by_audit" for e in logs)

    listings = search_requests(world)
    clock.advance(HOUR)
    await world.run(FlowName.ORDERS, clock=clock)  # not due again: one pull request, no listing
    assert search_requests(world) == listings + 1
    async with world.db.read() as conn:
        [(count,)] = list(await conn.execute_fetchall("SELECT COUNT(*) FROM orders"))
    assert count == 2  # each imported once, never twice


async def test_the_audit_leaves_known_parked_and_unwanted_orders_alone(
    audited: World, clock: FakeClock
) -> None:
    world = audited
    known = world.sim.create_orders(2, items=[(sku(world), 1)], status="pedido_pago")
    await world.run(FlowName.ORDERS, clock=clock)
    assert await imported(world, known) == {str(n) for n in known}
    old = clock.now() - timedelta(days=3)
    unwanted = world.sim.create_orders(
        1, items=[(sku(world), 1)], status="aguardando_pagamento", modified_at=old
    )
    parked = world.sim.create_orders(1, items=[(sku(world, 1), 1)], status="pedido_pago", modified_at=old)
    async with world.db.write() as conn:  # parked: its product is unknown here (the retry deals with it)
        await conn.execute("UPDATE products SET sku = 'RENAMED' WHERE sku = ?", (sku(world, 1),))
        await import_failures.record(conn, "loja", "order", str(parked[0]), "unknown SKU", None, clock.now())
    clock.advance(7 * HOUR)
    fetched: list[str] = []
    original = world.connector.fetch_order

    async def counting_fetch(remote_id: str) -> Any:
        fetched.append(remote_id)
        return await original(remote_id)

    world.connector.fetch_order = counting_fetch  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        await world.run(FlowName.ORDERS, clock=clock)
    (summary,) = [e for e in logs if e["event"] == "orders.audit"]
    assert (summary["listed"], summary["known"], summary["parked"], summary["not_wanted"]) == (4, 2, 1, 1)
    assert summary["missing"] == 0
    assert not any(e["event"] == "orders.audit_missing" for e in logs)
    assert str(unwanted[0]) not in fetched  # the summary's status was enough to leave it out
    assert fetched == [str(parked[0])]  # by the parked retry alone, not again by the audit
    assert not await imported(world, unwanted)


async def test_a_failed_listing_never_holds_up_the_pull_and_is_tried_again_later(
    audited: World, clock: FakeClock
) -> None:
    world = audited
    world.sim.create_orders(1, items=[(sku(world), 1)], status="pedido_pago")
    await world.run(FlowName.ORDERS, clock=clock)
    late = world.sim.create_orders(
        1, items=[(sku(world), 1)], status="pedido_pago", modified_at=clock.now() - timedelta(days=3)
    )
    clock.advance(7 * HOUR)
    original = world.connector.list_orders
    listings: list[object] = []

    async def failing_list(**kwargs: Any) -> Any:
        listings.append(kwargs)
        raise PermanentError("GET /v1/pedido/search: HTTP 400: since_criado: parâmetro desconhecido")

    world.connector.list_orders = failing_list  # type: ignore[method-assign]
    fresh = world.sim.create_orders(1, items=[(sku(world), 1)], status="pedido_pago")
    with structlog.testing.capture_logs() as logs:
        await world.run(FlowName.ORDERS, clock=clock)  # the pull goes on
    assert await imported(world, fresh) == {str(fresh[0])}
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["orders.audit_failed"]
    clock.advance(5 * 60)
    await world.run(FlowName.ORDERS, clock=clock)
    assert len(listings) == 1  # not on every run
    world.connector.list_orders = original  # type: ignore[method-assign]
    clock.advance(11 * 60)
    await world.run(FlowName.ORDERS, clock=clock)
    assert await imported(world, late) == {str(late[0])}


async def test_an_interval_of_zero_turns_the_audit_off(world: World, clock: FakeClock) -> None:
    world.config = replace(world.config, order_audit_interval=0)
    await world.run(FlowName.ORDERS, clock=clock)
    late = world.sim.create_orders(
        1, items=[(sku(world), 1)], status="pedido_pago", modified_at=clock.now() - timedelta(days=3)
    )
    clock.advance(30 * 24 * HOUR)
    listings = search_requests(world)
    await world.run(FlowName.ORDERS, clock=clock)
    assert search_requests(world) == listings + 1  # the pull only
    assert not await imported(world, late)
