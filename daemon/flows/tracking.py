"""Pull carrier tracking: ask the carrier where each open parcel is, keep it on the shipment, and move
the order to the delivered status once all its parcels have arrived.

Runs on a carrier channel (kind ``correios``), which tracks the shipments whose local carrier code is
in its ``carriers`` list, whichever sales channel sold the order. A run asks about every due shipment
in batches (``batch_size`` codes a request): never asked first, then least recently asked; a shipment
is due again after half the flow's interval, and no longer once final (delivered, returned, invalid
code) or older than ``tracking_horizon_days``. When every tracked parcel of an order is delivered,
the order gets ``delivered_status`` (through ``orders.set_local_status``: the stock rules apply and
the status is queued for the order's own channel, which shows "entregue" to the buyer).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import aiosqlite

from channels.models import FlowName, TrackingState, TrackingStatus
from daemon.flows.job import ChannelJob
from daemon.flows.runner import RunContext, RunResult
from daemon.store import orders, shipments
from daemon.store.errors import StoreError
from daemon.store.shipments import TrackingChange

MAX_BATCHES_PER_RUN = 20
"""A run asks about at most this many batches, then yields (``more``) so a pause or stop is prompt."""
ATTENTION = frozenset({TrackingState.EXCEPTION, TrackingState.INVALID_CODE, TrackingState.RETURNING})
"""States someone should look at: logged as warnings too."""


class TrackingJob(ChannelJob):
    flow = FlowName.TRACKING

    async def run_once(self, run: RunContext) -> RunResult:
        done = 0
        now = self.clock.now()
        timing = self.config.flows.get(self.flow)
        recheck = timedelta(seconds=(timing.interval if timing else 1800.0) / 2)
        horizon = now - timedelta(days=self.config.tracking_horizon_days)
        for batch_number in range(MAX_BATCHES_PER_RUN):
            async with self.db.read() as conn:
                due = await shipments.due_for_tracking(
                    conn,
                    self.config.tracked_carriers,
                    checked_before=now - recheck,
                    created_after=horizon,
                    limit=run.batch_size,
                )
            if not due:
                return RunResult(done=done, contacted=batch_number > 0)
            answers = await self.connector.fetch_tracking([s.tracking_code for s in due])
            by_code = {a.tracking_code: a for a in answers}
            checked_at = self.clock.now()
            async with self.db.write() as conn:
                changes = await shipments.record_tracking(
                    conn,
                    [(s, by_code.get(s.tracking_code)) for s in due],
                    self.config.tracked_carriers,
                    checked_at,
                )
                for change in changes:
                    if change.order_complete and self.config.delivered_status:
                        await self._deliver(run, conn, change.shipment.order_id, checked_at)
            for change in changes:
                self._log_change(run, change, by_code[change.shipment.tracking_code])
            done += len(changes)
            if len(due) < run.batch_size:
                return RunResult(done=done)
        return RunResult(done=done, more=True)

    def _log_change(self, run: RunContext, change: TrackingChange, answer: TrackingStatus) -> None:
        shipment = change.shipment
        fields = {
            "entity": "shipment",
            "entity_id": str(shipment.id),
            "order_id": shipment.order_id,
            "order_channel": shipment.order_channel,
            "order_number": shipment.order_number,
            "tracking_code": shipment.tracking_code,
        }
        run.log.info(
            "shipment.tracking_changed",
            before=change.before,
            after=change.after.value,
            carrier_event=answer.event.code if answer.event else None,
            **fields,
        )
        if change.after in ATTENTION:
            run.log.warning(
                "shipment.needs_attention",
                state=change.after.value,
                detail=answer.detail or (answer.event.description if answer.event else None),
                **fields,
            )

    async def _deliver(
        self, run: RunContext, conn: aiosqlite.Connection, order_id: int, now: datetime
    ) -> None:
        """Every parcel of the order arrived: the order takes the delivered status (unless the ERP
        already moved it there, or cancelled it)."""
        status = self.config.delivered_status
        record = await orders.get_order(conn, order_id)
        if record is None or record.status == status or record.status in orders.CANCELLED_STATUSES:
            return
        try:
            await orders.set_local_status(conn, order_id, status, now=now)
        except StoreError as exc:
            run.log.warning(
                "order.delivered_status_failed", entity="order", entity_id=str(order_id), error=str(exc)
            )
            return
        run.log.info(
            "order.delivered",
            entity="order",
            entity_id=str(order_id),
            order_channel=record.channel,
            remote_id=record.remote_id,
            status=status,
        )
