"""The Log tab against the real ControlServer: filters reach the server, paging uses the keyset cursor,
live rows arrive once, details show everything, and the window never grows past its bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Select

from daemon.controlapi.server import ControlServer
from daemon.controlapi.wire import LogPage
from tests.tui.fake_runtime import T0, FakeRuntime, scenario_logs
from tests.tui.tui_support import loaded, make_app, screen_text, wait_until
from tui.dialog_detail import LogDetailDialog
from tui.dialog_filter import FilterDialog
from tui.view_log import FILL_ROWS, PAGE_SIZE, WINDOW_ROWS

SIZE = (120, 36)
NO_FILTER = {
    "channel": None,
    "flow": None,
    "level": None,
    "entity": None,
    "entity_id": None,
    "since": None,
    "until": None,
    "q": None,
}


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime(logs=scenario_logs(1200))


@pytest.mark.usefixtures("server")
async def test_first_page_then_older_pages_by_cursor(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        view = app.log_view
        assert runtime.log_queries == [{**NO_FILTER, "cursor": None, "limit": PAGE_SIZE}]
        assert [r.id for r in view.window.rows[:2]] == [1200, 1199]
        first_cursor = view.window.older_cursor
        assert first_cursor == 1001

        await pilot.press("2", "o")
        await wait_until(pilot, lambda: len(runtime.log_queries) == 2 and not view.loading)
        assert runtime.log_queries[-1]["cursor"] == first_cursor
        assert len(view.window.rows) == 2 * PAGE_SIZE

        # Scrolling to the end asks for more by itself; the window stays bounded and leaves the head.
        await pilot.press("end")
        await wait_until(pilot, lambda: len(runtime.log_queries) == 3 and not view.loading)
        assert runtime.log_queries[-1]["cursor"] == 801
        assert len(view.window.rows) == WINDOW_ROWS
        assert view.table.row_count == WINDOW_ROWS
        assert not view.window.at_head

        # Away from the head, live rows are counted, not shown; Home brings the newest back.
        runtime.add_log("while_reading_history")
        await wait_until(pilot, lambda: view.window.unseen == 1)
        assert "1 novas, tecle Home" in screen_text(app)
        await pilot.press("home")
        await wait_until(pilot, lambda: view.window.at_head and not view.loading)
        assert view.window.rows[0].event == "while_reading_history"
        assert runtime.log_queries[-1]["cursor"] is None


@pytest.mark.usefixtures("server")
async def test_live_rows_appear_on_top_once(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("2")
        new = [runtime.add_log(f"live_{i}") for i in range(3)]
        view = app.log_view
        await wait_until(pilot, lambda: view.window.rows[0].id == new[-1].id)
        ids = [r.id for r in view.window.rows]
        assert ids[:4] == [new[2].id, new[1].id, new[0].id, 1200]
        assert len(ids) == len(set(ids))
        assert view.table.cell_text(0, "event") == "live_2"


@pytest.mark.usefixtures("server")
async def test_filters_are_sent_to_the_server_and_applied_to_live_rows(
    socket_path: Path, runtime: FakeRuntime
) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("2", "f")
        await wait_until(pilot, lambda: isinstance(app.screen, FilterDialog))
        dialog = app.screen
        dialog.query_one("#channel", Select).value = "loja"
        dialog.query_one("#level", Select).value = "warning"
        dialog.query_one("#entity", Input).value = "order"
        dialog.query_one("#q", Input).value = "CPF"
        dialog.query_one("#since", Input).value = "25/01/2026 13:30"
        dialog.query_one("#until", Input).value = "2026-01-25 14:00"
        await pilot.click("#apply")
        view = app.log_view
        await wait_until(pilot, lambda: len(runtime.log_queries) == 2 and not view.loading)
        assert runtime.log_queries[-1] == {
            **NO_FILTER,
            "channel": "loja",
            "level": "warning",
            "entity": "order",
            "q": "CPF",
            "since": datetime(2026, 1, 25, 16, 30, tzinfo=UTC),
            "until": datetime(2026, 1, 25, 17, 0, tzinfo=UTC),
            "cursor": None,
            "limit": PAGE_SIZE,
        }
        rows = view.window.rows
        assert rows and all(r.channel == "loja" and r.level == "error" for r in rows)
        assert "Canal=loja Nível≥warning" in screen_text(app)

        # Live rows go through the same filter (this one is too late for "until").
        late = runtime.add_log("order_import_failed", level="error", entity="order", error="CPF")
        await wait_until(pilot, lambda: app.connection.last_log_id == late.id)
        view.flush_live()
        assert view.window.rows == rows

        await pilot.press("c")
        await wait_until(pilot, lambda: len(runtime.log_queries) == 3 and not view.loading)
        assert runtime.log_queries[-1] == {**NO_FILTER, "cursor": None, "limit": PAGE_SIZE}


@pytest.mark.usefixtures("server")
async def test_a_date_that_cannot_be_read_is_named_and_nothing_is_sent(
    socket_path: Path, runtime: FakeRuntime
) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("2", "slash")
        await wait_until(pilot, lambda: isinstance(app.screen, FilterDialog))
        assert app.screen.focused is app.screen.query_one("#q", Input)
        app.screen.query_one("#since", Input).value = "ontem"
        await pilot.click("#apply")
        await wait_until(pilot, lambda: "Desde: não entendi 'ontem'" in screen_text(app))
        assert isinstance(app.screen, FilterDialog)
        app.screen.query_one("#since", Input).value = "2h"
        await pilot.click("#since")
        await pilot.press("enter")  # Enter in a field applies the form
        await wait_until(pilot, lambda: len(runtime.log_queries) == 2)
    assert runtime.log_queries[-1]["since"] == T0 - timedelta(hours=2)


@pytest.mark.usefixtures("server")
async def test_selecting_a_row_shows_all_its_data(socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("2", "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, LogDetailDialog))
        text = screen_text(app)
        assert "Registro 1199 do log" in text
        assert '"remote_id": "10234"' in text
        assert "run-239" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, LogDetailDialog))


async def test_log_shows_the_error_and_recovers_when_the_daemon_returns(
    socket_path: Path, runtime: FakeRuntime
) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "desconectado" in app.sub_title)
        assert not app.log_view.loaded
        server = ControlServer(runtime, socket_path, heartbeat_interval=0.5)
        await server.start()
        try:
            await wait_until(pilot, lambda: loaded(app))
        finally:
            await server.stop()
        assert app.log_view.window.rows[0].id == 1200


class BudgetedRuntime(FakeRuntime):
    """Answers like the real log query when its time budget runs out: short pages with a cursor."""

    async def query_logs(self, **kwargs: Any) -> LogPage:
        page = await super().query_logs(**kwargs)
        rows = page.rows[:5]
        return LogPage(rows=rows, next_cursor=rows[-1].id if rows else page.next_cursor)


async def test_short_pages_are_followed_up_to_a_screenful(socket_path: Path) -> None:
    runtime = BudgetedRuntime(logs=scenario_logs(1200))
    server = ControlServer(runtime, socket_path, heartbeat_interval=0.5)
    await server.start()
    try:
        app = make_app(socket_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: loaded(app) and not app.log_view.loading)
            queries = runtime.log_queries
            assert len(app.log_view.window.rows) == FILL_ROWS
            assert len(queries) == FILL_ROWS // 5
            cursors = [q["cursor"] for q in queries]
            assert cursors == [None, *(1196 - 5 * i for i in range(FILL_ROWS // 5 - 1))]
    finally:
        await server.stop()
