"""Helpers shared by the dashboard tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.tui.fake_runtime import T0
from tui.app import StoresyncApp
from tui.connection import Backoff

SAO_PAULO = timezone(timedelta(hours=-3), "BRT")


def make_app(socket_path: Path, *, locale: str = "pt_BR", **overrides: Any) -> StoresyncApp:
    """The app with frozen time, a fixed zone and fast reconnects (nothing else differs from production)."""
    options: dict[str, Any] = {
        "locale": locale,
        "now": lambda: T0,
        "tz": SAO_PAULO,
        "theme": "textual-dark",
        "backoff": Backoff(base=0.05, cap=0.3),
        "poll_interval": 0.2,
        "tick_seconds": 3600.0,
    }
    options.update(overrides)
    return StoresyncApp(str(socket_path), **options)


async def wait_until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Lets the app run until ``condition`` holds; fails the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.01)


def loaded(app: StoresyncApp) -> bool:
    """Connected, with status, the first log page and the problems on screen."""
    return (
        app.link.up
        and app.status is not None
        and app.channels_view.table.row_count > 0
        and app.log_view.loaded
        and app.problems_view.problems is not None
    )


def screen_text(app: StoresyncApp) -> str:
    """The screen as plain text (what a user reads), for assertions on wording and layout."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, record=True, legacy_windows=False
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)


def toasts(app: StoresyncApp) -> list[tuple[str, str]]:
    """(severity, text) of each notification on screen (run the app with ``notifications=True``)."""
    from textual.widgets._toast import Toast

    found: list[tuple[str, str]] = []
    for toast in app.screen.query(Toast):
        severity = next(s for s in ("error", "warning", "information") if toast.has_class(f"-{s}"))
        found.append((severity, toast.render().plain))
    return found


async def wait_for_toast(pilot: Pilot[Any], app: StoresyncApp, text: str) -> tuple[str, str]:
    """Waits for a notification containing ``text``; returns (severity, full text)."""
    await wait_until(pilot, lambda: any(text in body for _, body in toasts(app)))
    return next(t for t in toasts(app) if text in t[1])


async def go_to_row(pilot: Pilot[Any], table_id: str, key: str) -> None:
    """Moves the table's cursor to the row ``key`` with the keyboard, as a user would."""
    from textual.widgets import DataTable

    table = pilot.app.query_one(f"#{table_id}", DataTable)
    table.focus()
    await pilot.press("ctrl+home")
    for _ in range(table.row_count):
        if table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == key:
            return
        await pilot.press("down")
    raise AssertionError(f"no row {key!r} in #{table_id}")
