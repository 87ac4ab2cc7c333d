"""Every control of the dashboard, driven with Pilot against the real daemon and a loopback simulator.

Each test asserts what the daemon itself reports afterwards (through its own control client, not the
app under test) and, where it reaches the channel, what the simulator received. The fake-runtime tests
cover the edge cases; these prove the whole path works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from tests.tui.live_daemon import (
    CHANNEL,
    ERP_SKUS,
    FLOWS,
    GHOST_SKU,
    SIM_ONLY_SKU,
    LiveDaemon,
    catalog_csv,
    live_daemon,
    settings_text,
)
from tests.tui.tui_support import go_to_row, loaded, make_app, wait_for_toast, wait_until
from tui.app import StoresyncApp
from tui.dialogs import ConfirmDialog, SkuDialog
from tui.fmt import system_now

pytestmark = pytest.mark.e2e
SIZE = (120, 36)


@pytest.fixture
async def live() -> AsyncIterator[LiveDaemon]:
    async with live_daemon() as daemon:
        yield daemon


def dashboard(live: LiveDaemon) -> StoresyncApp:
    return make_app(live.socket_path, now=system_now, poll_interval=0.5)


def ran_after(before: dict[str, datetime | None], after: dict[str, datetime | None], flow: str) -> bool:
    previous, current = before.get(flow), after.get(flow)
    return current is not None and (previous is None or current > previous)


async def test_sync_now_runs_one_flow_one_channel_and_everything(live: LiveDaemon) -> None:
    await live.settled()
    app = dashboard(live)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app), timeout=10)

        before = await live.last_runs()
        await go_to_row(pilot, "channel-table", "loja/orders")
        await pilot.press("s")

        async def orders_ran() -> bool:
            return ran_after(before, await live.last_runs(), "orders")

        await live.eventually(orders_ran, "loja/orders ran after 'sync now'")
        after = await live.last_runs()
        assert after["stock"] == before["stock"], "only the selected flow runs"
        assert after["order_updates"] == before["order_updates"]
        await wait_for_toast(pilot, app, "sincronização de orders solicitada para loja")

        await go_to_row(pilot, "channel-table", CHANNEL)
        for key, target in (("s", "the channel"), ("a", "everything")):
            before = await live.last_runs()
            await pilot.press(key)

            async def every_flow_ran(before: dict[str, datetime | None] = before) -> bool:
                after = await live.last_runs()
                return all(ran_after(before, after, flow) for flow in FLOWS)

            await live.eventually(every_flow_ran, f"every flow ran after 'sync now' on {target}")


async def test_pause_and_resume_a_channel_and_a_flow(live: LiveDaemon) -> None:
    app = dashboard(live)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app), timeout=10)
        table = app.channels_view.table

        async def channel_paused() -> bool:
            channel = await live.channel()
            return channel.paused and all(f.state == "paused" for f in channel.flows)

        async def channel_running() -> bool:
            channel = await live.channel()
            return not channel.paused and all(f.state != "paused" for f in channel.flows)

        await go_to_row(pilot, "channel-table", CHANNEL)
        await pilot.press("p")
        await live.eventually(channel_paused, "loja paused")
        await wait_until(pilot, lambda: table.get_cell(CHANNEL, "state").plain == "pausado", timeout=10)
        await pilot.press("p")  # the row says paused: the same key resumes
        await live.eventually(channel_running, "loja resumed")
        await wait_until(pilot, lambda: table.get_cell(CHANNEL, "state").plain != "pausado", timeout=10)

        async def orders_state(expected: bool) -> bool:
            return ((await live.flow("orders")).state == "paused") is expected

        await go_to_row(pilot, "channel-table", "loja/orders")
        await pilot.press("p")
        await live.eventually(lambda: orders_state(True), "loja/orders paused")
        channel = await live.channel()
        assert not channel.paused, "pausing a flow leaves its channel running"
        assert next(f for f in channel.flows if f.flow == "stock").state != "paused"
        await wait_until(pilot, lambda: table.get_cell("loja/orders", "state").plain == "pausado", timeout=10)

        # Resume through the command palette this time: the same control, another way in.
        await pilot.press("ctrl+p", *"Retomar loja/orders")
        await wait_until(
            pilot, lambda: any(c.name == "Retomar loja/orders" for c in app.palette_commands()), timeout=5
        )
        await pilot.press("enter")
        await live.eventually(lambda: orders_state(False), "loja/orders resumed")
        await wait_for_toast(pilot, app, "loja/orders retomado")


async def test_push_one_products_stock_by_sku(live: LiveDaemon) -> None:
    await live.settled()
    sku = "SKU-0002"
    received_before = len(live.sim.stock_history(sku))
    await live.client.pause(CHANNEL, flow="stock")  # hold the push so the queued row can be seen
    app = dashboard(live)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app), timeout=10)
        await pilot.press("k")
        await wait_until(pilot, lambda: isinstance(app.screen, SkuDialog))
        await pilot.press(*sku, "enter")
        await wait_for_toast(pilot, app, f"{sku}: estoque na fila para loja")  # the daemon speaks pt_BR

        async def queued() -> bool:
            return bool(await live.outbox_rows(sku, "pending"))

        await live.eventually(queued, f"a pending stock row for {sku}")

        await live.client.resume(CHANNEL, flow="stock")

        async def received() -> bool:
            return len(live.sim.stock_history(sku)) > received_before

        await live.eventually(received, f"the channel received {sku}'s stock")
        product = live.sim.product_by_sku(sku)
        assert product is not None
        assert live.sim.stock_history(sku)[-1]["quantidade"] == ERP_SKUS[sku]

        # A SKU the ERP does not know: the daemon refuses and the dashboard says so; nothing is queued.
        await pilot.press("k", *"NOPE-9", "enter")
        severity, _ = await wait_for_toast(pilot, app, "NOPE-9")
        assert severity == "error"
        assert await live.outbox_rows("NOPE-9") == []


async def test_reload_settings(live: LiveDaemon) -> None:
    app = dashboard(live)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app), timeout=10)
        first = await live.status()
        assert (await live.flow("orders")).interval_seconds == 600
        base_url = live.sim.url
        live.config.write_text(
            settings_text(live.root / "var", base_url, orders_interval="7m"), encoding="utf-8"
        )
        await pilot.press("ctrl+r")

        async def reloaded() -> bool:
            status = await live.status()
            return status.settings_loaded_at != first.settings_loaded_at

        await live.eventually(reloaded, "settings_loaded_at changed")
        assert (await live.flow("orders")).interval_seconds == 420, "the new file is in force"
        await wait_for_toast(pilot, app, "configurações recarregadas")

        # A broken file is refused: the daemon keeps the settings it has and the dashboard says why.
        second = await live.status()
        live.config.write_text("[daemon\n", encoding="utf-8")
        await pilot.press("ctrl+r")
        severity, _ = await wait_for_toast(pilot, app, "configurações não recarregadas")
        assert severity == "error"
        status = await live.status()
        assert status.settings_loaded_at == second.settings_loaded_at
        assert status.last_reload_error
        assert (await live.flow("orders")).interval_seconds == 420


async def test_retry_a_parked_item_then_all_of_them(live: LiveDaemon) -> None:
    result = await live.client.import_products(catalog_csv({GHOST_SKU: 5}))
    assert result.ok, result

    async def parked() -> bool:
        return bool(await live.outbox_rows(GHOST_SKU, "parked"))

    await live.eventually(parked, f"{GHOST_SKU}'s stock parked (the channel does not have it)")
    item = (await live.outbox_rows(GHOST_SKU, "parked"))[0]
    assert "not on the channel" in (item.last_error or "")
    await live.client.pause(CHANNEL, flow="stock")  # so a retried row stays pending long enough to see

    app = dashboard(live)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app), timeout=10)
        await pilot.press("3")
        key = f"outbox:{item.id}"
        await wait_until(pilot, lambda: key in app.problems_view.rows, timeout=10)
        await go_to_row(pilot, "problems-table", key)
        await pilot.press("r")

        async def pending() -> bool:
            return [i.id for i in await live.outbox_rows(GHOST_SKU, "pending")] == [item.id]

        await live.eventually(pending, "the parked item is pending again")
        await wait_until(pilot, lambda: key not in app.problems_view.rows, timeout=10)

        # Let it fail again, then "retry all" (after the confirmation).
        await live.client.resume(CHANNEL, flow="stock")
        await live.eventually(parked, f"{GHOST_SKU} parked again")
        await live.client.pause(CHANNEL, flow="stock")
        await wait_until(pilot, lambda: key in app.problems_view.rows, timeout=10)
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.click("#yes")
        await live.eventually(pending, "every parked item is pending again")
        await wait_for_toast(pilot, app, "1 item(ns) na fila novamente")


async def test_dismiss_an_order_that_could_not_be_imported(live: LiveDaemon) -> None:
    # The ERP does not sell SKU-0004 and this channel may not create products: the order is parked.
    (numero,) = live.sim.create_orders(1, items=[(SIM_ONLY_SKU, 1)], status="pedido_pago")
    await live.client.sync(CHANNEL, flow="orders")

    async def failed_import() -> bool:
        problems = await live.client.problems()
        return any(f.remote_id == str(numero) for f in problems.import_failures)

    await live.eventually(failed_import, f"order {numero} in the import failures")
    failure = next(f for f in (await live.client.problems()).import_failures if f.remote_id == str(numero))

    app = dashboard(live)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app), timeout=10)
        await pilot.press("3")
        key = f"import:{failure.id}"
        await wait_until(pilot, lambda: key in app.problems_view.rows, timeout=10)
        await go_to_row(pilot, "problems-table", key)

        # "Retry" on an import failure runs the orders pull now; the order still cannot be imported.
        before = await live.last_runs()
        await pilot.press("r")

        async def orders_run_finished() -> bool:
            flow = await live.flow("orders")
            return ran_after(before, {"orders": flow.last_run_at}, "orders") and flow.state == "idle"

        await live.eventually(orders_run_finished, "the orders flow ran for the retry")
        assert await failed_import()

        await pilot.press("d")

        async def dismissed() -> bool:
            return not await failed_import()

        await live.eventually(dismissed, f"import failure {failure.id} dismissed")
        await wait_until(pilot, lambda: key not in app.problems_view.rows, timeout=10)
        await wait_for_toast(pilot, app, f"falha de importação {failure.id} descartada")

    # The next pull fetches the same order again (the window overlaps): it stays dismissed.
    before = await live.last_runs()
    await live.client.sync(CHANNEL, flow="orders")
    await live.eventually(orders_run_finished, "another orders run")
    assert not await failed_import()
