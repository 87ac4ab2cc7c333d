"""Fixtures for the store tests: a fresh migrated database per test, two channels, one warehouse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from daemon.store import stock
from daemon.store.channels import sync_channels
from daemon.store.db import open_state_db


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "storesync.db"


@pytest.fixture
async def conn(db_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    connection = await open_state_db(db_path)
    await sync_channels(connection, [("loja", "lojaintegrada", True), ("ml", "mercadolivre", True)])
    await stock.ensure_warehouse(connection, "MAIN", "Principal")
    try:
        yield connection
    finally:
        await connection.close()
