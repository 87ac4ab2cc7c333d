"""What every end-to-end test needs: a loopback simulator process, a settings file, the real daemon
process, and waits that poll a condition against a deadline (never a fixed sleep).

Everything lives in one short temporary folder per test (Unix socket paths must stay under 108
bytes), every process started here is stopped by :meth:`Harness.close` even when the test fails, and
a failing test shows the tail of each daemon's stdout/stderr (pytest prints teardown output only
for failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from daemon.controlapi.client import ControlClient, ControlClientError
from daemon.controlapi.wire import DaemonStatus, FlowStatus

T = TypeVar("T")

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[2]
CHANNEL = "loja"
API_KEY_ENV = "E2E_LOJA_CHAVE_API"
APP_KEY_ENV = "E2E_LOJA_CHAVE_APLICACAO"
HIGH_RATE = 100_000
"""Requests per minute for the simulator and the channel when a test is not about rate limits."""
SIM_STATUSES = (
    "pedido_pago",
    "aguardando_pagamento",
    "pedido_efetuado",
    "pedido_em_separacao",
    "pedido_enviado",
    "pedido_cancelado",
    "faturado",
)
"""Every status the simulator seeds orders with."""
PUSH_FLOWS = ("stock", "prices", "products", "order_updates")
ALL_FLOWS = ("orders", *PUSH_FLOWS)


class WaitTimeout(AssertionError):
    pass


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``check`` until it returns something truthy (returned) or ``timeout`` seconds pass.

    Exceptions of the ``ignore`` types count as "not yet" (e.g. a socket that is not up).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}; last: {last!r:.600}")
        time.sleep(interval)


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """The channel's credentials: random per test, so a scan for them cannot match by accident."""

    api_key: str = field(default_factory=lambda: "e2eApiKey-" + secrets.token_hex(12))
    app_key: str = field(default_factory=lambda: "e2eAppKey-" + secrets.token_hex(12))

    def env(self) -> dict[str, str]:
        return {API_KEY_ENV: self.api_key, APP_KEY_ENV: self.app_key}

    def values(self) -> tuple[str, str]:
        return (self.api_key, self.app_key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(tree: Mapping[str, Any], prefix: str = "") -> str:
    """Nested dicts as TOML tables (enough for settings files; TOML has no writer in the stdlib)."""
    lines = [f"{key} = {_toml_value(v)}" for key, v in tree.items() if not isinstance(v, Mapping)]
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tree.items():
        if isinstance(value, Mapping):
            name = f"{prefix}.{key}" if prefix else key
            text += f"\n[{name}]\n" + dump_toml(value, name)
    return text


def settings_tree(
    state_dir: Path,
    base_url: str,
    *,
    interval: str = "1h",
    order_statuses: Iterable[str] = SIM_STATUSES,
    shutdown_timeout: str = "3s",
) -> dict[str, Any]:
    """A settings file as a dict: every flow on ``interval``, rate limits out of the way."""
    return {
        "daemon": {
            "state_dir": str(state_dir),
            "log_level": "info",
            "locale": "en",
            "shutdown_timeout": shutdown_timeout,
            "watchdog": False,
        },
        "defaults": {
            "timeout": "5s",
            "max_retries": 3,
            "circuit_breaker_failures": 5,
            "circuit_breaker_cooldown": "2s",
            "outbox_max_attempts": 8,
            "cursor_lookback": "10m",
        },
        "channels": {
            CHANNEL: {
                "kind": "lojaintegrada",
                "enabled": True,
                "base_url": base_url,
                "api_key": f"env:{API_KEY_ENV}",
                "app_key": f"env:{APP_KEY_ENV}",
                "rate_limit": f"{HIGH_RATE}/min",
                "order_statuses": list(order_statuses),
                "link_by": "sku",
                "create_missing_products": True,
                "stock_warehouses": ["MAIN"],
                "sale_warehouse": "MAIN",
                "mappings": {
                    "status": {
                        "paid": "pedido_pago",
                        "picking": "pedido_em_separacao",
                        "awaiting_payment": "aguardando_pagamento",
                        "placed": "pedido_efetuado",
                        "invoiced": "faturado",
                        "shipped": "pedido_enviado",
                        "delivered": "pedido_entregue",
                        "cancelled": "pedido_cancelado",
                    }
                },
                "flows": {
                    flow: {"enabled": True, "interval": interval, "batch_size": 50} for flow in ALL_FLOWS
                },
            }
        },
    }


def write_toml(path: Path, tree: Mapping[str, Any]) -> Path:
    path.write_text(dump_toml(tree), encoding="utf-8")
    return path


def product_csv(rows: Iterable[tuple[str, int]], *, price: str = "49.90") -> str:
    lines = ["sku,name,list_price,sale_price,stock,warehouse"]
    lines += [f"{sku},Produto {sku},{price},,{qty},MAIN" for sku, qty in rows]
    return "\n".join(lines) + "\n"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without anything that would steer the daemon (STORESYNC_*, systemd)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("STORESYNC_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


# --- SQLite, read from outside the daemon ----------------------------------------------------------


def query(db: Path, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return list(conn.execute(sql, tuple(params)).fetchall())
    finally:
        conn.close()


def dump_database(db: Path) -> str:
    """Every row of every table as SQL text (what a secret scan reads besides the raw bytes)."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


# --- the simulator ---------------------------------------------------------------------------------


class Simulator:
    """``python -m channels.simulators.lojaintegrada`` on a free loopback port, driven over HTTP."""

    def __init__(
        self,
        workdir: Path,
        keys: Keys,
        *,
        orders: int = 0,
        products: int = 10,
        latency_ms: float = 0.0,
        rate_limit: int = HIGH_RATE,
        seed: int = 7,
    ) -> None:
        self.log_path = workdir / "simulator.err"
        with self.log_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "channels.simulators.lojaintegrada",
                    "--port",
                    "0",
                    "--orders",
                    str(orders),
                    "--products",
                    str(products),
                    "--rate-limit",
                    str(rate_limit),
                    "--latency-ms",
                    str(latency_ms),
                    "--seed",
                    str(seed),
                    "--api-key",
                    keys.api_key,
                    "--app-key",
                    keys.app_key,
                ],
                cwd=workdir,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self.url = self._read_url(timeout=15.0)

    def _read_url(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if "listening on " not in line:
            self.stop()
            raise RuntimeError(
                f"the simulator did not start: {line!r} {self.log_path.read_text(errors='replace')[-2000:]}"
            )
        return line.rsplit("listening on ", 1)[1].strip()

    def _request(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/__sim__/state")
        return result

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._request("POST", path, dict(body))

    def inject_fault(self, kind: str, count: int = 1, *, paths: str | None = None) -> None:
        body: dict[str, Any] = {"kind": kind, "count": count}
        if paths is not None:
            body["paths"] = paths
        self.post("/__sim__/faults", body)

    def products(self) -> list[dict[str, Any]]:
        products: list[dict[str, Any]] = self.state()["products"]
        return products

    def skus(self) -> list[str]:
        return [str(p["sku"]) for p in self.products()]

    def stock_history(self, sku: str) -> list[dict[str, Any]]:
        for product in self.products():
            if product["sku"] == sku:
                history: list[dict[str, Any]] = product["stock_history"]
                return history
        raise KeyError(sku)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --- the daemon ------------------------------------------------------------------------------------


class DaemonProcess:
    """``python -m daemon --config <file> run`` with stdout/stderr captured to files."""

    def __init__(self, workdir: Path, config: Path, env: Mapping[str, str], name: str = "daemon") -> None:
        self.config = config
        self.env = dict(env)
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        tree = _read_toml(config)
        self.state_dir = Path(tree["daemon"]["state_dir"])
        self.socket_path = self.state_dir / "control.sock"
        self.state_db = self.state_dir / "storesync.db"
        self.log_db = self.state_dir / "storesync-log.db"
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "daemon", "--config", str(config), "run"],
                cwd=workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    # -- lifecycle --

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 20.0) -> DaemonStatus:
        """Until the control socket answers /status; fails at once (with the tail) if the process exits."""

        def ready() -> DaemonStatus | None:
            if not self.alive:
                raise AssertionError(f"the daemon exited with {self.proc.returncode}\n{self.tail()}")
            if not self.socket_path.exists():
                return None
            try:
                return self.status()
            except ControlClientError:
                return None

        return wait_until(ready, timeout=timeout, what="the daemon's control socket")

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not exit within {timeout:g} s\n{self.tail()}") from None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the graceful stop."""
        if self.alive:
            self.send(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
            self.proc.wait(timeout=10)

    # -- output --

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 30) -> str:
        out = self.stdout_text().splitlines()[-lines:]
        err = self.stderr_text().splitlines()[-lines:]
        return (
            f"--- {self.stdout_path.name} (last {len(out)} lines) ---\n"
            + "\n".join(out)
            + f"\n--- {self.stderr_path.name} (last {len(err)} lines) ---\n"
            + "\n".join(err)
        )

    # -- the control API --

    def call(self, work: Callable[[ControlClient], Awaitable[T]], timeout: float = 10.0) -> T:
        async def go() -> T:
            async with ControlClient(self.socket_path, timeout=timeout) as client:
                return await work(client)

        return asyncio.run(go())

    def status(self) -> DaemonStatus:
        return self.call(lambda c: c.status())

    def flows(self) -> dict[str, FlowStatus]:
        status = self.status()
        for channel in status.channels:
            if channel.name == CHANNEL:
                return {f.flow: f for f in channel.flows}
        raise AssertionError(f"no channel {CHANNEL!r} in {status!r}")

    def raw_get(self, path: str, timeout: float = 10.0) -> str:
        """The response body exactly as the daemon sent it (for scans of what leaves the socket)."""

        async def go() -> str:
            connector = aiohttp.UnixConnector(path=str(self.socket_path))
            client_timeout = aiohttp.ClientTimeout(total=timeout)
            async with (
                aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session,
                session.get("http://storesync" + path) as response,
            ):
                text = await response.text()
                assert response.status == 200, f"GET {path}: {response.status} {text[:300]}"
                return text

        return asyncio.run(go())

    def settled(self) -> bool:
        """Every flow has run, none is running, no outbox row is pending or failing."""
        flows = self.flows()
        return all(
            f.last_run_at is not None and f.state == "idle" and f.pending == 0 and f.failed == 0
            for f in flows.values()
        )

    def log_events(self) -> list[str]:
        return [row[0] for row in query(self.log_db, "SELECT event FROM sync_log ORDER BY id")]


def _read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def run_storesync(
    args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """One ``python -m daemon ...`` (the storesync command) to completion."""
    return subprocess.run(
        [PYTHON, "-m", "daemon", *args],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- one test's world --------------------------------------------------------------------------------


class Harness:
    """A test's folder, keys and processes; :meth:`close` stops every process it started."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="sse2e", dir="/tmp"))
        self.state_dir = self.workdir / "state"
        self.keys = Keys()
        self.env = clean_env(self.keys.env())
        self.simulators: list[Simulator] = []
        self.daemons: list[DaemonProcess] = []
        self.others: list[subprocess.Popen[bytes]] = []

    def simulator(self, **options: Any) -> Simulator:
        sim = Simulator(self.workdir, self.keys, **options)
        self.simulators.append(sim)
        return sim

    def settings(
        self, sim: Simulator, name: str = "settings.toml", **options: Any
    ) -> tuple[Path, dict[str, Any]]:
        tree = settings_tree(self.state_dir, sim.url, **options)
        return write_toml(self.workdir / name, tree), tree

    def daemon(self, config: Path, *, ready: bool = True) -> DaemonProcess:
        daemon = DaemonProcess(self.workdir, config, self.env, name=f"daemon{len(self.daemons) + 1}")
        self.daemons.append(daemon)
        if ready:
            daemon.wait_ready()
        return daemon

    def track(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.others.append(proc)
        return proc

    def close(self) -> None:
        for daemon in self.daemons:
            if daemon.alive:
                with contextlib.suppress(Exception):
                    daemon.stop(timeout=10)
                daemon.kill()
            print(f"\n=== {daemon.stdout_path.stem} exit {daemon.proc.returncode} ===\n{daemon.tail()}")
        for proc in self.others:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        for sim in self.simulators:
            sim.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def import_products(daemon: DaemonProcess, rows: list[tuple[str, int]]) -> None:
    """Import ``rows`` (SKU, ERP stock) as a product CSV through the control API."""
    result = daemon.call(lambda c: c.import_products(product_csv(rows)))
    assert result.ok, result


def wait_linked(
    daemon: DaemonProcess, sim: Simulator, rows: list[tuple[str, int]], *, check_stock: bool = True
) -> None:
    """Until each product is bound to the channel's record, (optionally) the channel shows its ERP
    stock, and nothing is left queued or failing."""
    skus = [sku for sku, _ in rows]

    def linked() -> bool:
        bound = query(
            daemon.state_db,
            "SELECT COUNT(*) FROM bindings b JOIN products p ON p.id = b.local_id "
            "WHERE b.channel = ? AND b.entity = 'product' AND p.sku IN (SELECT value FROM json_each(?))",
            (CHANNEL, json.dumps(skus)),
        )[0][0]
        if bound < len(rows):
            return False
        if check_stock:
            on_channel = {p["sku"]: p["estoque"]["quantidade"] for p in sim.products()}
            if any(on_channel.get(sku) != qty for sku, qty in rows):
                return False
        return daemon.settled()

    wait_until(linked, timeout=20, what="the imported products to be linked and their stock pushed")


def link_products(daemon: DaemonProcess, sim: Simulator, rows: list[tuple[str, int]]) -> None:
    """Import simulator SKUs into the ERP and wait until they are linked and their stock is pushed."""
    import_products(daemon, rows)
    wait_linked(daemon, sim, rows)
