"""Pull orders: page through "changed since" windows and import each page in one transaction.

The window starts at the last fully imported ``updated_at`` minus a lookback, so an order that was
written late on the channel side is still seen; import is idempotent on (channel, remote id), so the
overlap costs nothing. The cursor (window start, next page, highest stamp seen) is saved inside the
page's transaction: a crash replays at most one page and never skips one.

An order that cannot be imported (invalid CPF, unknown SKU, malformed payload) is parked in
``import_failures`` and the rest of the page goes on; parked orders are fetched again on later runs,
so fixing the cause (creating the product, say) lets them in without operator work. Once caught up,
the flow also runs the periodic completeness audit (``order_audit``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Literal

import aiosqlite

from channels.models import FlowName, OrderPage, RejectedRecord, RemoteOrder
from daemon.flows.job import ChannelJob
from daemon.flows.order_audit import OrderAudit
from daemon.flows.runner import RunContext, RunResult
from daemon.store import import_failures, mappings, orders, sync_state
from daemon.store.errors import OrderImportError, StoreError
from daemon.store.sync_state import Cursor

MAX_PAGES_PER_RUN = 20
PARKED_RETRIES_PER_RUN = 10


class OrdersJob(ChannelJob):
    flow = FlowName.ORDERS

    @cached_property
    def audit(self) -> OrderAudit:
        return OrderAudit(self)

    async def run_once(self, run: RunContext) -> RunResult:
        done, failed = await self._retry_parked(run)
        async with self.db.read() as conn:
            cursor = await sync_state.load(conn, self.channel, self.flow.value)
        if not cursor.in_window:
            cursor = replace(
                cursor, window_since=self._window_start(cursor), page_token=None, window_max=None
            )
        for _ in range(MAX_PAGES_PER_RUN):
            page = await self.connector.fetch_orders(
                since=cursor.window_since, page=cursor.page_token, limit=run.batch_size
            )
            cursor, page_done, page_failed = await self._commit_page(run, cursor, page)
            done += page_done
            failed += page_failed
            if not cursor.in_window:
                # Caught up: the moment for the (daily) completeness audit, if it is due.
                audit = await self.audit.run_if_due(run)
                if audit is not None:
                    done += audit.imported
                    failed += audit.failed
                    return RunResult(done=done, failed=failed, more=not audit.finished)
                return RunResult(done=done, failed=failed)
        return RunResult(done=done, failed=failed, more=True)

    def _window_start(self, cursor: Cursor) -> datetime:
        if cursor.watermark is None:
            return self.clock.now() - timedelta(seconds=self.config.initial_lookback)
        return cursor.watermark - timedelta(seconds=self.config.cursor_lookback)

    def _wanted(self, order: RemoteOrder) -> bool:
        statuses = self.config.order_statuses
        if statuses and order.status not in statuses:
            return False
        return not (self.config.only_paid and not order.paid)

    async def _commit_page(self, run: RunContext, cursor: Cursor, page: OrderPage) -> tuple[Cursor, int, int]:
        now = self.clock.now()
        imported: list[tuple[RemoteOrder, orders.ImportOutcome]] = []
        parked: list[tuple[str, str]] = []
        skipped = 0
        async with self.db.write() as conn:
            table = await mappings.load_table(conn, self.channel)
            known = await orders.existing_remote_ids(conn, self.channel, [o.remote_id for o in page.orders])
            for order in page.orders:
                if order.remote_id not in known and not self._wanted(order):
                    skipped += 1
                    continue
                outcome = await self._import_one(conn, order, table, now)
                if isinstance(outcome, str):
                    parked.append((order.remote_id, outcome))
                else:
                    imported.append((order, outcome))
                    known.add(order.remote_id)
            for record in page.rejected:
                await import_failures.record(
                    conn, self.channel, "order", record.remote_id, record.error, record.raw, now
                )
                parked.append((record.remote_id, record.error))
            await import_failures.resolve_many(
                conn, self.channel, "order", [order.remote_id for order, _ in imported]
            )
            stamps = [o.updated_at for o in page.orders]
            if cursor.window_max is not None:
                stamps.append(cursor.window_max)
            cursor = replace(cursor, page_token=page.next_page, window_max=max(stamps) if stamps else None)
            if page.next_page is None:
                cursor = cursor.finish_window()
            await sync_state.save(conn, self.channel, self.flow.value, cursor, now)
        self._log_page(run, imported, parked, skipped)
        changed = sum(1 for _, outcome in imported if outcome.result != "unchanged")
        return cursor, changed, len(parked)

    async def _import_one(
        self, conn: aiosqlite.Connection, order: RemoteOrder, table: mappings.MappingTable, now: datetime
    ) -> orders.ImportOutcome | str:
        """Import one order in its own savepoint; on failure park it and return the reason."""
        local_status = table.to_local("status", order.status) or order.status
        try:
            return await orders.import_order(
                conn,
                self.channel,
                order,
                local_status=local_status,
                sale_warehouse=self.config.sale_warehouse,
                link_by=self.config.link_by,
                create_missing_products=self.config.create_missing_products,
                mappings=table,
                now=now,
            )
        except (OrderImportError, StoreError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            await import_failures.record(
                conn,
                self.channel,
                "order",
                order.remote_id,
                reason,
                order.raw or order.model_dump(mode="json"),
                now,
            )
            return reason

    async def _retry_parked(self, run: RunContext) -> tuple[int, int]:
        """Fetch a few parked orders again: what blocked them may have been fixed since."""
        async with self.db.read() as conn:
            open_ids = await import_failures.open_remote_ids(conn, self.channel, "order")
        retry = [rid for rid in open_ids if rid != "?"][:PARKED_RETRIES_PER_RUN]
        done = failed = 0
        for remote_id in retry:
            outcome = await self.fetch_and_import(run, remote_id, "order.imported_after_retry")
            done += outcome == "imported"
            failed += outcome == "parked"
        return done, failed

    async def fetch_and_import(
        self, run: RunContext, remote_id: str, event: str
    ) -> Literal["imported", "parked", "not_wanted"]:
        """Read one order by id and import it (or park it with the reason); ``event`` is logged on
        import. An order that is neither known nor wanted (its status) leaves the parked list."""
        fetched = await self.connector.fetch_order(remote_id)
        now = self.clock.now()
        async with self.db.write() as conn:
            if not isinstance(fetched, RemoteOrder):
                error = fetched.error if isinstance(fetched, RejectedRecord) else "not found"
                raw = fetched.raw if isinstance(fetched, RejectedRecord) else None
                await import_failures.record(conn, self.channel, "order", remote_id, error, raw, now)
                return "parked"
            known = await orders.existing_remote_ids(conn, self.channel, [remote_id])
            if not known and not self._wanted(fetched):
                await import_failures.resolve_many(conn, self.channel, "order", [remote_id])
                return "not_wanted"
            table = await mappings.load_table(conn, self.channel)
            outcome = await self._import_one(conn, fetched, table, now)
            if isinstance(outcome, str):
                return "parked"
            await import_failures.resolve_many(conn, self.channel, "order", [remote_id])
        run.log.info(event, entity="order", entity_id=str(outcome.order_id), remote_id=remote_id)
        return "imported"

    def _log_page(
        self,
        run: RunContext,
        imported: list[tuple[RemoteOrder, orders.ImportOutcome]],
        parked: list[tuple[str, str]],
        skipped: int,
    ) -> None:
        for order, outcome in imported:
            if outcome.result == "unchanged":
                continue
            run.log.info(
                f"order.{outcome.result}",
                entity="order",
                entity_id=str(outcome.order_id),
                remote_id=order.remote_id,
                status=order.status,
                changes=list(outcome.changes),
                stock=outcome.stock,
            )
        for remote_id, reason in parked:
            run.log.warning("order.parked", entity="order", remote_id=remote_id, error=reason)
        if skipped:
            run.log.debug("orders.skipped_by_status", count=skipped)
