"""One writer, many readers: how the daemon shares ``storesync.db`` between its tasks.

aiosqlite runs each connection on its own thread, so two flows interleaving statements on one
connection would share a transaction. Writers therefore take a lock and run one ``BEGIN IMMEDIATE``
transaction at a time; readers use a second connection and see only committed data (WAL). Network I/O
never happens while the write lock is held.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from daemon.store.db import open_state_db, transaction


class StateDB:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: Path) -> None:
        self._writer = writer
        self._reader = reader
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> StateDB:
        writer = await open_state_db(path)
        try:
            reader = await open_state_db(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, path)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A committed-or-rolled-back transaction on the writer connection."""
        async with transaction(self._writer) as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        yield self._reader

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()
