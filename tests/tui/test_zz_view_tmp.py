from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fake_runtime import FakeRuntime, scenario_logs
from tui_support import loaded, make_app, wait_until


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime(logs=scenario_logs(5000))


async def test_perf(server: Any, socket_path: Path, runtime: FakeRuntime) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: loaded(app))
        await pilot.press("2", "o")
        await wait_until(pilot, lambda: len(app.log_view.window.rows) == 400 and not app.log_view.loading)
        await pilot.press("o")
        await wait_until(pilot, lambda: len(app.log_view.window.rows) == 500 and not app.log_view.loading)
        rows = app.log_view.window.rows
        t = time.perf_counter()
        for _ in range(10):
            app.log_view.table.show_rows(rows)
            await pilot.pause()
        print("show_rows x10", time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(2000):
            runtime.add_log(f"burst_{i}")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.log_view.window.rows[0].event == "burst_1999", timeout=20)
        print("2000 live rows", time.perf_counter() - t)
