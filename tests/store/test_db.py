"""Opening, migrations, transactions and the change watcher."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from daemon.clock import SYSTEM_CLOCK
from daemon.store.db import (
    MIGRATIONS_DIR,
    ChangeWatcher,
    discover_migrations,
    migrate,
    open_log_db,
    open_state_db,
    split_statements,
    transaction,
    user_version,
)
from daemon.store.errors import MigrationError, NotADatabaseError, StateDirError

LATEST = discover_migrations()[-1].version


async def _scalar(conn: aiosqlite.Connection, sql: str) -> object:
    rows = list(await conn.execute_fetchall(sql))
    return rows[0][0]


async def test_state_db_pragmas_and_schema(db_path: Path) -> None:
    conn = await open_state_db(db_path)
    try:
        assert await _scalar(conn, "PRAGMA journal_mode") == "wal"
        assert await _scalar(conn, "PRAGMA synchronous") == 2  # FULL
        assert await _scalar(conn, "PRAGMA foreign_keys") == 1
        assert await _scalar(conn, "PRAGMA busy_timeout") == 5000
        assert await user_version(conn) == LATEST
        assert not conn.in_transaction
    finally:
        await conn.close()


async def test_migrations_are_idempotent(db_path: Path) -> None:
    first = await open_state_db(db_path)
    await first.close()
    second = await open_state_db(db_path)
    try:
        assert await migrate(second) == []
        assert await user_version(second) == LATEST
        tables = await _scalar(second, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'outbox'")
        assert tables == 1
    finally:
        await second.close()


async def test_fresh_database_applies_every_migration(db_path: Path) -> None:
    conn = await aiosqlite.connect(db_path, isolation_level=None)
    try:
        assert await migrate(conn) == list(range(1, LATEST + 1))
        assert await migrate(conn) == []
    finally:
        await conn.close()


async def test_failing_migration_rolls_back_and_names_the_file(tmp_path: Path, db_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_init.sql", folder / "0001_init.sql")
    (folder / "0002_broken.sql").write_text(
        "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"
    )
    with pytest.raises(MigrationError, match=r"0002_broken\.sql.*version 1"):
        await open_state_db(db_path, migrations_dir=folder)
    conn = await aiosqlite.connect(db_path)
    try:
        assert await user_version(conn) == 1
        assert await _scalar(conn, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'") == 0
    finally:
        await conn.close()


async def test_database_newer_than_the_code_is_refused(tmp_path: Path, db_path: Path) -> None:
    conn = await open_state_db(db_path)
    await conn.execute(f"PRAGMA user_version = {LATEST + 5}")
    await conn.close()
    with pytest.raises(MigrationError, match="upgrade storesync"):
        await open_state_db(db_path)


async def test_missing_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateDirError, match="does not exist"):
        await open_state_db(tmp_path / "nope" / "storesync.db")


async def test_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "storesync.db"
    bogus.write_bytes(b"this is a text file, not SQLite" * 100)
    with pytest.raises(NotADatabaseError, match="not a SQLite database"):
        await open_state_db(bogus)


def test_split_statements_keeps_triggers_and_quoted_semicolons() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT ';');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET x = 'a;b';
        DELETE FROM t WHERE 0;
    END;
    -- trailing comment
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


async def test_log_db_gets_pragmas_but_no_tables(tmp_path: Path) -> None:
    conn = await open_log_db(tmp_path / "storesync-log.db")
    try:
        assert await _scalar(conn, "PRAGMA journal_mode") == "wal"
        assert await _scalar(conn, "PRAGMA synchronous") == 1  # NORMAL
        assert int(str(await _scalar(conn, "PRAGMA journal_size_limit"))) > 0
        assert await _scalar(conn, "SELECT COUNT(*) FROM sqlite_master") == 0
    finally:
        await conn.close()


# --- transactions ----------------------------------------------------------------------------------


async def test_transaction_rolls_back_on_error(conn: aiosqlite.Connection) -> None:
    with pytest.raises(RuntimeError):
        async with transaction(conn):
            await conn.execute("INSERT INTO warehouses (code, name) VALUES ('X', 'x')")
            raise RuntimeError("boom")
    assert await _scalar(conn, "SELECT COUNT(*) FROM warehouses WHERE code = 'X'") == 0
    assert not conn.in_transaction


async def test_nested_transaction_is_a_savepoint(conn: aiosqlite.Connection) -> None:
    async with transaction(conn):
        await conn.execute("INSERT INTO warehouses (code, name) VALUES ('KEEP', 'k')")
        with pytest.raises(ValueError):
            async with transaction(conn):
                await conn.execute("INSERT INTO warehouses (code, name) VALUES ('DROP', 'd')")
                raise ValueError("inner failure")
    codes = [r[0] for r in await conn.execute_fetchall("SELECT code FROM warehouses ORDER BY code")]
    assert "KEEP" in codes and "DROP" not in codes


async def test_external_begin_is_treated_as_the_callers_transaction(conn: aiosqlite.Connection) -> None:
    """daemon.statedb opens BEGIN IMMEDIATE by hand; repositories then nest as savepoints."""
    await conn.execute("BEGIN IMMEDIATE")
    async with transaction(conn):
        await conn.execute("INSERT INTO warehouses (code, name) VALUES ('EXT', 'e')")
    assert conn.in_transaction
    await conn.execute("ROLLBACK")
    assert await _scalar(conn, "SELECT COUNT(*) FROM warehouses WHERE code = 'EXT'") == 0


async def test_other_tasks_wait_for_an_open_transaction(conn: aiosqlite.Connection) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with transaction(conn):
            await conn.execute("INSERT INTO warehouses (code, name) VALUES ('A', 'a')")
            inside.set()
            await release.wait()
            raise RuntimeError("roll back A")

    async def other() -> None:
        async with transaction(conn):
            await conn.execute("INSERT INTO warehouses (code, name) VALUES ('B', 'b')")

    first = asyncio.create_task(holder())
    await asyncio.wait_for(inside.wait(), 5)
    second = asyncio.create_task(other())
    release.set()
    with pytest.raises(RuntimeError):
        await first
    await asyncio.wait_for(second, 5)
    codes = {r[0] for r in await conn.execute_fetchall("SELECT code FROM warehouses")}
    assert "B" in codes and "A" not in codes  # B was not swept into A's rollback


# --- change watcher --------------------------------------------------------------------------------


async def test_change_watcher_sees_a_plain_sqlite3_write(conn: aiosqlite.Connection, db_path: Path) -> None:
    calls: list[int] = []
    changed = asyncio.Event()

    def on_change() -> None:
        calls.append(1)
        changed.set()

    def plain_write(code: str) -> None:
        other = sqlite3.connect(db_path)
        try:
            other.execute("INSERT INTO warehouses (code, name) VALUES (?, ?)", (code, code))
            other.commit()
        finally:
            other.close()

    async with ChangeWatcher(db_path, on_change, SYSTEM_CLOCK, interval=0.05):
        await asyncio.to_thread(plain_write, "W1")
        await asyncio.wait_for(changed.wait(), timeout=1.5)
        changed.clear()
        await asyncio.to_thread(plain_write, "W2")
        await asyncio.wait_for(changed.wait(), timeout=1.5)
    assert len(calls) == 2  # one call per commit, none while idle


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 command line tool")
async def test_change_watcher_sees_the_sqlite3_cli(conn: aiosqlite.Connection, db_path: Path) -> None:
    changed = asyncio.Event()
    async with ChangeWatcher(db_path, changed.set, SYSTEM_CLOCK, interval=0.05):
        process = await asyncio.create_subprocess_exec(
            "sqlite3", str(db_path), "INSERT INTO warehouses (code, name) VALUES ('CLI', 'cli');"
        )
        assert await asyncio.wait_for(process.wait(), 10) == 0
        await asyncio.wait_for(changed.wait(), timeout=1.5)


async def test_change_watcher_sees_the_daemons_own_connection(
    conn: aiosqlite.Connection, db_path: Path
) -> None:
    changed = asyncio.Event()
    watcher = ChangeWatcher(db_path, changed.set, SYSTEM_CLOCK, interval=0.05)
    await watcher.start()
    try:
        await conn.execute("INSERT INTO warehouses (code, name) VALUES ('OWN', 'own')")
        await asyncio.wait_for(changed.wait(), timeout=1.5)
    finally:
        await watcher.stop()
