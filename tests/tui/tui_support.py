"""Helpers shared by the dashboard tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from fake_runtime import T0
from textual.pilot import Pilot

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
