"""sd_notify without libsystemd: one datagram per state change to ``$NOTIFY_SOCKET``.

Type=notify lets systemd know when the daemon is really ready (settings valid, database migrated,
control socket listening), show a one-line STATUS in ``systemctl status``, restart it when the
event loop stops answering (WATCHDOG=1), and give it more time while it drains on stop. Outside
systemd NOTIFY_SOCKET is unset and every call is a cheap no-op. Sending never blocks and never
raises: a lost status line must not take the daemon down.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

from daemon.secrets import SECRETS

log = structlog.get_logger("storesync.systemd")


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Talks to systemd's notification socket; a no-op when there is none."""

    def __init__(self, address: str | None, *, monotonic_usec: Callable[[], int] = _monotonic_usec) -> None:
        self._address = _socket_address(address) if address else None
        self._monotonic_usec = monotonic_usec
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when the kernel took it."""
        if self._address is None or not fields:
            return False
        message = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self._address)
        except OSError as exc:
            if not self._failing:  # say it once, not every watchdog tick
                log.warning("sd_notify_failed", error=f"{type(exc).__name__}: {exc.strerror or exc}")
            self._failing = True
            self.close()
            return False
        if self._failing:
            log.info("sd_notify_recovered")
            self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        fields: dict[str, str | int] = {"READY": 1}
        if status:
            fields["STATUS"] = status
        fields["MAINPID"] = os.getpid()
        return self.notify(**fields)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        fields: dict[str, str | int] = {"STOPPING": 1}
        if status:
            fields["STATUS"] = status
        return self.notify(**fields)

    def reloading(self, status: str | None = None) -> bool:
        """Start of a reload; systemd (>= 253) wants the monotonic time to match it with READY=1."""
        fields: dict[str, str | int] = {"RELOADING": 1, "MONOTONIC_USEC": self._monotonic_usec()}
        if status:
            fields["STATUS"] = status
        return self.notify(**fields)

    def extend_timeout(self, usec: int) -> bool:
        """Ask for ``usec`` more microseconds before a start/stop/reload timeout fires."""
        return self.notify(EXTEND_TIMEOUT_USEC=max(0, int(usec)))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(address: str) -> str | bytes:
    if address.startswith("@"):
        return b"\0" + address[1:].encode()  # abstract namespace
    return address


def _one_line(value: str | int) -> str:
    # A newline would start a new assignment; a secret must not reach the journal through STATUS.
    return SECRETS.redact(str(value)).replace("\r", " ").replace("\n", " ")


def watchdog_interval(environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked to ping.

    WATCHDOG_PID, when set, names the process systemd expects pings from; a child that inherited the
    environment must not ping on its parent's behalf.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "").strip()
    if not raw:
        return None
    expected_pid = env.get("WATCHDOG_PID", "").strip()
    if expected_pid:
        try:
            if int(expected_pid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000
