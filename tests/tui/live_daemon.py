"""The real daemon for the dashboard tests: ``python -m daemon run`` on a temporary settings file, its
channel pointed at an in-process Loja Integrada simulator on 127.0.0.1.

The daemon runs as its own process (its logging, signals and event loop are process-wide, as in
production); the simulator runs in the test's event loop so a test can reach into it. Every assertion
about "the daemon's state" goes through a separate control client, never through the app under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from channels.simulators.lojaintegrada import LojaIntegradaSimulator
from daemon.controlapi.client import ControlClient, wait_for_daemon
from daemon.controlapi.wire import ChannelStatus, DaemonStatus, FlowStatus, OutboxItem

API_KEY = "test-chave-api"
APP_KEY = "test-chave-aplicacao"
CHANNEL = "loja"
FLOWS = ("order_updates", "orders", "stock")
ERP_SKUS = {"SKU-0001": 7, "SKU-0002": 8, "SKU-0003": 9}
"""The ERP's catalog and stock. The simulator also sells SKU-0004, which the ERP does not know."""
SIM_ONLY_SKU = "SKU-0004"
GHOST_SKU = "GHOST-1"
"""In the ERP but not on the channel: pushing its stock fails for good (the item is parked)."""

SETTINGS = """\
[daemon]
state_dir = "{state_dir}"
log_level = "info"
locale = "pt_BR"
shutdown_timeout = "3s"
watchdog = false

[defaults]
timeout = "5s"
max_retries = 0
outbox_max_attempts = 3

[channels.loja]
kind = "lojaintegrada"
base_url = "{base_url}"
api_key = "env:LOJA_CHAVE_API"
app_key = "env:LOJA_CHAVE_APLICACAO"
rate_limit = "6000/min"
order_statuses = ["pedido_pago"]
create_missing_products = false
stock_warehouses = ["MAIN"]
sale_warehouse = "MAIN"

[channels.loja.mappings.status]
paid = "pedido_pago"
shipped = "pedido_enviado"
cancelled = "pedido_cancelado"

[channels.loja.flows.orders]
interval = "{orders_interval}"
[channels.loja.flows.stock]
interval = "10m"
[channels.loja.flows.order_updates]
interval = "10m"
[channels.loja.flows.prices]
enabled = false
[channels.loja.flows.products]
enabled = false
"""


def settings_text(state_dir: Path, base_url: str, *, orders_interval: str = "10m") -> str:
    return SETTINGS.format(state_dir=state_dir, base_url=base_url, orders_interval=orders_interval)


def catalog_csv(stock: dict[str, int]) -> str:
    lines = ["sku,name,list_price,sale_price,stock,warehouse"]
    lines += [f"{sku},Produto {sku},49.90,,{quantity},MAIN" for sku, quantity in stock.items()]
    return "\n".join(lines) + "\n"


@dataclass
class LiveDaemon:
    root: Path
    config: Path
    socket_path: Path
    sim: LojaIntegradaSimulator
    client: ControlClient
    process: asyncio.subprocess.Process
    log_path: Path

    async def status(self) -> DaemonStatus:
        return await self.client.status()

    async def channel(self) -> ChannelStatus:
        status = await self.status()
        return next(c for c in status.channels if c.name == CHANNEL)

    async def flow(self, name: str) -> FlowStatus:
        channel = await self.channel()
        return next(f for f in channel.flows if f.flow == name)

    async def last_runs(self) -> dict[str, datetime | None]:
        channel = await self.channel()
        return {f.flow: f.last_run_at for f in channel.flows}

    async def outbox_rows(self, sku: str, state: str | None = None) -> list[OutboxItem]:
        """The channel's stock rows for ``sku`` (the catalog also queues product and price rows)."""
        items = await self.client.outbox(state=state, channel=CHANNEL)
        return [item for item in items if item.sku == sku and item.entity == "stock"]

    async def eventually(
        self, check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0
    ) -> None:
        """Waits until ``check`` holds (the app under test keeps running meanwhile) or fails the test."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await check():
            if loop.time() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s\n--- daemon log ---\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def settled(self) -> None:
        """Every flow has had its first run and the catalog's stock has gone out: nothing runs by itself
        until an interval (10 min) passes, so any later run was asked for."""

        async def quiet() -> bool:
            channel = await self.channel()
            flows = {f.flow: f for f in channel.flows}
            return (
                set(FLOWS) <= set(flows)
                and all(f.last_run_at is not None and f.state == "idle" for f in flows.values())
                and flows["stock"].pending == 0
            )

        await self.eventually(quiet, "the daemon's first runs")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no daemon log)"
        return "\n".join(text.splitlines()[-lines:])


def _child_env() -> dict[str, str]:
    """Our environment minus anything that would steer the daemon elsewhere (settings, systemd)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("STORESYNC_")
        and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env["LOJA_CHAVE_API"] = API_KEY
    env["LOJA_CHAVE_APLICACAO"] = APP_KEY
    return env


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=15)
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def live_daemon(*, catalog: dict[str, int] | None = None) -> AsyncIterator[LiveDaemon]:
    """Simulator, settings, daemon process, the ERP catalog loaded; everything stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix="ssr", dir="/tmp"))  # short: the socket path must stay < 108 bytes
    sim = LojaIntegradaSimulator(API_KEY, APP_KEY, rate_limit_per_minute=6000, products=4, orders=0, seed=3)
    process: asyncio.subprocess.Process | None = None
    client: ControlClient | None = None
    try:
        base_url = await sim.start("127.0.0.1", 0)
        config = root / "settings.toml"
        config.write_text(settings_text(root / "var", base_url), encoding="utf-8")
        log_path = root / "daemon.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "daemon",
                "--config",
                str(config),
                "run",
                env=_child_env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        socket_path = root / "var" / "control.sock"
        daemon = LiveDaemon(root, config, socket_path, sim, ControlClient(socket_path), process, log_path)
        client = daemon.client
        try:
            await wait_for_daemon(socket_path, timeout=20)
        except Exception as exc:
            raise AssertionError(f"the daemon did not start: {exc}\n{daemon.log_tail()}") from None
        result = await client.import_products(catalog_csv(ERP_SKUS if catalog is None else catalog))
        assert result.ok, result
        yield daemon
    finally:
        if client is not None:
            await client.close()
        if process is not None:
            await _stop(process)
        await sim.stop()
        shutil.rmtree(root, ignore_errors=True)
