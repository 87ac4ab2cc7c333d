"""The dashboard through a daemon restart: says "disconnected", retries, comes back by itself, and shows
each log row exactly once (the stream resumes after the last id it saw)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Header

from daemon.controlapi.server import ControlServer
from daemon.events import EventBus
from tests.tui.fake_runtime import FakeRuntime
from tests.tui.tui_support import loaded, make_app, screen_text, wait_until
from tui.connection import LinkState


async def test_restart_shows_disconnected_then_resumes_the_stream(
    socket_path: Path, runtime: FakeRuntime, server: ControlServer
) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("2")
        before = runtime.add_log("before_restart")
        await wait_until(pilot, lambda: app.log_view.window.rows[0].id == before.id)

        await server.stop()
        await wait_until(pilot, lambda: app.link.state is LinkState.DISCONNECTED)
        assert app.sub_title.startswith("desconectado: o serviço não está rodando · tentativa ")
        assert app.query_one(Header).has_class("-offline")
        assert "desconectado" in screen_text(app)

        # The new daemon writes rows before the dashboard reconnects; they must arrive, once.
        runtime.bus = EventBus(last_id=runtime.rows[-1].id)
        missed = [runtime.add_log(f"while_away_{i}") for i in range(3)]
        restarted = ControlServer(runtime, socket_path, heartbeat_interval=0.5)
        await restarted.start()
        try:
            await wait_until(pilot, lambda: app.link.state is LinkState.CONNECTED)
            assert app.sub_title == "conectado · 0.1.0"
            assert not app.query_one(Header).has_class("-offline")
            after = runtime.add_log("after_restart")
            await wait_until(pilot, lambda: app.log_view.window.rows[0].id == after.id)
        finally:
            await restarted.stop()
        ids = [r.id for r in app.log_view.window.rows]
        assert ids[:5] == [after.id, *(m.id for m in reversed(missed)), before.id]
        assert len(ids) == len(set(ids))


async def test_stream_down_but_daemon_up_polls_status(
    socket_path: Path, runtime: FakeRuntime, server: ControlServer
) -> None:
    app = make_app(socket_path, locale="en")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        runtime.bus.close()  # streams end at once; /status still answers
        await wait_until(pilot, lambda: app.link.state is LinkState.POLLING)
        assert app.sub_title == "connected (no live stream, polling)"
        assert app.query_one(Header).has_class("-polling")
        runtime.flow("loja", "orders").state = "circuit_open"  # only a poll can see this
        table = app.channels_view.table
        await wait_until(pilot, lambda: table.get_cell("loja/orders", "state").plain == "circuit open")
