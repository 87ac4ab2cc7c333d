"""Every control of the dashboard, driven with Pilot against the real ControlServer.

Each test checks the daemon's state (the runtime behind the socket), not only what the screen says.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from daemon.controlapi.server import ControlServer
from daemon.controlapi.wire import Parcel
from tests.tui.fake_runtime import T0, FakeRuntime
from tests.tui.tui_support import go_to_row, loaded, make_app, screen_text, wait_for_toast, wait_until
from tui.app import StoresyncApp
from tui.dialogs import ConfirmDialog, LinkDialog, SkuDialog
from tui.screen_help import HelpScreen

pytestmark = pytest.mark.usefixtures("server")
SIZE = (120, 36)


async def test_sync_now_on_the_selected_flow(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await go_to_row(pilot, "channel-table", "loja/stock")
        await pilot.press("s")
        severity, text = await wait_for_toast(pilot, app, "sync requested")
    assert runtime.sync_requests == [("loja", "stock")]
    assert severity == "information"
    assert "Sincronizar agora: loja/stock" in text


async def test_sync_now_on_a_channel_and_on_everything(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await go_to_row(pilot, "channel-table", "meli")
        await pilot.press("s")
        await wait_until(pilot, lambda: len(runtime.sync_requests) == 1)
        await pilot.press("a")
        await wait_for_toast(pilot, app, "sync requested: everything")
    assert runtime.sync_requests == [("meli", None), (None, None)]


async def test_pause_and_resume_a_channel(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await go_to_row(pilot, "channel-table", "loja")
        await pilot.press("p")
        await wait_until(pilot, lambda: runtime.channel("loja").paused)
        # The status event comes back over the stream and the row says so.
        table = app.channels_view.table
        await wait_until(pilot, lambda: table.get_cell("loja", "state").plain == "pausado")
        await pilot.press("p")
        await wait_until(pilot, lambda: not runtime.channel("loja").paused)
        await wait_until(pilot, lambda: table.get_cell("loja", "state").plain == "ocioso")
    assert [name for name, _ in runtime.calls] == ["pause", "resume"]


async def test_pause_and_resume_one_flow(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await go_to_row(pilot, "channel-table", "loja/orders")
        await pilot.press("p")
        await wait_until(pilot, lambda: runtime.flow("loja", "orders").state == "paused")
        assert not runtime.channel("loja").paused
        await wait_until(
            pilot, lambda: app.channels_view.table.get_cell("loja/orders", "state").plain == "pausado"
        )
        await pilot.press("p")
        await wait_until(pilot, lambda: runtime.flow("loja", "orders").state == "idle")
    assert runtime.calls == [("pause", ("loja", "orders")), ("resume", ("loja", "orders"))]


async def test_push_stock_by_sku(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("k")
        await wait_until(pilot, lambda: isinstance(app.screen, SkuDialog))
        await pilot.press("enter")  # empty: refused in the dialog, nothing sent
        assert "Digite um SKU." in screen_text(app)
        await pilot.press(*"CAN-002", "enter")
        await wait_for_toast(pilot, app, "stock of CAN-002 queued")
    assert runtime.stock_pushes == ["CAN-002"]


async def test_an_unknown_sku_shows_the_daemons_error(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("k", *"NOPE", "enter")
        severity, text = await wait_for_toast(pilot, app, "unknown SKU")
    assert severity == "error"
    assert "Enviar estoque de NOPE falhou" in text
    assert runtime.calls == [("push_stock", ("NOPE",))]


async def test_cancelled_dialog_sends_nothing(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("k", *"CAN", "escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, SkuDialog))
        await pilot.press("ctrl+r")  # a later action goes through: the cancelled one never did
        await wait_until(pilot, lambda: runtime.reloads == 1)
    assert runtime.calls == [("reload", ())]


async def test_reload_settings(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path, locale="en")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("ctrl+r")
        _, text = await wait_for_toast(pilot, app, "settings reloaded")
    assert runtime.reloads == 1
    assert text.startswith("Reload settings")


async def test_retry_one_outbox_item(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("3")
        await go_to_row(pilot, "problems-table", "outbox:32")
        await pilot.press("r")
        await wait_until(pilot, lambda: runtime.outbox_items[1].state == "pending")
        # The list is fetched again after the action: the item is no longer a problem.
        await wait_until(pilot, lambda: "outbox:32" not in app.problems_view.rows)
    assert runtime.outbox_items[0].state == "failed"
    assert runtime.calls == [("retry_outbox", ([32], None))]


async def test_retry_all_asks_first(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("3", "R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("escape")  # "no"
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        assert runtime.calls == []
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.click("#yes")
        await wait_for_toast(pilot, app, "2 outbox item(s) queued again")
    assert [i.state for i in runtime.outbox_items] == ["pending", "pending"]
    assert runtime.calls == [("retry_outbox", (None, None))]


async def test_dismiss_an_import_failure(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("3")
        await go_to_row(pilot, "problems-table", "outbox:31")
        await pilot.press("d")  # not an import failure: explained, nothing sent
        await wait_for_toast(pilot, app, "Só falhas de importação podem ser descartadas.")
        await go_to_row(pilot, "problems-table", "import:5")
        await pilot.press("d")
        await wait_until(pilot, lambda: runtime.import_failures[0].state == "dismissed")
        await wait_until(pilot, lambda: "import:5" not in app.problems_view.rows)
    assert runtime.calls == [("dismiss_import_failure", (5,))]


async def test_retry_an_import_failure_runs_the_pull_flow_now(
    socket_path: Path, runtime: FakeRuntime
) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("3")
        await go_to_row(pilot, "problems-table", "import:5")
        await pilot.press("r")
        await wait_until(pilot, lambda: bool(runtime.sync_requests))
        await go_to_row(pilot, "problems-table", "never:vtex:7")
        await pilot.press("r")
        await wait_until(pilot, lambda: len(runtime.sync_requests) == 2)
    assert runtime.sync_requests == [("meli", "orders"), ("vtex", "products")]


async def test_command_palette_has_an_entry_for_every_action(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        names = {c.name for c in app.palette_commands()}
        for expected in (
            "Sincronizar agora: tudo",
            "Sincronizar agora: loja",
            "Sincronizar agora: loja/stock",
            "Pausar loja",
            "Pausar loja/orders",
            "Retomar vtex",  # vtex is paused: the palette offers the way back
            "Enviar estoque de um produto (por SKU)…",
            "Recarregar config.",
            "Reenviar todos os itens com falha",
            "Editar filtros do log…",
            "Mostrar ajuda",
        ):
            assert expected in names
        await pilot.press("ctrl+p")
        await pilot.press(*"Retomar vtex")
        await wait_until(pilot, lambda: "Retomar vtex" in screen_text(app))
        await pilot.press("enter")
        await wait_until(pilot, lambda: not runtime.channel("vtex").paused)
    assert runtime.calls == [("resume", ("vtex", None))]


async def test_help_screen_and_mouse(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "Pausar ou retomar o canal ou fluxo selecionado" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        # Tabs and rows answer the mouse.
        await pilot.click("Tab#--content-tab-problems")
        await wait_until(pilot, lambda: app.query_one("TabbedContent").active == "problems")  # type: ignore[attr-defined]
        await pilot.click("Tab#--content-tab-channels")
        await pilot.click("#channel-table", offset=(4, 4))  # the 4th row: loja/prices
        await wait_until(pilot, lambda: str(app.channels_view.table.selected) == "loja/prices")
        await pilot.press("s")
        await wait_until(pilot, lambda: runtime.sync_requests == [("loja", "prices")])
        assert not app.ui.tr.missing


async def test_actions_say_so_when_the_daemon_is_down(
    socket_path: Path, runtime: FakeRuntime, server: ControlServer
) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await server.stop()
        await pilot.press("a")
        severity, text = await wait_for_toast(pilot, app, "o serviço não está rodando")
        await wait_until(pilot, lambda: "desconectado" in app.sub_title)
    assert severity == "error"
    assert "Sincronizar agora: tudo falhou" in text
    assert runtime.sync_requests == []


async def test_ctrl_c_quits(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0
    assert runtime.calls == []


async def test_a_narrow_footer_keeps_help_and_quit(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path, locale="en")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await wait_until(pilot, lambda: "q Quit" in footer_line(app))  # the footer draws after the table
        assert "f1 Help" in footer_line(app)
        assert "Push stock" not in footer_line(app)
        await pilot.press("k")  # left out of the footer, not out of reach
        await wait_until(pilot, lambda: isinstance(app.screen, SkuDialog))
        await pilot.press("escape")
        await pilot.resize_terminal(160, 48)
        await wait_until(pilot, lambda: "k Push stock" in footer_line(app))
        assert "^r Reload settings" in footer_line(app)


def footer_line(app: StoresyncApp) -> str:
    return screen_text(app).rstrip().splitlines()[-1]


async def test_an_open_problems_tab_sees_a_change_that_keeps_the_counts(
    socket_path: Path, runtime: FakeRuntime
) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("3")
        await wait_until(pilot, lambda: "outbox:31" in app.problems_view.rows)
        # Item 31 went through and item 33 failed within the same status beat: still one failed.
        runtime.outbox_items[0] = runtime.outbox_items[0].model_copy(update={"id": 33, "sku": "CAN-002"})
        runtime.publish_status()
        await wait_until(pilot, lambda: "outbox:33" in app.problems_view.rows)
        assert "outbox:31" not in app.problems_view.rows


async def test_a_status_that_arrives_while_the_dashboard_closes_is_ignored(
    socket_path: Path, runtime: FakeRuntime
) -> None:
    """Seen under load: the daemon's status landed after the detail pane had been torn down."""
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        view = app.channels_view
        await view.query_one("#channel-detail").remove()
        await view.show(await runtime.status())  # raised NoMatches before
        view.tick()
        assert view.status is not None


async def test_a_parcel_that_came_back_is_listed_with_the_carriers_words(
    socket_path: Path, runtime: FakeRuntime
) -> None:
    runtime.parcels = [
        Parcel(
            shipment_id=9,
            channel="loja",
            order_id=77,
            order_number="1077",
            carrier="correios_pac",
            tracking_code="QP123456785BR",
            status="returned",
            event="Objeto devolvido ao remetente",
            since=T0 - timedelta(hours=3),
            checked_at=T0 - timedelta(minutes=20),
        )
    ]
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("3")
        await go_to_row(pilot, "problems-table", "parcel:9")
        table = app.problems_view.table
        cells = [str(c) for c in table.get_row("parcel:9")]
        assert cells[:4] == ["encomenda", "loja", "pedido 1077 · QP123456785BR", "devolvida"]
        summary = str(app.query_one("#problems-summary").render())
        assert "Encomendas: 1" in summary
        assert "Objeto devolvido ao remetente" in str(app.query_one("#problems-detail").render())
        await pilot.press("r")  # nothing to re-send: the carrier is asked again on its own schedule
        await wait_for_toast(pilot, app, "próxima execução de rastreio")
    assert runtime.sync_requests == [] and runtime.calls == []


async def test_link_a_never_integrated_product_by_hand(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("3")
        await go_to_row(pilot, "problems-table", "import:5")
        await pilot.press("l")  # not a never-integrated product: explained, nothing asked
        await wait_for_toast(pilot, app, "Só produtos nunca integrados podem ser vinculados à mão.")
        await go_to_row(pilot, "problems-table", "never:vtex:7")
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LinkDialog))
        await pilot.press("enter")  # empty: said so, the dialog stays
        assert isinstance(app.screen, LinkDialog)
        await pilot.press(*"MLB-4242", "enter")
        await wait_until(pilot, lambda: bool(runtime.calls))
    assert runtime.calls == [("link_product", ("KIT-PRESENTE", "vtex", "MLB-4242"))]
