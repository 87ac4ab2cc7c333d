"""The shape every push flow shares: claim due outbox rows, build items, push, settle per item.

The database is read, then the network is used with no lock held, then one short write transaction
settles the batch. Rows are settled with the version they were read at, so a change that arrived
while the batch was on the wire stays pending and goes out on the next run (coalescing without loss).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import aiosqlite

from channels.models import FlowName, PushResult
from daemon.flows.job import ChannelJob
from daemon.flows.runner import RunContext, RunResult
from daemon.store import bindings, catalog, outbox
from daemon.store.catalog import Product
from daemon.store.outbox import Entity, OutboxRow

ItemT = TypeVar("ItemT")
SWEEP_CHUNK = 2000


@dataclass
class Plan(Generic[ItemT]):
    """What to do with each claimed row."""

    send: list[tuple[OutboxRow, ItemT]] = field(default_factory=list)
    skip: list[OutboxRow] = field(default_factory=list)
    """Nothing to send (product not synced, value already on the channel): settle as sent."""
    refuse: list[tuple[OutboxRow, str]] = field(default_factory=list)
    """Cannot be sent as it stands (no price, product deleted): park with the reason."""
    facts: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Per entity id: what was sent and how it was computed, recorded after success."""


class PushJob(ChannelJob, ABC, Generic[ItemT]):
    entity: ClassVar[Entity]
    flow: ClassVar[FlowName]
    binds_products: ClassVar[bool] = True
    """Results carry the channel's product id: remember it as the product's binding."""

    @staticmethod
    async def synced_products(
        conn: aiosqlite.Connection, rows: Sequence[OutboxRow], plan: Plan[ItemT]
    ) -> list[tuple[OutboxRow, Product]]:
        """The rows whose product exists and is synced; the others go to ``plan`` as refused/skipped."""
        products = await catalog.get_products(conn, [row.entity_id for row in rows])
        found = []
        for row in rows:
            product = products.get(row.entity_id)
            if product is None:
                plan.refuse.append((row, f"product {row.entity_id} no longer exists"))
            elif not product.sync_enabled:
                plan.skip.append(row)
            else:
                found.append((row, product))
        return found

    @abstractmethod
    async def prepare(
        self, conn: aiosqlite.Connection, rows: Sequence[OutboxRow], now: datetime
    ) -> Plan[ItemT]:
        """Read what each row needs from the store (batched: a few queries for the whole batch)."""

    @abstractmethod
    async def send(self, items: Sequence[ItemT]) -> list[PushResult]: ...

    async def after_success(
        self,
        conn: aiosqlite.Connection,
        done: Sequence[tuple[OutboxRow, ItemT, PushResult]],
        plan: Plan[ItemT],
        now: datetime,
    ) -> None:
        """Record what the channel accepted (bindings, pushed values); runs in the settle transaction."""
        new_bindings = [
            (row.entity_id, result.remote_id)
            for row, item, result in done
            if self.binds_products
            and result.remote_id
            and getattr(item, "remote_id", None) != result.remote_id
        ]
        if new_bindings:
            await bindings.set_bindings(conn, self.channel, "product", new_bindings)
        facts = [
            (row.entity_id, plan.facts[row.entity_id]["value"], plan.facts[row.entity_id]["explanation"])
            for row, _, _ in done
            if row.entity_id in plan.facts
        ]
        if facts:
            await outbox.record_pushed(conn, self.channel, self.entity, facts, now)

    async def before_claim(self, run: RunContext, now: datetime) -> None:
        """Hook for flows that queue work on a schedule (promotions starting)."""

    async def current_values(
        self, conn: aiosqlite.Connection, product_ids: Sequence[int], now: datetime
    ) -> dict[int, object]:
        """What would be pushed now, per product; flows that sweep override this."""
        return {}

    async def sweep(self, run: RunContext, now: datetime) -> int:
        """Queue every linked product whose value drifted from what the channel was last sent.

        Triggers catch every write, but not everything that changes a value (a reload that moves a
        warehouse, a buffer or an adjustment percent); the interval run is the safety net.
        """
        after, queued = 0, 0
        while True:
            async with self.db.read() as conn:
                rows = list(
                    await conn.execute_fetchall(
                        "SELECT b.local_id FROM bindings b JOIN products p ON p.id = b.local_id "
                        "WHERE b.channel = ? AND b.entity = 'product' AND p.sync_enabled AND b.local_id > ? "
                        "ORDER BY b.local_id LIMIT ?",
                        (self.channel, after, SWEEP_CHUNK),
                    )
                )
                ids = [int(r[0]) for r in rows]
                if not ids:
                    break
                values = await self.current_values(conn, ids, now)
                pushed = await outbox.pushed_values(conn, self.channel, self.entity, ids)
            drifted = [
                pid for pid, value in values.items() if pid not in pushed or pushed[pid].value != value
            ]
            if drifted:
                async with self.db.write() as conn:
                    await outbox.enqueue(conn, self.channel, self.entity, drifted)
                queued += len(drifted)
            after = ids[-1]
        if queued:
            run.log.info(f"{self.entity}.sweep_queued", count=queued)
        return queued

    async def wake_in(self, conn: aiosqlite.Connection, now: datetime) -> float | None:
        due = await outbox.next_due_at(conn, self.channel, self.entity)
        return None if due is None else max(0.0, (due - now).total_seconds())

    async def run_once(self, run: RunContext) -> RunResult:
        now = self.clock.now()
        await self.before_claim(run, now)
        async with self.db.read() as conn:
            rows = await outbox.claim_due(conn, self.channel, self.entity, run.batch_size, now)
            if not rows:
                wake_in = await self.wake_in(conn, now)
        if not rows:
            if run.sweep and await self.sweep(run, now):
                return RunResult(more=True)
            return RunResult(wake_in=wake_in)
        async with self.db.read() as conn:
            plan = await self.prepare(conn, rows, now)
        results = await self.send([item for _, item in plan.send]) if plan.send else []
        by_local_id = {result.local_id: result for result in results}
        done: list[tuple[OutboxRow, ItemT, PushResult]] = []
        failed: list[tuple[OutboxRow, str, bool]] = [(row, reason, False) for row, reason in plan.refuse]
        for row, item in plan.send:
            result = by_local_id.get(row.entity_id)
            if result is None:
                failed.append((row, "the connector returned no result for this item", True))
            elif result.ok:
                done.append((row, item, result))
            else:
                failed.append((row, result.error or "rejected by the channel", result.retryable))
        settled_at = self.clock.now()
        async with self.db.write() as conn:
            await self.after_success(conn, done, plan, settled_at)
            await outbox.mark_sent(conn, [row for row, _, _ in done] + plan.skip, settled_at)
            outcomes = {}
            for row, error, retryable in failed:
                outcomes[row.id] = await outbox.mark_failed(
                    conn,
                    row,
                    error,
                    settled_at,
                    max_attempts=self.config.outbox_max_attempts,
                    rng=self.rng.random,
                    retryable=retryable,
                )
        for row, item, result in done:
            run.log.info(
                f"{self.entity}.pushed",
                entity=self.entity,
                entity_id=str(row.entity_id),
                remote_id=result.remote_id,
                sku=getattr(item, "sku", None),
                value=plan.facts.get(row.entity_id, {}).get("value"),
            )
        for row, error, retryable in failed:
            run.log.warning(
                f"{self.entity}.push_failed",
                entity=self.entity,
                entity_id=str(row.entity_id),
                error=error,
                retryable=retryable,
                outcome=outcomes.get(row.id),
                attempts=row.attempts + 1,
            )
        return RunResult(done=len(done), failed=len(failed), more=len(rows) >= run.batch_size)
