"""Snapshots of the main screens at 80x24 and 160x48 (update with ``pytest --snapshot-update``).

Deterministic: the scenario is fixed, time is frozen at the scenario's "now" in a fixed zone, the header
shows no clock, and the real ControlServer serves the FakeRuntime from a background thread (the
snapshot plugin runs the app in its own event loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from daemon.controlapi.server import ControlServer
from tests.tui.fake_runtime import FakeRuntime
from tests.tui.tui_support import loaded, make_app, wait_until
from tui.app import StoresyncApp
from tui.connection import Backoff, LinkState

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
Snap = Callable[..., bool]


@pytest.fixture
def served(runtime: FakeRuntime, socket_path: Path) -> Iterator[Path]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="control-server", daemon=True)
    thread.start()
    server = ControlServer(runtime, socket_path, heartbeat_interval=1.0)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
    yield socket_path
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def settled(app: StoresyncApp, *keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_until(pilot, lambda: loaded(app), timeout=10)
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_channels(snap_compare: Snap, served: Path, size: tuple[int, int]) -> None:
    app = make_app(served)
    assert snap_compare(app, terminal_size=size, run_before=settled(app))


@pytest.mark.parametrize("size", SIZES)
def test_log(snap_compare: Snap, served: Path, size: tuple[int, int]) -> None:
    app = make_app(served)
    assert snap_compare(app, terminal_size=size, run_before=settled(app, "2"))


@pytest.mark.parametrize("size", SIZES)
def test_problems(snap_compare: Snap, served: Path, size: tuple[int, int]) -> None:
    app = make_app(served)
    assert snap_compare(app, terminal_size=size, run_before=settled(app, "3"))


def test_channels_in_english(snap_compare: Snap, served: Path) -> None:
    app = make_app(served, locale="en")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled(app))


def test_channels_in_16_colours(snap_compare: Snap, served: Path) -> None:
    """The ansi theme: ok/warning/error in the terminal's own green/yellow/red."""
    app = make_app(served, theme="ansi-dark")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled(app))


def test_help(snap_compare: Snap, served: Path) -> None:
    app = make_app(served)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled(app, "f1"))


def test_log_filters_fit_80x24(snap_compare: Snap, served: Path) -> None:
    app = make_app(served)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled(app, "2", "f"))


def test_disconnected(snap_compare: Snap, socket_path: Path) -> None:
    app = make_app(socket_path, backoff=Backoff(base=1000.0, cap=1000.0))

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_until(pilot, lambda: app.link.state is LinkState.DISCONNECTED)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
