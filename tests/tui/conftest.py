"""Fixtures for the dashboard tests: the real ControlServer on a short temporary socket, backed by
FakeRuntime. To run them against the real daemon and simulator, replace the ``runtime`` and ``server``
fixtures; the tests use only the Runtime protocol plus FakeRuntime's recorded calls and state."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from daemon.controlapi.server import ControlServer
from tests.tui.fake_runtime import FakeRuntime


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Unix socket paths must stay under ~108 bytes: a short directory straight under /tmp.
    path = Path(tempfile.mkdtemp(prefix="sst", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def socket_path(socket_dir: Path) -> Path:
    return socket_dir / "c.sock"


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
async def server(runtime: FakeRuntime, socket_path: Path) -> AsyncIterator[ControlServer]:
    srv = ControlServer(runtime, socket_path, heartbeat_interval=0.5)
    await srv.start()
    yield srv
    await srv.stop()
