"""Crash safety: SIGKILL the daemon at random moments while orders flow in and stock changes.

While the daemon is killed and restarted over and over (at random moments: during start-up, in the
middle of an order page, while a push is on the wire), the test keeps the world moving:

* new orders appear on the channel (random items and statuses, some outside the imported ones),
* orders already imported move on: cancelled (releases their reservation) or shipped (debits the
  sale warehouse exactly once),
* the ERP writes stock movements by plain SQL (it does not care whether the daemon is up).

Then one last start, the daemon settles, stops cleanly, and the test checks that

* every channel order in an imported status (and every imported order that moved on) is in the ERP
  exactly once, with its items exactly once and its current status,
* every shipped order was debited exactly once (one ``sale`` movement per product),
* every product's stock on the channel equals the ERP's available-to-promise for the channel,
* no order was parked and the database passes ``PRAGMA integrity_check``.

CI kills the daemon 20 times; ``-m slow`` does it 100 times with a denser stream of changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter

import pytest

from tests.faults.harness import (
    ORDER_STATUSES,
    STATUS_MAPPING,
    Setup,
    atp_by_sku,
    erp_move_stock,
    eventually,
    query,
    running_setup,
    sim_stock,
)

pytestmark = [pytest.mark.e2e]

CHANNEL = "loja"
ALL_STATUSES = (*ORDER_STATUSES, "pedido_enviado", "pedido_cancelado", "faturado")
LOCAL = {remote: local for local, remote in STATUS_MAPPING.items()}


class World:
    """The channel and the ERP going about their business, with a record of what was done."""

    def __init__(self, setup: Setup, rng: random.Random, pace: float) -> None:
        self.setup = setup
        self.rng = rng
        self.pace = pace
        self.moved: dict[int, str] = {}
        """Imported orders the channel moved on afterwards: numero -> new status."""
        self.orders_added = 0
        self.movements = 0

    async def add_orders(self, stop: asyncio.Event) -> None:
        sim = self.setup.sims[CHANNEL]
        while not stop.is_set():
            status = self.rng.choice(ALL_STATUSES)
            sim.create_orders(self.rng.randint(1, 2), status=status)
            self.orders_added += 1
            if self.rng.random() < 0.3:
                self.move_an_imported_order()
            await self._pause(stop)

    def move_an_imported_order(self) -> None:
        """Cancel or ship an order the ERP already has (so it must follow the channel's change)."""
        imported = {
            int(r[0])
            for r in query(
                self.setup.state_db,
                "SELECT remote_id FROM orders WHERE channel = ? AND stock_state = 'reserved'",
                (CHANNEL,),
            )
        }
        sim = self.setup.sims[CHANNEL]
        candidates = sorted(
            n for n in imported if n not in self.moved and sim.orders[n]["situacao"] in ORDER_STATUSES
        )
        if candidates:
            numero = self.rng.choice(candidates)
            new = self.rng.choice(["pedido_cancelado", "pedido_enviado"])
            sim.set_order_status(numero, new)
            self.moved[numero] = new

    async def move_stock(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            sku = self.rng.choice(self.setup.skus)
            await asyncio.to_thread(erp_move_stock, self.setup.state_db, sku, self.rng.randint(-2, 4))
            self.movements += 1
            await self._pause(stop)

    async def _pause(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.rng.uniform(0.5, 1.5) * self.pace)

    def expected_orders(self) -> dict[str, str]:
        """remote id -> local status the ERP must hold."""
        expected: dict[str, str] = {}
        for numero, order in self.setup.sims[CHANNEL].orders.items():
            if order["situacao"] in ORDER_STATUSES or numero in self.moved:
                expected[str(numero)] = LOCAL[order["situacao"]]
        return expected


async def kill_cycles(setup: Setup, cycles: int, rng: random.Random) -> Counter[str]:
    """Start, wait a random moment, SIGKILL; some kills land during start-up, most once it serves."""
    moments: Counter[str] = Counter()
    daemon = setup.daemon
    for _ in range(cycles):
        await daemon.start()
        if rng.random() < 0.25:
            moments["during start-up"] += 1
            with contextlib.suppress(TimeoutError):
                assert daemon.proc is not None
                await asyncio.wait_for(daemon.proc.wait(), rng.uniform(0.1, 1.0))
        else:
            moments["while running"] += 1
            await daemon.wait_ready()
            with contextlib.suppress(TimeoutError):
                assert daemon.proc is not None
                await asyncio.wait_for(daemon.proc.wait(), rng.uniform(0.0, 2.0))
        assert daemon.running, f"the daemon died by itself:\n{daemon.output()[-3000:]}"
        await daemon.kill()
    return moments


async def settled(setup: Setup, world: World) -> bool:
    expected = world.expected_orders()
    have = dict(query(setup.state_db, "SELECT remote_id, status FROM orders WHERE channel = ?", (CHANNEL,)))
    if have != expected:
        return False
    backlog = query(setup.state_db, "SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'failed')")
    if backlog[0][0]:
        return False
    return sim_stock(setup.sims[CHANNEL]) == await atp_by_sku(setup.state_db)


async def crash_run(cycles: int, pace: float, seed: int) -> None:
    rng = random.Random(seed)
    async with running_setup(
        [CHANNEL],
        start=False,
        sim_options={CHANNEL: {"orders": 25, "products": 12, "seed": seed}},
        flows={CHANNEL: {"orders": {"interval": "1s", "batch_size": 10}}},
        daemon={"shutdown_timeout": "2s"},
    ) as setup:
        world = World(setup, rng, pace)
        stop = asyncio.Event()
        feeders = [asyncio.create_task(world.add_orders(stop)), asyncio.create_task(world.move_stock(stop))]
        try:
            moments = await kill_cycles(setup, cycles, rng)
        finally:
            stop.set()
            await asyncio.gather(*feeders)
        assert sum(moments.values()) == cycles and world.orders_added and world.movements

        started = time.monotonic()
        await setup.daemon.start()
        await setup.daemon.wait_ready()
        try:
            await eventually(
                lambda: settled(setup, world), timeout=60, interval=0.25, what="the daemon to settle"
            )
        except AssertionError:
            have = dict(
                query(setup.state_db, "SELECT remote_id, status FROM orders WHERE channel = ?", (CHANNEL,))
            )
            expected = world.expected_orders()
            diff = {
                k: (have.get(k), expected.get(k))
                for k in set(have) | set(expected)
                if have.get(k) != expected.get(k)
            }
            raise AssertionError(
                f"not settled; orders off: {diff}\n{setup.daemon.output()[-2000:]}"
            ) from None
        settle_seconds = time.monotonic() - started
        assert await setup.daemon.stop() == 0
        check_ledger(setup, world)
        print(
            f"{cycles} kills ({dict(moments)}), {world.orders_added} order bursts, {len(world.moved)} moved, "
            f"{world.movements} stock movements; settled {settle_seconds:.1f} s after the last start"
        )


def check_ledger(setup: Setup, world: World) -> None:
    db = setup.state_db
    sim = setup.sims[CHANNEL]
    expected = world.expected_orders()
    rows = query(
        db, "SELECT remote_id, COUNT(*) FROM orders WHERE channel = ? GROUP BY remote_id", (CHANNEL,)
    )
    assert {remote: count for remote, count in rows if count != 1} == {}, "duplicated orders"
    assert {remote for remote, _ in rows} == set(expected), "orders missing or imported against the filter"

    items = query(
        db,
        "SELECT o.remote_id, oi.sku, oi.quantity FROM order_items oi JOIN orders o ON o.id = oi.order_id "
        "WHERE o.channel = ? ORDER BY o.remote_id, oi.sku",
        (CHANNEL,),
    )
    got: dict[str, list[tuple[str, int]]] = {}
    for remote, sku, quantity in items:
        got.setdefault(str(remote), []).append((str(sku), int(quantity)))
    for remote in expected:
        wanted = sorted((str(i["sku"]), int(i["quantidade"])) for i in sim.orders[int(remote)]["itens"])
        assert got.get(remote) == wanted, f"order {remote}: items {got.get(remote)} != channel's {wanted}"

    sales = query(
        db,
        "SELECT o.remote_id, m.product_id, COUNT(*) FROM stock_movements m "
        "JOIN orders o ON m.reference = 'order:' || o.id WHERE m.reason = 'sale' GROUP BY 1, 2",
    )
    assert all(count == 1 for _, _, count in sales), f"an order was debited twice: {sales}"
    debited = {str(remote) for remote, _, _ in sales}
    shipped = {str(n) for n, status in world.moved.items() if status == "pedido_enviado"}
    assert debited == shipped, f"debited {sorted(debited)} but shipped {sorted(shipped)}"

    failures = query(db, "SELECT remote_id, error FROM import_failures WHERE state = 'open'")
    assert failures == [], failures
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


async def test_kill_9_twenty_times_loses_and_duplicates_nothing() -> None:
    await crash_run(cycles=20, pace=0.3, seed=20)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_kill_9_a_hundred_times_loses_and_duplicates_nothing() -> None:
    await crash_run(cycles=100, pace=0.1, seed=100)
