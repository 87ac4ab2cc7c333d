"""The real daemon process talks to systemd: READY=1 once serving, WATCHDOG=1 at half the interval
systemd asks for, STATUS lines, and STOPPING=1 on SIGTERM before a clean exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

from channels.simulators.lojaintegrada import LojaIntegradaSimulator

ROOT = Path(__file__).resolve().parents[2]


def settings_text(state_dir: Path, base_url: str) -> str:
    return f"""
[daemon]
state_dir = "{state_dir}"
[channels.loja]
kind = "lojaintegrada"
base_url = "{base_url}"
api_key = "env:T_API"
app_key = "env:T_APP"
rate_limit = "6000/min"
"""


async def test_daemon_notifies_ready_watchdog_and_stopping() -> None:
    sim = LojaIntegradaSimulator(
        "k-api-123456", "k-app-123456", orders=2, products=3, rate_limit_per_minute=10_000
    )
    await sim.start()
    tmp = Path(tempfile.mkdtemp(dir="/tmp", prefix="sd"))
    notify_path = tmp / "n.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.setblocking(False)
    (tmp / "settings.toml").write_text(settings_text(tmp / "state", sim.url))
    env = {
        **os.environ,
        "T_API": "k-api-123456",
        "T_APP": "k-app-123456",
        "NOTIFY_SOCKET": str(notify_path),
        "WATCHDOG_USEC": "400000",  # 0.4 s: pings every 0.2 s
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", "--config", str(tmp / "settings.toml"), "run",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    async def receive_until(predicate_text: str, count: int = 1) -> None:
        async with asyncio.timeout(20):
            while sum(predicate_text in m for m in seen) < count:
                data = await loop.sock_recv(listener, 4096)
                seen.extend(data.decode().splitlines())

    try:
        await receive_until("READY=1")
        await receive_until("WATCHDOG=1", count=3)
        assert any(line.startswith("STATUS=") for line in seen)
        proc.send_signal(signal.SIGTERM)
        await receive_until("STOPPING=1")
        async with asyncio.timeout(20):
            code = await proc.wait()
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        listener.close()
        await sim.stop()
    assert seen.index("READY=1") < seen.index("STOPPING=1")
