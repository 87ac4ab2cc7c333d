"""Local faults: the machine misbehaves, not the channel.

* another process holds the state database's write lock (``BEGIN EXCLUSIVE``) for longer than the
  daemon's busy timeout: the daemon says so, retries, keeps serving, and loses nothing;
* the disk fills up while the daemon writes (a small tmpfs as the state folder, filled by a ballast
  file): a clear error, the daemon keeps running, and everything lands once space is back;
* a state folder that cannot be created or written, or a state file that is not a database: a clear
  one-line error, exit status 1, no traceback; a missing folder is simply created;
* the control socket held by a live daemon: the second daemon exits 1 naming it, before it touches a
  database; a stale socket file left by a SIGKILL is replaced;
* no crash loop: start-up (1) and settings (2) errors are distinct from a crash (70), and the systemd
  unit does not restart on 1 or 2;
* concurrent writers on the daemon's one write connection never end up in each other's transaction
  (a regression test for a race found by the fault suite).
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import errno
import sqlite3
import subprocess
from pathlib import Path

import aiosqlite
import pytest

from daemon.app import EXIT_CRASHED, EXIT_STARTUP_ERROR
from daemon.settings import EXIT_SETTINGS_ERROR
from daemon.store.db import open_state_db, transaction
from tests.faults.harness import (
    PYTHON,
    DaemonProc,
    Setup,
    atp_by_sku,
    can_mount,
    eventually,
    log_events,
    mount_tmpfs,
    query,
    running_setup,
    settings_text,
    short_tmpdir,
    sim_stock,
    unmount,
)

pytestmark = [pytest.mark.e2e]

CHANNEL = "loja"
REPO = Path(__file__).resolve().parents[2]
needs_mount = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs CAP_SYS_ADMIN")


def imported(setup: Setup) -> set[str]:
    rows = query(setup.state_db, "SELECT remote_id FROM orders WHERE channel = ?", (CHANNEL,))
    return {str(r[0]) for r in rows}


def wanted_on_channel(setup: Setup) -> set[str]:
    return {str(n) for n, o in setup.sims[CHANNEL].orders.items() if o["situacao"] == "pedido_pago"}


async def in_step(setup: Setup) -> bool:
    return sim_stock(setup.sims[CHANNEL]) == await atp_by_sku(setup.state_db) and imported(setup) == (
        wanted_on_channel(setup)
    )


async def sync_now(setup: Setup) -> None:
    async with setup.daemon.client() as client:
        await client.sync(CHANNEL)


# --- the database locked by another writer -----------------------------------------------------------

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


async def test_database_locked_by_another_writer_waits_and_loses_nothing() -> None:
    async with running_setup([CHANNEL], sim_options={CHANNEL: {"orders": 0}}) as setup:
        await eventually(lambda: in_step(setup), timeout=30, what="the first sync")
        locker = await asyncio.create_subprocess_exec(
            PYTHON, "-c", LOCKER, str(setup.state_db), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert locker.stdout is not None and locker.stdin is not None
            assert await asyncio.wait_for(locker.stdout.readline(), 10) == b"locked\n"
            setup.sims[CHANNEL].create_orders(3, status="pedido_pago")
            await sync_now(setup)
            # Longer than the daemon's busy timeout (5 s): the write gives up, says why, and is retried.
            await eventually(
                lambda: "database is locked" in setup.daemon.output(),
                timeout=30,
                what="the daemon to report the lock",
            )
            status = await setup.daemon.status()  # reads still work (WAL) and the daemon answers
            assert next(ch for ch in status.channels if ch.name == CHANNEL).last_error
            assert not imported(setup) & wanted_on_channel(setup)
        finally:
            if locker.returncode is None:
                assert locker.stdin is not None
                locker.stdin.write(b"done\n")
                await locker.stdin.drain()
                await asyncio.wait_for(locker.wait(), 10)
        assert locker.returncode == 0
        await eventually(lambda: in_step(setup), timeout=40, what="the orders after the lock")
        assert setup.daemon.running
        assert "Traceback" not in setup.daemon.output()


# --- the disk fills up -------------------------------------------------------------------------------


def fill(path: Path) -> int:
    """Write a ballast file until the filesystem says ENOSPC; returns the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with path.open("wb") as ballast:
        while True:
            try:
                ballast.write(chunk)
                ballast.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return written
            written += len(chunk)


def shrink_wals(setup: Setup) -> None:
    """Checkpoint and truncate both WAL files, so the next commit needs new blocks on the disk."""
    for db in (setup.state_db, setup.log_db):
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@needs_mount
async def test_disk_full_while_writing_keeps_running_and_loses_nothing() -> None:
    async with running_setup(
        [CHANNEL], sim_options={CHANNEL: {"orders": 0}}, state_dir_size=6 * 1024 * 1024
    ) as setup:
        await eventually(lambda: in_step(setup), timeout=30, what="the first sync")
        ballast = setup.state_db.parent / "ballast"
        shrink_wals(setup)
        with contextlib.suppress(OSError):
            fill(ballast)
        try:
            setup.sims[CHANNEL].create_orders(20, status="pedido_pago")
            await sync_now(setup)
            await eventually(
                lambda: "database or disk is full" in setup.daemon.output(),
                timeout=30,
                what="the daemon to report the full disk",
            )
            assert setup.daemon.running
            await setup.daemon.status()  # still answering
            assert not imported(setup) & wanted_on_channel(setup)
        finally:
            ballast.unlink()
        await sync_now(setup)
        await eventually(lambda: in_step(setup), timeout=40, what="the orders once space is back")
        assert setup.daemon.running
        # The log database is writable again too, and no log line claims a traceback.
        await eventually(
            lambda: bool(log_events(setup.log_db, "order.created", channel=CHANNEL)),
            timeout=10,
            what="log rows after the disk was freed",
        )
        assert "Traceback" not in setup.daemon.output()


# --- the state folder --------------------------------------------------------------------------------


def write_config(workdir: Path, state_dir: Path) -> Path:
    config = workdir / "settings.toml"
    config.write_text(settings_text(state_dir, []), encoding="utf-8")
    return config


async def start_failure(workdir: Path, state_dir: Path) -> tuple[int, str]:
    proc = DaemonProc(write_config(workdir, state_dir), {}, workdir)
    code = await proc.run_to_exit()
    return code, proc.stderr()


def assert_clear_startup_error(code: int, stderr: str, *words: str) -> None:
    assert code == EXIT_STARTUP_ERROR, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("storesync: "), stderr
    for word in words:
        assert word in lines[0], stderr


async def test_state_dir_under_a_regular_file_exits_1_without_a_traceback() -> None:
    with short_tmpdir() as workdir:
        blocker = workdir / "afile"
        blocker.write_text("not a folder")
        code, stderr = await start_failure(workdir, blocker / "sub")
        assert_clear_startup_error(code, stderr, str(blocker / "sub"), "Not a directory")


@needs_mount
async def test_read_only_state_dir_exits_1_without_a_traceback() -> None:
    with short_tmpdir() as workdir:
        state_dir = workdir / "ro"
        state_dir.mkdir()
        mount_tmpfs(state_dir, 1024 * 1024, read_only=True)
        try:
            code, stderr = await start_failure(workdir, state_dir)
        finally:
            unmount(state_dir)
        assert_clear_startup_error(code, stderr, str(state_dir), "Read-only")


async def test_a_state_file_that_is_not_a_database_exits_1_without_a_traceback() -> None:
    with short_tmpdir() as workdir:
        state_dir = workdir / "var"
        state_dir.mkdir()
        (state_dir / "storesync.db").write_bytes(b"these are not the pages you are looking for" * 100)
        code, stderr = await start_failure(workdir, state_dir)
        assert_clear_startup_error(code, stderr, "storesync.db", "not a SQLite database")


async def test_a_missing_state_dir_is_created() -> None:
    with short_tmpdir() as workdir:
        state_dir = workdir / "new" / "var"
        config = write_config(workdir, state_dir)
        proc = DaemonProc(config, {}, workdir, socket_path=state_dir / "control.sock")
        try:
            await proc.start()
            await proc.wait_ready()
        finally:
            assert await proc.stop() == 0, proc.output()
        assert (state_dir / "storesync.db").is_file()


async def test_sigterm_during_start_up_stops_cleanly() -> None:
    """The socket appears as soon as the daemon claims it, before it is ready: a stop requested then
    is honoured once start-up is done (exit 0), instead of killing it half-way by the default action."""
    with short_tmpdir() as workdir:
        state_dir = workdir / "var"
        proc = DaemonProc(write_config(workdir, state_dir), {}, workdir)
        await proc.start()
        try:
            await eventually(proc.socket_path.exists, timeout=20, interval=0.005, what="the socket")
        finally:
            code = await proc.stop()
        assert code == 0, proc.output()
        assert "daemon.stopped" in proc.output()


# --- the control socket ------------------------------------------------------------------------------


async def test_socket_taken_by_a_live_daemon_second_exits_1_before_touching_anything() -> None:
    async with running_setup([CHANNEL]) as setup:
        await eventually(lambda: in_step(setup), timeout=30, what="the first sync")
        first_pid = setup.daemon.pid
        await eventually(lambda: bool(log_events(setup.log_db, "daemon.started")), timeout=10, what="a log")
        second = DaemonProc(setup.daemon.config, setup.daemon.env, setup.workdir / "second")
        second.workdir.mkdir()
        code = await second.run_to_exit()
        assert_clear_startup_error(
            code, second.stderr(), "another storesync daemon is running", str(setup.daemon.socket_path)
        )
        # The first one is untouched: same process, still serving, its socket still there.
        status = await setup.daemon.status()
        assert status.pid == first_pid and setup.daemon.running
        # The second left before opening a database: not one line of its own in the shared log.
        await eventually(lambda: in_step(setup), timeout=10, what="still in step")
        assert len(log_events(setup.log_db, "daemon.started")) == 1
        assert len(log_events(setup.log_db, "channel.started")) == 1
        assert not log_events(setup.log_db, "daemon.cannot_start")


async def test_a_stale_socket_left_by_sigkill_is_replaced() -> None:
    async with running_setup([CHANNEL]) as setup:
        await setup.daemon.kill()
        socket_path = setup.daemon.socket_path
        assert socket_path.exists(), "SIGKILL leaves the socket file behind"
        await setup.daemon.start()
        await setup.daemon.wait_ready()
        status = await setup.daemon.status()
        assert status.pid == setup.daemon.pid
        await eventually(lambda: in_step(setup), timeout=30, what="a sync after the restart")


# --- no crash loop -----------------------------------------------------------------------------------


def test_exit_codes_are_distinct_and_systemd_does_not_restart_on_config_errors() -> None:
    assert len({EXIT_STARTUP_ERROR, EXIT_SETTINGS_ERROR, EXIT_CRASHED, 0}) == 4
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "systemd" / "storesync.service", encoding="utf-8")
    service = unit["Service"]
    assert service["Restart"] in ("on-failure", "on-abnormal", "always")
    prevented = {int(code) for code in service["RestartPreventExitStatus"].split()}
    assert {EXIT_STARTUP_ERROR, EXIT_SETTINGS_ERROR} <= prevented
    assert EXIT_CRASHED not in prevented


async def test_a_settings_error_exits_2_and_is_not_restarted() -> None:
    with short_tmpdir() as workdir:
        config = workdir / "settings.toml"
        config.write_text('[daemon]\nstate_dir = "var"\nlog_retention_days = "thirty"\n', encoding="utf-8")
        proc = DaemonProc(config, {}, workdir)
        assert await proc.run_to_exit() == EXIT_SETTINGS_ERROR
        assert "daemon.log_retention_days" in proc.stderr() and "Traceback" not in proc.stderr()
        assert not (workdir / "var").exists(), "a bad settings file must not create anything"


# --- one write connection, many tasks ----------------------------------------------------------------


async def test_concurrent_transactions_on_one_connection_never_nest_into_each_other() -> None:
    """Regression: a task entering ``transaction()`` while another task awaited its ``BEGIN`` took
    that transaction for its own, opened a SAVEPOINT in it, and failed with "no such savepoint".

    Tasks are woken by a second connection (as the daemon's flows are, by reads and the network),
    so they arrive at ``transaction()`` at any moment of another task's BEGIN."""
    with short_tmpdir() as workdir:
        writer = await open_state_db(workdir / "storesync.db")
        reader = await open_state_db(workdir / "storesync.db")
        try:
            await writer.execute("CREATE TABLE t (task INTEGER, step INTEGER)")

            async def work(task: int) -> None:
                for step in range(60):
                    await reader.execute("SELECT 1")
                    async with transaction(writer):
                        await writer.execute("INSERT INTO t VALUES (?, ?)", (task, step))
                        async with transaction(writer):  # a nested unit of work: a savepoint
                            await writer.execute("INSERT INTO t VALUES (?, ?)", (task, -step))

            await asyncio.gather(*(work(task) for task in range(8)))
            rows = await writer.execute_fetchall("SELECT COUNT(*) FROM t")
            assert next(iter(rows))[0] == 8 * 60 * 2
        finally:
            await reader.close()
            await writer.close()
    assert isinstance(writer, aiosqlite.Connection)
