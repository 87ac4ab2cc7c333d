"""A small harness for the fault suite: the real daemon as a subprocess, simulators in the test's loop.

The daemon runs as ``python -m daemon run`` (so it can be killed with SIGKILL and its stdout/stderr
scanned); the Loja Integrada simulators run inside the test's event loop, so a test drives them through
their Python hooks and reads what they received without another process. The ERP side is written the
way a real ERP would: plain SQL into the documented tables of ``storesync.db``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
from aiohttp import web

from channels.simulators.correios import CorreiosSimulator
from channels.simulators.lojaintegrada import LojaIntegradaSimulator
from daemon.controlapi.client import ControlClient, ControlClientError
from daemon.controlapi.wire import ChannelStatus, DaemonStatus
from daemon.store import catalog, stock
from daemon.store.db import open_state_db

PYTHON = sys.executable
STATUS_MAPPING = {
    "paid": "pedido_pago",
    "picking": "pedido_em_separacao",
    "awaiting_payment": "aguardando_pagamento",
    "placed": "pedido_efetuado",
    "invoiced": "faturado",
    "shipped": "pedido_enviado",
    "delivered": "pedido_entregue",
    "cancelled": "pedido_cancelado",
}
ORDER_STATUSES = ("pedido_pago", "aguardando_pagamento", "pedido_efetuado", "pedido_em_separacao")
SIM_RATE = 100_000


# --- waiting ---------------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


@contextlib.contextmanager
def short_tmpdir(prefix: str = "ssf-") -> Iterator[Path]:
    """A fresh folder under /tmp: short enough for a Unix socket path, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- settings ----------------------------------------------------------------------------------------


def new_secret(label: str) -> str:
    """A distinctive secret value, easy to search for in every output afterwards."""
    return f"{label}-{secrets.token_hex(12)}"


@dataclass
class ChannelSpec:
    name: str
    base_url: str
    api_key: str
    app_key: str
    extra: dict[str, Any] = field(default_factory=dict)
    """More keys for ``[channels.<name>]`` (connector options included)."""
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_key_file: Path | None = None
    """Give the api key as ``file:PATH`` (a systemd credential) instead of ``env:NAME``."""

    @property
    def env(self) -> dict[str, str]:
        keys = {self.app_env: self.app_key}
        if self.api_key_file is None:
            keys[self.api_env] = self.api_key
        return keys

    @property
    def api_key_ref(self) -> str:
        return f"file:{self.api_key_file}" if self.api_key_file is not None else f"env:{self.api_env}"

    @property
    def api_env(self) -> str:
        return f"SSF_{self.name.upper()}_API_KEY"

    @property
    def app_env(self) -> str:
        return f"SSF_{self.name.upper()}_APP_KEY"

    @property
    def secrets(self) -> tuple[str, str]:
        return (self.api_key, self.app_key)


@dataclass
class CarrierSpec:
    """A Correios carrier channel (``[channels.correios]``) tracking the sales channels' parcels."""

    base_url: str
    user: str
    access_code: str
    card: str = "0067599079"
    name: str = "correios"
    carriers: tuple[str, ...] = ("correios_pac",)
    tracking_interval: str = "1s"

    @property
    def env(self) -> dict[str, str]:
        return {"SSF_CORREIOS_USER": self.user, "SSF_CORREIOS_ACCESS": self.access_code}

    @property
    def secrets(self) -> tuple[str, str]:
        return (self.user, self.access_code)

    def table(self) -> list[str]:
        lines = _table(
            f"channels.{self.name}",
            {
                "kind": "correios",
                "base_url": self.base_url,
                "client_id": "env:SSF_CORREIOS_USER",
                "client_secret": "env:SSF_CORREIOS_ACCESS",
                "cartao_postagem": self.card,
                "carriers": list(self.carriers),
                "rate_limit": "6000/min",
                "backoff_base_seconds": 0.05,
                "backoff_max_seconds": 0.5,
            },
        )
        return lines + _table(
            f"channels.{self.name}.flows.tracking", {"interval": self.tracking_interval, "batch_size": 50}
        )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _table(name: str, values: Mapping[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{key} = {_toml_value(value)}" for key, value in values.items()), ""]


DEFAULT_FLOWS: dict[str, dict[str, Any]] = {
    "orders": {"interval": "2s", "batch_size": 50},
    "stock": {"interval": "30s", "batch_size": 100},
    "prices": {"interval": "5m", "batch_size": 100},
    "products": {"interval": "5m", "batch_size": 100},
    "order_updates": {"interval": "5m", "batch_size": 50},
}


def settings_text(
    state_dir: Path,
    channels: Sequence[ChannelSpec],
    *,
    daemon: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    carrier: CarrierSpec | None = None,
) -> str:
    lines = _table(
        "daemon",
        {
            "state_dir": str(state_dir),
            "log_level": "info",
            "locale": "en",
            "shutdown_timeout": "3s",
            "watchdog": False,
            **(daemon or {}),
        },
    )
    lines += _table(
        "defaults",
        {
            "timeout": "2s",
            "max_retries": 2,
            "circuit_breaker_failures": 5,
            "circuit_breaker_cooldown": "2s",
            "outbox_max_attempts": 8,
            "cursor_lookback": "10m",
            **(defaults or {}),
        },
    )
    for spec in channels:
        lines += _table(
            f"channels.{spec.name}",
            {
                "kind": "lojaintegrada",
                "base_url": spec.base_url,
                "api_key": spec.api_key_ref,
                "app_key": f"env:{spec.app_env}",
                "rate_limit": "6000/min",
                "order_statuses": list(ORDER_STATUSES),
                "create_missing_products": False,
                "stock_warehouses": ["MAIN"],
                "sale_warehouse": "MAIN",
                "backoff_base_seconds": 0.05,
                "backoff_max_seconds": 0.5,
                **spec.extra,
            },
        )
        lines += _table(f"channels.{spec.name}.mappings.status", STATUS_MAPPING)
        for flow, values in {**DEFAULT_FLOWS, **spec.flows}.items():
            lines += _table(f"channels.{spec.name}.flows.{flow}", values)
    if carrier is not None:
        lines += carrier.table()
    return "\n".join(lines)


# --- the daemon process ------------------------------------------------------------------------------


class DaemonProc:
    """``storesync run`` as a child process; stdout/stderr go to files that accumulate over restarts."""

    def __init__(
        self, config: Path, env: Mapping[str, str], workdir: Path, *, socket_path: Path | None = None
    ) -> None:
        self.config = config
        self._socket_path = socket_path
        self.env = {**os.environ, **env}
        self.workdir = workdir
        self.stdout_path = workdir / "daemon.out"
        self.stderr_path = workdir / "daemon.err"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def socket_path(self) -> Path:
        return self._socket_path or self.workdir / "var" / "control.sock"

    async def start(self) -> None:
        assert self.proc is None or self.proc.returncode is not None, "already running"
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                PYTHON,
                "-m",
                "daemon",
                "--config",
                str(self.config),
                "run",
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=self.workdir,
            )
        self.starts += 1

    async def run_to_exit(self, timeout: float = 30.0) -> int:
        """Start and wait for the process to end by itself (start-up failures)."""
        await self.start()
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def wait_ready(self, timeout: float = 20.0) -> None:
        async def up() -> bool:
            if self.proc is None or self.proc.returncode is not None:
                raise AssertionError(f"the daemon exited ({self.returncode}):\n{self.output()[-3000:]}")
            try:
                async with ControlClient(self.socket_path, timeout=2.0) as client:
                    await client.status()
            except ControlClientError:
                return False
            return True

        await eventually(up, timeout=timeout, interval=0.05, what="the daemon's control socket")

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no clean-up of any kind happens in the daemon."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self.kill()
        return self.proc.returncode

    def output(self) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(parts)

    def stderr(self) -> str:
        return (
            self.stderr_path.read_text(encoding="utf-8", errors="replace")
            if self.stderr_path.exists()
            else ""
        )

    def client(self, timeout: float = 10.0) -> ControlClient:
        return ControlClient(self.socket_path, timeout=timeout)

    async def status(self) -> DaemonStatus:
        async with self.client() as client:
            return await client.status()

    async def channel_status(self, name: str) -> ChannelStatus:
        status = await self.status()
        return next(ch for ch in status.channels if ch.name == name)


# --- a whole setup -----------------------------------------------------------------------------------


@dataclass
class Setup:
    """One daemon, its simulators (by channel name) and where everything lives."""

    workdir: Path
    daemon: DaemonProc
    sims: dict[str, TamperingSimulator]
    specs: dict[str, ChannelSpec]
    skus: list[str]
    carrier: CorreiosSimulator | None = None
    carrier_spec: CarrierSpec | None = None

    @property
    def state_db(self) -> Path:
        return self.workdir / "var" / "storesync.db"

    @property
    def log_db(self) -> Path:
        return self.workdir / "var" / "storesync-log.db"

    @property
    def secret_values(self) -> list[str]:
        """Every configured secret, the carrier's credentials included."""
        values = [value for spec in self.specs.values() for value in spec.secrets]
        return values + list(self.carrier_spec.secrets if self.carrier_spec else ())


class TamperingSimulator(LojaIntegradaSimulator):
    """The simulator, plus what a real platform sometimes sends: order details edited by the test
    (an invalid CPF, a negative quantity, a status nobody knows) and pages that repeat an order.

    A subclass in the test suite rather than options in the simulator: only the fault suite needs it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tamper: dict[int, Callable[[dict[str, Any]], None]] = {}
        """numero -> a function that edits the order's JSON detail as served."""
        self.repeat_in_page: set[int] = set()
        """Orders listed twice in a row by ``pedido/search``."""
        self.echo_credentials = False
        """Error answers quote the request's credentials back (as some platforms' do): a 401 fault
        says which key it refused, and stock writes to ``refuse_stock_for`` fail with a 400 that does."""
        self.refuse_stock_for: set[int] = set()

    def _echo(self, request: web.Request) -> str:
        return f"credenciais recusadas: {request.headers.get('Authorization', '')} ({request.path_qs})"

    async def _serve_fault(self, request: web.Request, fault: Any) -> web.StreamResponse:
        if self.echo_credentials and fault.kind == "401":
            return web.json_response({"error_message": self._echo(request)}, status=401)
        return await super()._serve_fault(request, fault)

    async def _h_stock_put(self, request: web.Request) -> web.Response:
        ident = request.match_info["ident"]
        if self.echo_credentials and ident.isdigit() and int(ident) in self.refuse_stock_for:
            return web.json_response({"error_message": self._echo(request)}, status=400)
        return await super()._h_stock_put(request)

    def _order_detail(self, order: dict[str, Any]) -> dict[str, Any]:
        detail = super()._order_detail(order)
        edit = self.tamper.get(int(order["numero"]))
        if edit is not None:
            edit(detail)
        return detail

    def _page(self, request: web.Request, objects: Sequence[Any], **options: Any) -> web.Response:  # type: ignore[override]
        listed: list[Any] = []
        for obj in objects:
            listed.append(obj)
            if isinstance(obj, dict) and "numero" in obj and int(obj["numero"]) in self.repeat_in_page:
                listed.append(obj)
        return super()._page(request, listed, **options)


def make_simulator(api_key: str, app_key: str, **kwargs: Any) -> TamperingSimulator:
    """No rate limit to speak of, no seeded orders, a dozen products, unless the test says otherwise."""
    options: dict[str, Any] = {"rate_limit_per_minute": SIM_RATE, "orders": 0, "products": 12, "seed": 7}
    options.update(kwargs)
    return TamperingSimulator(api_key, app_key, **options)


@contextlib.asynccontextmanager
async def running_setup(
    channel_names: Sequence[str],
    *,
    sim_options: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    flows: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    daemon: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    stock_per_sku: int = 40,
    start: bool = True,
    state_dir_size: int | None = None,
    file_secrets: Sequence[str] = (),
    carrier: Mapping[str, Any] | None = None,
) -> AsyncIterator[Setup]:
    """Simulators up, catalog seeded straight into the ERP database, the daemon started (and ready).

    ``state_dir_size`` puts the state folder on a tmpfs of that many bytes (a disk that can fill up).
    ``carrier`` (simulator options, ``{}`` for none) adds a Correios simulator and a carrier channel
    tracking ``correios_pac`` parcels.
    Everything started here is stopped on the way out, also when the test fails.
    """
    with short_tmpdir() as workdir:
        sims: dict[str, TamperingSimulator] = {}
        specs: dict[str, ChannelSpec] = {}
        proc: DaemonProc | None = None
        carrier_sim: CorreiosSimulator | None = None
        carrier_spec: CarrierSpec | None = None
        state_dir = workdir / "var"
        mounted = False
        try:
            state_dir.mkdir()
            if state_dir_size is not None:
                mount_tmpfs(state_dir, state_dir_size)
                mounted = True
            for name in channel_names:
                api_key, app_key = new_secret(f"api{name}"), new_secret(f"app{name}")
                sim = make_simulator(api_key, app_key, **dict((sim_options or {}).get(name, {})))
                url = await sim.start("127.0.0.1", 0)
                sims[name] = sim
                specs[name] = ChannelSpec(
                    name,
                    url,
                    api_key,
                    app_key,
                    extra=dict((extra or {}).get(name, {})),
                    flows={k: dict(v) for k, v in (flows or {}).get(name, {}).items()},
                )
                if name in file_secrets:
                    key_file = workdir / "credentials" / f"{name}_api_key"
                    key_file.parent.mkdir(mode=0o700, exist_ok=True)
                    key_file.write_text(api_key + "\n", encoding="utf-8")
                    specs[name].api_key_file = key_file
            if carrier is not None:
                user, access = new_secret("usuario"), new_secret("acesso")
                carrier_sim = CorreiosSimulator(user, access, cartao_postagem=CarrierSpec.card, **carrier)
                carrier_spec = CarrierSpec(await carrier_sim.start("127.0.0.1", 0), user, access)
            first = next(iter(sims.values()))
            skus = sorted(str(p["sku"]) for p in first.state()["products"])
            await seed_catalog(state_dir / "storesync.db", skus, stock_per_sku)
            config = workdir / "settings.toml"
            config.write_text(
                settings_text(
                    state_dir, list(specs.values()), daemon=daemon, defaults=defaults, carrier=carrier_spec
                ),
                encoding="utf-8",
            )
            env: dict[str, str] = {}
            for spec in specs.values():
                env.update(spec.env)
            if carrier_spec is not None:
                env.update(carrier_spec.env)
            proc = DaemonProc(config, env, workdir)
            setup = Setup(workdir, proc, sims, specs, skus, carrier_sim, carrier_spec)
            if start:
                await proc.start()
                await proc.wait_ready()
            yield setup
        finally:
            if proc is not None:
                await proc.stop()
            for sim in sims.values():
                await sim.stop()
            if carrier_sim is not None:
                await carrier_sim.stop()
            if mounted:
                unmount(state_dir)


# --- parcels (a setup with a carrier) -------------------------------------------------------------


def shipment(setup: Setup, code: str) -> tuple[str, str]:
    """(the shipment's tracking state, its order's local status)."""
    rows = query(
        setup.state_db,
        "SELECT s.status, o.status FROM shipments s JOIN orders o ON o.id = s.order_id "
        "WHERE s.tracking_code = ?",
        (code,),
    )
    return (str(rows[0][0]), str(rows[0][1])) if rows else ("", "")


async def ship(setup: Setup, channel: str) -> str:
    """A paid order on the sales channel, imported, then shipped by PAC with a code the carrier has
    just posted; returns the code once the daemon has tracked it as posted."""
    sales = setup.sims[channel]
    [numero] = sales.create_orders(1, items=[(setup.skus[0], 1)], status="pedido_pago")
    imported = "SELECT COUNT(*) FROM orders WHERE channel = ? AND remote_id = ?"
    await eventually(
        lambda: bool(query(setup.state_db, imported, (channel, str(numero)))[0][0]),
        timeout=20,
        what=f"order {numero} imported",
    )
    assert setup.carrier is not None
    code = setup.carrier.post_object(story="delivered")
    async with setup.daemon.client() as client:
        result = await client.tracking_add(channel, str(numero), code, carrier="correios_pac")
    assert result.ok, result
    await eventually(
        lambda: shipment(setup, code)[0] == "posted", timeout=20, what=f"{code} tracked as posted"
    )
    return code


def can_mount() -> bool:
    """Mounting a tmpfs needs CAP_SYS_ADMIN (root in most CI containers, not everywhere)."""
    with short_tmpdir("ssf-mnt-") as probe:
        try:
            mount_tmpfs(probe, 64 * 1024)
        except (OSError, subprocess.CalledProcessError):
            return False
        unmount(probe)
        return True


def mount_tmpfs(path: Path, size: int, *, read_only: bool = False) -> None:
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        check=True,
        capture_output=True,
        timeout=10,
    )


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=10)


# --- the ERP side ----------------------------------------------------------------------------------------


async def seed_catalog(db_path: Path, skus: Sequence[str], stock_per_sku: int) -> None:
    """The ERP's catalog (same SKUs as the channels), written before the daemon first starts."""
    conn = await open_state_db(db_path)
    try:
        await stock.ensure_warehouse(conn, "MAIN")
        lines = ["sku,name,list_price,sale_price,stock,warehouse"]
        lines += [f"{sku},Produto {sku},{49 + i}.90,,{stock_per_sku},MAIN" for i, sku in enumerate(skus)]
        report = await catalog.import_products_csv(conn, "\n".join(lines) + "\n", default_warehouse="MAIN")
        assert not report.errors, report.errors
    finally:
        await conn.close()


def erp_connect(db_path: Path, timeout: float = 30.0) -> sqlite3.Connection:
    """The ERP's own connection: plain sqlite3, autocommit, waits for locks like any client should."""
    conn = sqlite3.connect(db_path, timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def erp_move_stock(db_path: Path, sku: str, delta: int, reference: str = "fault-suite") -> None:
    """One stock movement by plain SQL, as the ERP writes it (the triggers queue the pushes)."""
    conn = erp_connect(db_path)
    try:
        conn.execute(
            "INSERT INTO stock_movements (product_id, warehouse_id, delta, reason, reference) "
            "SELECT p.id, w.id, ?, 'adjust', ? FROM products p, warehouses w "
            "WHERE p.sku = ? AND w.code = 'MAIN'",
            (delta, reference, sku),
        )
    finally:
        conn.close()


async def atp_by_sku(db_path: Path, warehouses: Sequence[str] = ("MAIN",), buffer: int = 0) -> dict[str, int]:
    """Available-to-promise per SKU, computed the daemon's way on a read-only connection."""
    async with aiosqlite.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA busy_timeout = 5000")
        rows = await conn.execute_fetchall("SELECT id, sku FROM products WHERE sync_enabled = 1")
        ids = {int(r["id"]): str(r["sku"]) for r in rows}
        figures = await stock.available_to_promise(conn, list(ids), list(warehouses), buffer)
    return {ids[pid]: figure.quantity for pid, figure in figures.items()}


def sim_stock(sim: LojaIntegradaSimulator) -> dict[str, int]:
    return {str(p["sku"]): int(p["estoque"]["quantidade"]) for p in sim.state()["products"]}


def query(db_path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def log_events(
    log_db: Path, event: str, *, channel: str | None = None, after_id: int = 0
) -> list[dict[str, Any]]:
    """Rows of the daemon's sync log with this event name (``data`` decoded)."""
    sql = "SELECT id, channel, data FROM sync_log WHERE event = ? AND id > ?"
    params: list[Any] = [event, after_id]
    if channel is not None:
        sql += " AND channel = ?"
        params.append(channel)
    rows = query(log_db, sql + " ORDER BY id", params)
    return [{"id": r[0], "channel": r[1], "data": json.loads(r[2]) if r[2] else {}} for r in rows]


def last_log_id(log_db: Path) -> int:
    rows = query(log_db, "SELECT COALESCE(MAX(id), 0) FROM sync_log")
    return int(rows[0][0])
