"""Opening the two SQLite files, numbered migrations, transactions, and noticing commits by anyone.

Connections are opened in autocommit mode (``isolation_level=None``): nothing is ever inside a
transaction by accident, and :func:`transaction` is the only way to group writes. Several asyncio tasks
may share one connection, so a transaction belongs to the task that opened it; other tasks' writes wait
for it (reads do not, and may see its uncommitted rows). Never await the network inside a transaction.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiosqlite
import structlog

from daemon.clock import SYSTEM_CLOCK, Clock
from daemon.store.errors import MigrationError, NotADatabaseError, StateDirError

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_-]+\.sql$")

BUSY_TIMEOUT_MS = 5000
LOG_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


# --- opening ---------------------------------------------------------------------------------------


async def open_state_db(
    path: str | os.PathLike[str], *, migrations_dir: Path | None = None
) -> aiosqlite.Connection:
    """The ERP database, migrated to the newest schema; durability first (synchronous=FULL)."""
    db_path = Path(path)
    conn = await _connect(db_path)
    try:
        await _pragmas(
            conn,
            db_path,
            [
                f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = FULL",
                "PRAGMA foreign_keys = ON",
            ],
        )
        await migrate(conn, migrations_dir)
    except BaseException:
        await conn.close()
        raise
    return conn


async def open_log_db(path: str | os.PathLike[str]) -> aiosqlite.Connection:
    """The sync-log database: pragmas only; its schema belongs to the logbook."""
    db_path = Path(path)
    conn = await _connect(db_path)
    try:
        await _pragmas(
            conn,
            db_path,
            [
                f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                f"PRAGMA journal_size_limit = {LOG_JOURNAL_SIZE_LIMIT}",
            ],
        )
    except BaseException:
        await conn.close()
        raise
    return conn


def _check_state_dir(db_path: Path) -> None:
    directory = db_path.parent
    if not directory.exists():
        raise StateDirError(f"state directory {directory} does not exist; create it or set daemon.state_dir")
    if not directory.is_dir():
        raise StateDirError(f"state directory {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StateDirError(f"state directory {directory} is not writable by this user (uid {os.getuid()})")
    if db_path.exists() and not db_path.is_file():
        raise NotADatabaseError(f"{db_path} exists but is not a file")


async def _connect(db_path: Path) -> aiosqlite.Connection:
    _check_state_dir(db_path)
    try:
        conn = await aiosqlite.connect(db_path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StateDirError(f"cannot open {db_path}: {exc}") from exc
    conn.row_factory = aiosqlite.Row
    return conn


async def _pragmas(conn: aiosqlite.Connection, db_path: Path, statements: list[str]) -> None:
    try:
        for statement in statements:
            rows = list(await conn.execute_fetchall(statement))
            if "journal_mode" in statement and rows and str(rows[0][0]).lower() != "wal":
                raise StateDirError(
                    f"{db_path}: cannot switch to WAL (got {rows[0][0]!r}); is it on a network filesystem?"
                )
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise NotADatabaseError(
                f"{db_path} is not a SQLite database ({exc}); move it aside or point state_dir elsewhere"
            ) from exc
        raise StateDirError(f"cannot use {db_path}: {exc}") from exc


# --- migrations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path


def discover_migrations(directory: Path | None = None) -> list[Migration]:
    """Numbered ``NNNN_name.sql`` files in order; a gap or a duplicate number is an error."""
    folder = directory or MIGRATIONS_DIR
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name} is not named NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"migrations {found[version].name} and {path.name} share the number {version}"
            )
        found[version] = path
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migrations in {folder} must be numbered 1..N without gaps: {versions}")
    return [Migration(v, found[v]) for v in versions]


def split_statements(script: str) -> list[str]:
    """Split on the ';' that end statements, as SQLite itself sees them (triggers, quoted ';')."""
    statements: list[str] = []
    start = 0
    for index, char in enumerate(script):
        if char != ";":
            continue
        candidate = script[start : index + 1]
        if sqlite3.complete_statement(candidate):
            if _has_code(candidate):
                statements.append(candidate.strip())
            start = index + 1
    rest = script[start:]
    if _has_code(rest):
        raise ValueError(f"incomplete SQL statement at the end: {rest.strip()[:80]!r}")
    return statements


def _has_code(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.split("--", 1)[0].strip()
        if stripped and stripped != ";":
            return True
    return False


async def user_version(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def migrate(conn: aiosqlite.Connection, directory: Path | None = None) -> list[int]:
    """Apply the pending migrations, each in its own transaction; returns the versions applied."""
    migrations = discover_migrations(directory)
    newest = migrations[-1].version if migrations else 0
    current = await user_version(conn)
    if current > newest:
        raise MigrationError(
            f"the database is at schema version {current} but this storesync knows only up to "
            f"{newest}; upgrade storesync (or restore a matching backup)"
        )
    applied: list[int] = []
    for migration in migrations:
        if migration.version <= current:
            continue
        try:
            statements = split_statements(migration.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MigrationError(f"migration {migration.path.name} cannot be read: {exc}") from exc
        try:
            async with transaction(conn):
                # Another process may have migrated between our read and our write lock.
                current = await user_version(conn)
                if current >= migration.version:
                    continue
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {migration.version}")
        except sqlite3.Error as exc:
            raise MigrationError(
                f"migration {migration.path.name} failed and was rolled back "
                f"(database stays at version {current}): {exc}"
            ) from exc
        current = migration.version
        applied.append(migration.version)
        log.info("store.migrated", version=migration.version, file=migration.path.name)
    return applied


# --- transactions ----------------------------------------------------------------------------------


@dataclass
class _TxState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    owner: asyncio.Task[object] | None = None
    depth: int = 0


_TX: weakref.WeakKeyDictionary[aiosqlite.Connection, _TxState] = weakref.WeakKeyDictionary()


def _tx_state(conn: aiosqlite.Connection) -> _TxState:
    state = _TX.get(conn)
    if state is None:
        state = _TX[conn] = _TxState()
    return state


def _held_by_caller(conn: aiosqlite.Connection, state: _TxState) -> bool:
    """True when the current task is inside a transaction on ``conn``: one it opened here, or one
    opened outside this module (``BEGIN`` by hand, e.g. daemon.statedb), which is taken to be the
    caller's own."""
    task = asyncio.current_task()
    if state.owner is not None:
        return task is not None and state.owner is task
    return conn.in_transaction


def in_own_transaction(conn: aiosqlite.Connection) -> bool:
    """True when the current task holds an open transaction on ``conn``."""
    return _held_by_caller(conn, _tx_state(conn))


@asynccontextmanager
async def transaction(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (cancellation included).

    Inside a transaction the same task already holds (or one begun outside this module), this is a
    SAVEPOINT: an inner failure rolls back only the inner work (one bad order does not lose the
    rest of the page), and the outer transaction decides the commit.
    """
    state = _tx_state(conn)
    if _held_by_caller(conn, state):
        state.depth += 1
        name = f"sp_{state.depth}"
        await conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            await _quietly(conn, f"ROLLBACK TO {name}")
            await _quietly(conn, f"RELEASE {name}")
            raise
        else:
            await conn.execute(f"RELEASE {name}")
        finally:
            state.depth -= 1
        return

    async with state.lock:
        # Claim the connection before BEGIN: while BEGIN is awaited, conn.in_transaction is already
        # true, and another task must not mistake this transaction for its own (it would open a
        # SAVEPOINT inside ours and fail with "no such savepoint" once we commit).
        state.owner = asyncio.current_task()
        try:
            await conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            state.owner = None
            raise
        try:
            yield conn
        except BaseException:
            await _quietly(conn, "ROLLBACK")
            raise
        else:
            try:
                await conn.execute("COMMIT")
            except BaseException:
                await _quietly(conn, "ROLLBACK")
                raise
        finally:
            state.owner = None
            state.depth = 0


@asynccontextmanager
async def write_lock(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """For a single write statement: waits for other tasks' transactions, costs no BEGIN/COMMIT."""
    state = _tx_state(conn)
    if _held_by_caller(conn, state):
        yield conn
        return
    async with state.lock:
        yield conn


async def _quietly(conn: aiosqlite.Connection, statement: str) -> None:
    try:
        await conn.execute(statement)
    except (sqlite3.Error, ValueError) as exc:  # ValueError: the connection is already closed
        log.warning("store.rollback_failed", statement=statement, error=str(exc))


# --- change watcher --------------------------------------------------------------------------------


class ChangeWatcher:
    """Calls ``on_change()`` after any other connection or process commits to the database.

    It polls ``PRAGMA data_version`` on a connection of its own: one tiny query per interval, no
    locks taken, so an idle daemon costs nearly nothing while plain SQL from the ERP (or the
    ``sqlite3`` command line) wakes the push flows within about ``interval`` seconds.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_change: Callable[[], None],
        clock: Clock = SYSTEM_CLOCK,
        interval: float = 0.1,
    ) -> None:
        self._path = Path(path)
        self._on_change = on_change
        self._clock = clock
        self._interval = interval
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._version: int | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        conn = await _connect(self._path)
        try:
            await _pragmas(conn, self._path, [f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"])
            self._version = await self._data_version(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._task = asyncio.create_task(self._run(conn), name=f"change-watcher:{self._path.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def __aenter__(self) -> ChangeWatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @staticmethod
    async def _data_version(conn: aiosqlite.Connection) -> int:
        rows = list(await conn.execute_fetchall("PRAGMA data_version"))
        return int(rows[0][0])

    async def _run(self, conn: aiosqlite.Connection) -> None:
        failing = False
        while True:
            await self._clock.sleep(self._interval if not failing else max(self._interval, 1.0))
            try:
                version = await self._data_version(conn)
            except sqlite3.Error as exc:
                if not failing:
                    log.warning("store.watch_failed", path=str(self._path), error=str(exc))
                failing = True
                continue
            if failing:
                log.info("store.watch_recovered", path=str(self._path))
                failing = False
            if version != self._version:
                self._version = version
                try:
                    self._on_change()
                except Exception as exc:  # a broken callback must not stop the watching
                    log.exception("store.on_change_failed", error=str(exc))
