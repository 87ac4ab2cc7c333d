"""The shape every push flow shares: claim due outbox rows, build items, push, settle per item.

The database is read, then the network is used with no lock held, then one short write transaction
settles the batch. Rows are settled with the version they were read at, so a change that arrived
while the batch was on the wire stays pending and goes out on the next run (coalescing without loss).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import aiosqlite

from channels.base import TransientError
from channels.models import FlowName, PushResult
from daemon.flows.job import ChannelJob
from daemon.flows.runner import RunContext, RunResult
from daemon.logbook import log_each
from daemon.store import bindings, outbox
from daemon.store.outbox import Entity, OutboxRow


class _Syncable(Protocol):
    @property
    def sync_enabled(self) -> bool: ...


ItemT = TypeVar("ItemT")
ProductT = TypeVar("ProductT", bound=_Syncable)
ProductLoader = Callable[[aiosqlite.Connection, list[int]], Awaitable[Mapping[int, ProductT]]]
SWEEP_CHUNK = 500
"""Products compared per step of a sweep: each step's work runs on the event loop between two
awaits (about 5 ms at 500), so a sweep over a big catalog never holds the other flows up for long."""


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
    link_first: list[OutboxRow] = field(default_factory=list)
    """The product is not on the channel yet and the products flow runs there: settled now, the
    product queued for the products flow, which creates or links it and then queues its stock and
    price again (see ``PushJob.links_first``)."""


class PushJob(ChannelJob, ABC, Generic[ItemT]):
    entity: ClassVar[Entity]
    flow: ClassVar[FlowName]
    binds_products: ClassVar[bool] = True
    """Results carry the channel's product id: remember it as the product's binding."""
    _settling: asyncio.Future[None] | None = None
    """The previous batch's settle, still running (pipelined runs only)."""
    _settling_ids: frozenset[int] = frozenset()
    """Its outbox ids: claimed and pushed, not yet settled, so the next claim must skip them."""
    _preparing: asyncio.Future[tuple[list[OutboxRow], Plan[ItemT]] | None] | None = None
    """The next batch, claimed and read from the store while this one is on the wire (pipelined
    runs only)."""

    @property
    def links_first(self) -> bool:
        """The products flow runs on this channel, so it creates or links every product; stock and
        price wait for that instead of looking an unlinked product up by SKU themselves (a new
        product costs 3 requests instead of ~6, and no push fails with "SKU not on the channel")."""
        timing = self.config.flows.get(FlowName.PRODUCTS)
        return (
            timing is not None
            and timing.enabled
            and FlowName.PRODUCTS in self.connector.supported_flows
            and self.flow is not FlowName.PRODUCTS
        )

    def linked(
        self, found: list[tuple[OutboxRow, ProductT]], remote: Mapping[int, str], plan: Plan[ItemT]
    ) -> list[tuple[OutboxRow, ProductT]]:
        """The products to push now; with ``links_first``, unlinked ones go to ``plan.link_first``."""
        if not self.links_first:
            return found
        plan.link_first.extend(row for row, _ in found if row.entity_id not in remote)
        return [(row, product) for row, product in found if row.entity_id in remote]

    @staticmethod
    async def synced_products(
        conn: aiosqlite.Connection,
        rows: Sequence[OutboxRow],
        plan: Plan[ItemT],
        load: ProductLoader[ProductT],
    ) -> list[tuple[OutboxRow, ProductT]]:
        """The rows whose product exists and is synced; the others go to ``plan`` as refused/skipped.

        ``load`` reads the products: whole ones for the products flow, the few columns stock and
        prices need (``catalog.product_refs``) for theirs."""
        products = await load(conn, [row.entity_id for row in rows])
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
                pushed = await outbox.last_pushed(conn, self.channel, self.entity, ids)
            drifted = [pid for pid, value in values.items() if pid not in pushed or pushed[pid] != value]
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

    async def drain(self) -> None:
        """Wait for the batch still being settled in the background (the runner calls this on stop).

        A batch prepared ahead is dropped: nothing of it was sent, its rows are still pending."""
        await self._drop_prepared()
        await self._join_settle()

    async def _drop_prepared(self) -> None:
        task, self._preparing = self._preparing, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _join_settle(self) -> None:
        """Wait for the previous batch's settle; its failure (a database error) is this run's failure:
        its rows are still pending and go out again, as after a crash."""
        task = self._settling
        if task is None:
            return
        try:
            await task
        finally:
            self._settling = None
            self._settling_ids = frozenset()

    async def run_once(self, run: RunContext) -> RunResult:
        """Claim, prepare, send, settle one batch.

        With ``run.pipeline`` (the runner's loop) a full batch is settled in the background while the
        next batch is claimed, prepared and sent, so the wire is not idle during database work. The
        next claim skips the rows still being settled; settles stay in order (at most one is
        outstanding, joined before the next one starts) and :meth:`drain` finishes the last one.
        """
        if self._settling is not None and self._settling.done():
            await self._join_settle()
        try:
            return await self._run_batch(run)
        except BaseException:
            await self._drop_prepared()
            if self._settling is not None:
                await asyncio.gather(self._settling, return_exceptions=True)
                self._settling, self._settling_ids = None, frozenset()
            raise

    async def _prepare_ahead(
        self, size: int, in_hand: frozenset[int]
    ) -> tuple[list[OutboxRow], Plan[ItemT]] | None:
        """Claim and read the next batch while the current one is being sent.

        ``in_hand``: the outbox ids on the wire or still being settled, which are pending in the
        store but must not be claimed twice. The plan is read a little earlier than it is sent;
        that is safe: a change committed after the claim bumps the row's version, so the settle
        leaves it pending and the newer value goes out next.
        """
        now = self.clock.now()
        async with self.db.read() as conn:
            rows = await outbox.claim_due(conn, self.channel, self.entity, size, now, exclude=in_hand)
            if not rows:
                return None
            return rows, await self.prepare(conn, rows, now)

    async def _claim(self, run: RunContext, now: datetime) -> tuple[list[OutboxRow], float | None]:
        wake_in: float | None = None
        async with self.db.read() as conn:
            rows = await outbox.claim_due(
                conn, self.channel, self.entity, run.batch_size, now, exclude=self._settling_ids
            )
            if not rows and self._settling is None:
                wake_in = await self.wake_in(conn, now)
        return rows, wake_in

    async def _next_batch(
        self, run: RunContext, now: datetime
    ) -> tuple[list[OutboxRow], float | None, Plan[ItemT] | None]:
        """The batch prepared ahead by the previous run, or a fresh claim (its plan still to read)."""
        task, self._preparing = self._preparing, None
        if task is not None:
            ready = await task
            if ready is not None:
                return ready[0], None, ready[1]
        rows, wake_in = await self._claim(run, now)
        return rows, wake_in, None

    async def _run_batch(self, run: RunContext) -> RunResult:
        now = self.clock.now()
        await self.before_claim(run, now)
        rows, wake_in, plan = await self._next_batch(run, now)
        if not rows and self._settling is not None:
            # Only rows being settled are left: once settled, some may still be due (a change arrived
            # meanwhile), which the wake-up time and the sweep must see.
            await self._join_settle()
            rows, wake_in = await self._claim(run, now)
        if not rows:
            if run.sweep and await self.sweep(run, now):
                return RunResult(more=True, contacted=False)
            return RunResult(wake_in=wake_in, contacted=False)
        if plan is None:
            async with self.db.read() as conn:
                plan = await self.prepare(conn, rows, now)
        if run.pipeline and len(rows) >= run.batch_size:
            # A full batch: there may be more, so the next one is claimed and read while this one
            # is on the wire.
            in_hand = self._settling_ids | {row.id for row in rows}
            self._preparing = asyncio.ensure_future(self._prepare_ahead(run.batch_size, in_hand))
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
        sent_failures = [error for row, error, retryable in failed if retryable]
        # Nothing got through and every item failed the retryable way: that is the channel failing,
        # not the items. The rows are settled (backoff, bounded attempts); the channel's health hears
        # it too, so the outage is logged once and the breaker can open.
        channel_failing = (
            bool(plan.send) and not done and len(sent_failures) == len(failed) - len(plan.refuse)
        )
        more = len(rows) >= run.batch_size
        previous_error: Exception | None = None
        try:
            await self._join_settle()  # the previous batch's settle, in order, before this one's
        except Exception as exc:  # this batch is on the channel already: settle and log it first
            previous_error = exc
        settle = self._settle(run, plan, done, failed)
        if run.pipeline and more and not channel_failing and previous_error is None:
            self._settling_ids = frozenset(row.id for row in rows)
            self._settling = asyncio.ensure_future(settle)
        else:
            await settle
        if previous_error is not None:
            raise previous_error
        if channel_failing:
            raise TransientError(f"{len(sent_failures)} {self.entity} push(es) failed: {sent_failures[0]}")
        return RunResult(done=len(done), failed=len(failed), more=more, contacted=bool(plan.send))

    async def _settle(
        self,
        run: RunContext,
        plan: Plan[ItemT],
        done: Sequence[tuple[OutboxRow, ItemT, PushResult]],
        failed: Sequence[tuple[OutboxRow, str, bool]],
    ) -> None:
        """One write transaction for the batch (version-guarded), then one log row per item."""
        settled_at = self.clock.now()
        async with self.db.write() as conn:
            await self.after_success(conn, done, plan, settled_at)
            await outbox.mark_sent(
                conn, [row for row, _, _ in done] + plan.skip + plan.link_first, settled_at
            )
            if plan.link_first:
                await outbox.enqueue(
                    conn,
                    self.channel,
                    "product",
                    [row.entity_id for row in plan.link_first],
                    only_settled=True,
                )
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
        facts = plan.facts
        entity = self.entity
        if plan.link_first:
            run.log.info(
                f"{entity}.waiting_for_link",
                entity=entity,
                count=len(plan.link_first),
                product_ids=[row.entity_id for row in plan.link_first[:20]],
            )
        log_each(
            run.log,
            "info",
            f"{entity}.pushed",
            [
                {
                    "entity": entity,
                    "entity_id": str(row.entity_id),
                    "remote_id": result.remote_id,
                    "sku": getattr(item, "sku", None),
                    "value": facts[row.entity_id].get("value") if row.entity_id in facts else None,
                }
                for row, item, result in done
            ],
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
