"""The real daemon in a process of its own, with settings written for one run, and the ERP's side.

The benchmarks play the ERP: they write the state database with plain SQL from their own connection
(which is what an ERP integration does), and the daemon notices the commits through its change watcher.
Seeding a steady state (products already linked on the channel, nothing queued) is done before the
daemon starts, so a benchmark measures the work it is about, not the initial linking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import python, quiet_logging
from bench.simhost import API_KEY, APP_KEY
from daemon.controlapi.client import ControlClient
from daemon.store.db import open_state_db

CLK_TCK = os.sysconf("SC_CLK_TCK")
PRICE = "49.90"
START_SPREAD = 4.0
"""Seconds after start-up by which every flow has made its first run (random offsets up to 3 s)."""


@dataclass
class ChannelSpec:
    name: str
    base_url: str
    rate_limit: str = "1000000/min"
    rate_limit_burst: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per flow: interval, batch_size, enabled (missing: the flow's defaults)."""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def write_settings(
    folder: Path,
    channels: Sequence[ChannelSpec],
    *,
    log_level: str = "info",
    defaults: Mapping[str, Any] | None = None,
) -> Path:
    """A settings file for one run: state under ``folder/var``, secrets from the environment."""
    lines = [
        "[daemon]",
        f"state_dir = {_toml_value(str(folder / 'var'))}",
        f"log_level = {_toml_value(log_level)}",
        'locale = "en"',
        "watchdog = false",
        'shutdown_timeout = "10s"',
        "",
        "[defaults]",
        'timeout = "30s"',
    ]
    for key, value in (defaults or {}).items():
        lines.append(f"{key} = {_toml_value(value)}")
    for spec in channels:
        lines += [
            "",
            f"[channels.{spec.name}]",
            'kind = "lojaintegrada"',
            f"base_url = {_toml_value(spec.base_url)}",
            'api_key = "env:BENCH_LI_API_KEY"',
            'app_key = "env:BENCH_LI_APP_KEY"',
            f"rate_limit = {_toml_value(spec.rate_limit)}",
            f"rate_limit_burst = {spec.rate_limit_burst}",
        ]
        lines += [f"{key} = {_toml_value(value)}" for key, value in spec.options.items()]
        for flow, body in spec.flows.items():
            lines.append(f"[channels.{spec.name}.flows.{flow}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in body.items()]
    (folder / "var").mkdir(parents=True, exist_ok=True)
    path = folder / "settings.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def daemon_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORESYNC_")}
    env["BENCH_LI_API_KEY"] = API_KEY
    env["BENCH_LI_APP_KEY"] = APP_KEY
    return env


# --- the ERP's side: plain SQL on the state database ------------------------------------------------


async def create_state_db(path: Path, channels: Iterable[str]) -> None:
    """The schema (by the daemon's own migrations), the channels the triggers fan out to, a warehouse."""
    quiet_logging()
    conn = await open_state_db(path)
    try:
        await conn.executemany(
            "INSERT INTO channels (name, kind, enabled) VALUES (?, 'lojaintegrada', 1)",
            [(name,) for name in channels],
        )
        await conn.execute("INSERT OR IGNORE INTO warehouses (code, name) VALUES ('MAIN', 'Main')")
    finally:
        await conn.close()


async def prepare_run(folder: Path, channels: Sequence[ChannelSpec]) -> tuple[Path, sqlite3.Connection]:
    """Every benchmark's start: the settings file, the state database with these channels, and the
    ERP's connection to it. Returns (settings path, ERP connection); the caller closes the latter."""
    settings = write_settings(folder, channels)
    db_path = folder / "var" / "storesync.db"
    await create_state_db(db_path, [spec.name for spec in channels])
    return settings, connect(db_path)


def connect(path: Path) -> sqlite3.Connection:
    """The ERP's connection: autocommit, explicit transactions, the same busy timeout as the daemon."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def seed_catalog(
    conn: sqlite3.Connection,
    skus: Sequence[str],
    *,
    on_hand: int = 100,
    bindings: Mapping[str, Mapping[str, str]] | None = None,
    settled: bool = True,
) -> dict[str, int]:
    """Products with a price and ``on_hand`` units in MAIN; ``bindings`` is {channel: {sku: remote id}}.

    ``settled`` marks everything the triggers queued as sent: the steady state of a store whose
    channels are in step. Returns {sku: product id}.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO products (sku, name) VALUES (?, ?)", [(sku, f"Produto {sku}") for sku in skus]
        )
        ids = {str(sku): int(pid) for sku, pid in conn.execute("SELECT sku, id FROM products")}
        wanted = [ids[sku] for sku in skus]
        conn.executemany(
            "INSERT INTO prices (product_id, list_price) VALUES (?, ?)", [(pid, PRICE) for pid in wanted]
        )
        (warehouse,) = conn.execute("SELECT id FROM warehouses WHERE code = 'MAIN'").fetchone()
        conn.executemany(
            "INSERT INTO stock_movements (product_id, warehouse_id, delta, reason, reference)"
            " VALUES (?, ?, ?, 'count', 'bench seed')",
            [(pid, warehouse, on_hand) for pid in wanted],
        )
        for channel, by_sku in (bindings or {}).items():
            conn.executemany(
                "INSERT INTO bindings (channel, entity, local_id, remote_id) VALUES (?, 'product', ?, ?)",
                [(channel, ids[sku], remote) for sku, remote in by_sku.items()],
            )
            if settled:  # what the channel was last sent, so the interval sweep finds no drift
                values = {"stock": json.dumps(on_hand), "price": json.dumps({"list": PRICE, "sale": None})}
                conn.executemany(
                    "INSERT INTO pushed_values (channel, entity, entity_id, value, explanation, pushed_at)"
                    " VALUES (?, ?, ?, ?, '{}', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))",
                    [
                        (channel, entity, ids[sku], value)
                        for sku in by_sku
                        for entity, value in values.items()
                    ],
                )
        if settled:
            conn.execute("UPDATE outbox SET state = 'sent', sent_at = changed_at")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ids


def move_stock(conn: sqlite3.Connection, moves: Sequence[tuple[int, int]]) -> float:
    """Commit ``(product id, delta)`` movements in MAIN in one transaction; returns the monotonic time
    the commit returned (the moment the change became visible to other connections)."""
    (warehouse,) = conn.execute("SELECT id FROM warehouses WHERE code = 'MAIN'").fetchone()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO stock_movements (product_id, warehouse_id, delta, reason, reference)"
            " VALUES (?, ?, ?, 'adjust', 'bench')",
            [(pid, warehouse, delta) for pid, delta in moves],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return time.monotonic()


def outbox_counts(conn: sqlite3.Connection, entity: str | None = None) -> dict[str, int]:
    sql = "SELECT state, COUNT(*) FROM outbox"
    params: tuple[str, ...] = ()
    if entity is not None:
        sql += " WHERE entity = ?"
        params = (entity,)
    return {str(state): int(n) for state, n in conn.execute(sql + " GROUP BY state", params)}


def remote_ids_by_sku(state: Mapping[str, Any]) -> dict[str, str]:
    return {str(p["sku"]): str(p["id"]) for p in state["products"]}


# --- the daemon process ------------------------------------------------------------------------------


@dataclass
class ProcStats:
    cpu_seconds: float
    rss_kb: int
    peak_rss_kb: int


def proc_stats(pid: int) -> ProcStats:
    """CPU (user + system, this process and reaped children) and memory, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" the fields start at #3 (state); utime and stime are #14 and #15.
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    return ProcStats(cpu, rss, peak)


class DaemonProcess:
    """``python -m daemon --config <file> run``, stdout (the JSON log lines) to a file in the run's folder.

    Profiling, for a benchmark that misses its target: ``BENCH_PROFILE=/tmp/d.prof`` runs the daemon
    under cProfile; ``BENCH_PYSPY=/tmp/d.txt`` samples every thread of it with py-spy over the measured
    window (collapsed stacks, where the benchmark calls ``start_sampler``).
    """

    def __init__(self, settings_path: Path, *, extra_env: Mapping[str, str] | None = None) -> None:
        self.settings_path = settings_path
        self.folder = settings_path.parent
        self.socket_path = self.folder / "var" / "control.sock"
        self.log_path = self.folder / "daemon.out"
        self.extra_env = dict(extra_env or {})
        self.process: asyncio.subprocess.Process | None = None
        self.sampler: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 60.0) -> None:
        env = {**daemon_env(), **self.extra_env}
        command = ["-m", "daemon", "--config", str(self.settings_path), "run"]
        profile = os.environ.get("BENCH_PROFILE")
        if profile:
            command[0:0] = ["-m", "cProfile", "-o", profile]
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                python(), *command, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.returncode is not None:
                raise RuntimeError(f"the daemon exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(Exception):
                async with ControlClient(self.socket_path) as client:
                    await client.status()
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not answer within {timeout:.0f} s; see {self.log_path}")
            await asyncio.sleep(0.1)

    def start_sampler(self) -> None:
        output = os.environ.get("BENCH_PYSPY")
        if not output or self.sampler is not None:
            return
        spy = shutil.which("py-spy") or str(Path(python()).parent / "py-spy")
        command = [spy, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "250"]
        self.sampler = subprocess.Popen(
            [*command, "--threads", "--idle", "--nonblocking", "--output", output],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.send_signal(signal.SIGINT)
            self.sampler.wait(30)
            self.sampler = None

    def stats(self) -> ProcStats:
        return proc_stats(self.pid)

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL after ``timeout``; always reaps the process."""
        self.stop_sampler()
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        return process.returncode


async def settle(conn: sqlite3.Connection, timeout: float = 300.0) -> float:
    """After start-up: every flow has run once (its sweep included) and nothing is pending.

    Returns how long it took; a seed that left drift for the sweep to find costs time here, not in the
    measurement.
    """
    started = time.monotonic()
    await asyncio.sleep(START_SPREAD)  # every flow has made its first run
    if not await wait_until(lambda: outbox_counts(conn).get("pending", 0) == 0, timeout, interval=0.1):
        raise RuntimeError(f"the outbox did not settle within {timeout:.0f} s: {outbox_counts(conn)}")
    return time.monotonic() - started


async def wait_until(check: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``check()`` (sync or async) until true or ``timeout``; returns whether it became true.

    Polling is the only way here: the state watched lives in another process (its database, a
    simulator), which has no event to wait on.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
