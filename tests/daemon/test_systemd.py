"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.secrets import SECRETS
from daemon.systemd import Notifier, watchdog_interval


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths must stay under ~108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="ssn-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture
def listener(short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(short_dir / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_no_socket_means_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready("up") is False
    assert notifier.watchdog() is False


def test_messages_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_env(
        {"NOTIFY_SOCKET": path},
    )
    assert notifier.enabled

    assert notifier.ready("2 channels")
    assert received(sock) == {"READY": "1", "STATUS": "2 channels", "MAINPID": str(os.getpid())}
    assert notifier.status("syncing\nloja")
    assert received(sock) == {"STATUS": "syncing loja"}
    assert notifier.watchdog()
    assert received(sock) == {"WATCHDOG": "1"}
    assert notifier.stopping("draining")
    assert received(sock) == {"STOPPING": "1", "STATUS": "draining"}
    assert notifier.extend_timeout(15_000_000)
    assert received(sock) == {"EXTEND_TIMEOUT_USEC": "15000000"}
    notifier.close()


def test_reloading_carries_the_monotonic_time(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(path, monotonic_usec=lambda: 123_456_789)
    assert notifier.reloading()
    assert received(sock) == {"RELOADING": "1", "MONOTONIC_USEC": "123456789"}
    default = Notifier(path)
    before = int(__import__("time").clock_gettime_ns(__import__("time").CLOCK_MONOTONIC) // 1000)
    assert default.reloading()
    assert int(received(sock)["MONOTONIC_USEC"]) >= before
    notifier.close()
    default.close()


def test_status_never_carries_a_known_secret(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    SECRETS.register("status-secret-9876")
    notifier = Notifier(path)
    assert notifier.status("auth failed with status-secret-9876")
    assert received(sock) == {"STATUS": "auth failed with ***"}
    notifier.close()


def test_abstract_socket_address() -> None:
    name = f"storesync-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog()
        assert received(sock) == {"WATCHDOG": "1"}
        notifier.close()
    finally:
        sock.close()


def test_send_failure_is_reported_not_raised(short_dir: Path, listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(str(short_dir / "nobody-listens"))
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    notifier = Notifier(path)
    assert notifier.watchdog() is True
    assert received(sock) == {"WATCHDOG": "1"}
    notifier.close()


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}) is None
