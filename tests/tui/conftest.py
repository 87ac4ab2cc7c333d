"""Fixtures for the dashboard tests: the real ControlServer on a short temporary socket, backed by
FakeRuntime (fast, every edge case); ``tests/tui/live_daemon.py`` starts the real daemon instead, and
``tmux`` gives the terminal tests a real terminal to look at."""

from __future__ import annotations

import os
import shutil
import subprocess
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


@pytest.fixture(scope="session")
def tmux() -> str:
    """The tmux binary; installed with apt-get when missing and we are root, else the test is skipped."""
    found = shutil.which("tmux")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("tmux is not installed and installing it needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "tmux"],
            check=True,
            capture_output=True,
            timeout=300,
            env=env,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"tmux is not installed and apt-get could not install it: {exc}")
    found = shutil.which("tmux")
    if not found:
        pytest.skip("apt-get ran but tmux is still not on PATH")
    return found
