"""Pipelined push runs (the runner's loop): a full batch settles in the background while the next one
is claimed and sent. The guarantees of the plain run must hold: nothing pushed twice in one pass,
every row settled in order, a change during a push stays pending, every item logged, a stop drains."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from channels.models import FlowName, PushResult, StockPush
from daemon.clock import SYSTEM_CLOCK
from daemon.flows.config import ChannelConfig
from daemon.flows.runner import RunContext, RunResult
from daemon.flows.stock import StockJob
from daemon.logbook import (
    STDOUT_SAMPLE_IDS,
    LogBook,
    LogSink,
    configure_logging,
    log_each,
    reset_logging,
    set_stdout_items,
)
from daemon.statedb import StateDB
from daemon.store import catalog, channels, outbox, stock

PRODUCTS = 12
BATCH = 4


class FakeStock:
    """A connector that records every push and answers success (optionally running a hook first)."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, int]] = []
        self.hook: object = None

    async def push_stock(self, items: Sequence[StockPush]) -> list[PushResult]:
        if callable(self.hook):
            await self.hook(items)
        self.pushed += [(item.sku, item.quantity) for item in items]
        return [PushResult.success(item.local_id, item.remote_id or f"r{item.local_id}") for item in items]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[StateDB, FakeStock, StockJob]]:
    db = await StateDB.open(tmp_path / "storesync.db")
    async with db.write() as conn:
        await channels.sync_channels(conn, [("loja", "lojaintegrada", True)])
        await stock.ensure_warehouse(conn, "MAIN")
        rows = "\n".join(f"SKU{i:03d},Produto {i},10.00,,{i + 1},MAIN" for i in range(PRODUCTS))
        report = await catalog.import_products_csv(
            conn, "sku,name,list_price,sale_price,stock,warehouse\n" + rows
        )
        assert not report.errors
    fake = FakeStock()
    job = StockJob(ChannelConfig(name="loja", kind="lojaintegrada"), fake, db, SYSTEM_CLOCK)  # type: ignore[arg-type]
    try:
        yield db, fake, job
    finally:
        await job.drain()
        await db.close()


def context(run: int) -> RunContext:
    log = structlog.get_logger("test").bind(channel="loja", flow="stock", run_id=f"r{run}")
    return RunContext("loja", FlowName.STOCK, f"r{run}", BATCH, log, pipeline=True)


async def drain_all(job: StockJob) -> list[RunResult]:
    results = []
    for run in range(50):
        result = await job.run_once(context(run))
        results.append(result)
        if not result.more:
            await job.drain()
            return results
    raise AssertionError("the stock flow did not drain")


async def states(db: StateDB) -> dict[str, int]:
    async with db.read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT state, COUNT(*) FROM outbox WHERE entity = 'stock' GROUP BY state"
        )
    return {str(r[0]): int(r[1]) for r in rows}


async def test_a_pipelined_drain_pushes_each_item_once_and_settles_every_row(
    setup: tuple[StateDB, FakeStock, StockJob],
) -> None:
    db, fake, job = setup
    results = await drain_all(job)
    assert sorted(fake.pushed) == [(f"SKU{i:03d}", i + 1) for i in range(PRODUCTS)]
    assert sum(r.done for r in results) == PRODUCTS
    assert await states(db) == {"sent": PRODUCTS}


async def test_a_background_settle_is_outstanding_until_the_next_run_or_drain(
    setup: tuple[StateDB, FakeStock, StockJob],
) -> None:
    db, fake, job = setup
    first = await job.run_once(context(1))
    assert first.more and first.done == BATCH
    second = await job.run_once(context(2))  # claims past the batch still being settled
    assert second.done == BATCH
    assert len(set(fake.pushed)) == len(fake.pushed) == 2 * BATCH
    await job.drain()
    assert (await states(db)).get("sent") == 2 * BATCH


async def test_a_change_during_a_pipelined_push_stays_pending(
    setup: tuple[StateDB, FakeStock, StockJob],
) -> None:
    db, fake, job = setup

    async def sell_one(items: Sequence[StockPush]) -> None:
        if items[0].sku == "SKU000" and fake.hook is not None:
            fake.hook = None
            async with db.write() as conn:  # the ERP sells one unit while the batch is on the wire
                await stock.set_stock(conn, "SKU000", "MAIN", 0)

    fake.hook = sell_one
    await drain_all(job)
    assert ("SKU000", 1) in fake.pushed
    assert fake.pushed.count(("SKU000", 0)) == 1  # the newer value went out on a later batch
    assert await states(db) == {"sent": PRODUCTS}


async def test_a_change_to_a_batch_read_ahead_stays_pending(
    setup: tuple[StateDB, FakeStock, StockJob],
) -> None:
    """The next batch is read while this one is on the wire; a change landing after that read must
    still go out (the version guard leaves its row pending), not be settled with the old value."""
    db, fake, job = setup

    async def sell_from_next_batch(items: Sequence[StockPush]) -> None:
        if items[0].sku == "SKU000" and fake.hook is not None:
            fake.hook = None
            assert job._preparing is not None  # SKU004's batch is being (or has been) read ahead
            await job._preparing
            async with db.write() as conn:
                await stock.set_stock(conn, "SKU004", "MAIN", 0)

    fake.hook = sell_from_next_batch
    await drain_all(job)
    assert ("SKU004", 5) in fake.pushed  # the value read ahead went out with its batch
    assert fake.pushed.count(("SKU004", 0)) == 1
    assert await states(db) == {"sent": PRODUCTS}


async def test_a_stop_drops_the_batch_read_ahead_and_loses_nothing(
    setup: tuple[StateDB, FakeStock, StockJob],
) -> None:
    db, fake, job = setup
    first = await job.run_once(context(1))
    assert first.more and job._preparing is not None
    await job.drain()  # the runner stops here: the batch read ahead was never sent
    assert job._preparing is None
    assert (await states(db)) == {"sent": BATCH, "pending": PRODUCTS - BATCH}
    await drain_all(job)
    assert sorted(set(fake.pushed)) == sorted(fake.pushed)  # nothing pushed twice
    assert await states(db) == {"sent": PRODUCTS}


async def test_a_failed_settle_fails_the_next_run_after_settling_that_runs_batch(
    setup: tuple[StateDB, FakeStock, StockJob],
) -> None:
    db, _fake, job = setup
    original = outbox.mark_sent
    calls = 0

    async def broken_once(*args: object, **kwargs: object) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk I/O error")
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    outbox.mark_sent = broken_once
    try:
        assert (await job.run_once(context(1))).more
        with pytest.raises(RuntimeError, match="disk I/O error"):
            await job.run_once(context(2))
    finally:
        outbox.mark_sent = original
    # The second batch was settled before the error surfaced; the first one's rows are pending again.
    assert (await states(db)).get("sent") == BATCH
    await drain_all(job)
    assert await states(db) == {"sent": PRODUCTS}


async def test_claim_skips_excluded_rows(setup: tuple[StateDB, FakeStock, StockJob]) -> None:
    db, _, _ = setup
    now = SYSTEM_CLOCK.now() + timedelta(seconds=1)
    async with db.read() as conn:
        every = await outbox.claim_due(conn, "loja", "stock", 100, now)
        rest = await outbox.claim_due(conn, "loja", "stock", 100, now, exclude=[r.id for r in every[:5]])
        kinds = await outbox.pending_kinds(conn, ["loja", "elsewhere"])
    assert [r.id for r in rest] == [r.id for r in every[5:]]
    assert ("loja", "stock") in kinds and all(name == "loja" for name, _ in kinds)


@pytest.mark.parametrize("per_item", [False, True])
async def test_log_each_writes_one_filterable_row_per_item_and_a_summary_line(
    tmp_path: Path, per_item: bool
) -> None:
    folder = tmp_path
    sink = LogSink()
    with (folder / "out.jsonl").open("w") as out:
        configure_logging("info", sink=sink, stream=out)
        set_stdout_items(per_item)
        book = await LogBook.open(folder / "log.db", sink=sink)
        try:
            log = structlog.get_logger("t").bind(channel="loja", flow="stock", run_id="r1")
            items = [
                {"entity": "stock", "entity_id": str(i), "remote_id": f"R{i}", "value": i} for i in range(3)
            ]
            log_each(log, "info", "stock.pushed", items)
            log_each(log, "debug", "stock.hidden", items)  # below the level: nothing
            many = [{"entity": "stock", "entity_id": str(i)} for i in range(STDOUT_SAMPLE_IDS + 5)]
            log_each(log, "info", "stock.bulk", many)
            await book.flush()
            page = await book.query(channel="loja", entity="stock")
        finally:
            await book.aclose()
            reset_logging()
    rows = sorted(page.rows, key=lambda r: r.id)
    assert [(r.event, r.flow, r.entity_id, r.remote_id) for r in rows[:3]] == [
        ("stock.pushed", "stock", str(i), f"R{i}") for i in range(3)
    ]
    assert len(rows) == 3 + STDOUT_SAMPLE_IDS + 5  # one row per item, whatever stdout shows
    lines = [json.loads(line) for line in (folder / "out.jsonl").read_text().splitlines()]
    if per_item:
        assert [line["event"] for line in lines] == ["stock.pushed"] * 3 + ["stock.bulk"] * len(many)
        return
    assert [(line["event"], line["count"], line["channel"]) for line in lines] == [
        ("stock.pushed", 3, "loja"),
        ("stock.bulk", len(many), "loja"),
    ]
    assert lines[0]["entity_ids"] == ["0", "1", "2"]
    assert lines[1]["entity_ids"] == [str(i) for i in range(STDOUT_SAMPLE_IDS)] + ["…"]
