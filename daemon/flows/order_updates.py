"""Push order updates: status (through the de-para), NF-e invoice, tracking codes.

Only what the channel does not have yet is sent: the store remembers the channel's last known
status and which invoice and codes it accepted, so an imported change never echoes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

import aiosqlite

from channels.models import FlowName, InvoiceData, OrderUpdatePush, PushResult, TrackingData
from daemon.flows.push import Plan, PushJob
from daemon.store import mappings, orders
from daemon.store.outbox import Entity, OutboxRow


class OrderUpdatesJob(PushJob[OrderUpdatePush]):
    entity: ClassVar[Entity] = "order_update"
    flow = FlowName.ORDER_UPDATES
    binds_products = False

    async def prepare(
        self, conn: aiosqlite.Connection, rows: Sequence[OutboxRow], now: datetime
    ) -> Plan[OrderUpdatePush]:
        payloads = await orders.order_update_payloads(conn, [row.entity_id for row in rows])
        table = await mappings.load_table(conn, self.channel)
        plan: Plan[OrderUpdatePush] = Plan()
        for row in rows:
            data = payloads.get(row.entity_id)
            if data is None:
                plan.refuse.append((row, f"order {row.entity_id} no longer exists"))
                continue
            if data.nothing_to_push(table):
                plan.skip.append(row)
                continue
            status = data.status_to_push(table)
            invoice = data.invoice_to_push
            tracking = data.tracking_to_push
            item = OrderUpdatePush(
                local_id=data.order_id,
                remote_id=data.remote_id,
                status=status,
                invoice=None
                if invoice is None
                else InvoiceData(
                    number=invoice.number,
                    series=invoice.series,
                    access_key=invoice.access_key,
                    issued_at=invoice.issued_at or now,
                    danfe_url=invoice.danfe_url,
                    xml_url=invoice.xml_url,
                ),
                tracking=tuple(
                    TrackingData(
                        shipment_remote_id=s.remote_id,
                        carrier=(table.to_remote("carrier", s.carrier) or s.carrier) if s.carrier else None,
                        tracking_code=s.tracking_code or "",
                        url=s.tracking_url,
                    )
                    for s in tracking
                ),
            )
            plan.send.append((row, item))
            plan.facts[data.order_id] = {
                "value": {
                    "status": status,
                    "invoice": invoice.access_key if invoice else None,
                    "tracking": [s.tracking_code for s in tracking],
                },
                "explanation": {
                    "local_status": data.status,
                    "channel_had": data.remote_status,
                    "invoice_id": invoice.id if invoice else None,
                    "shipments": [s.id for s in tracking],
                },
            }
        return plan

    async def send(self, items: Sequence[OrderUpdatePush]) -> list[PushResult]:
        return await self.connector.push_order_updates(items)

    async def after_success(
        self,
        conn: aiosqlite.Connection,
        done: Sequence[tuple[OutboxRow, OrderUpdatePush, PushResult]],
        plan: Plan[OrderUpdatePush],
        now: datetime,
    ) -> None:
        await super().after_success(conn, done, plan, now)
        pushed = []
        for row, item, _ in done:
            facts = plan.facts[row.entity_id]["explanation"]
            pushed.append(
                orders.UpdatePushed(
                    order_id=row.entity_id,
                    remote_status=item.status,
                    invoice_id=facts["invoice_id"],
                    tracking=[
                        (shipment_id, t.tracking_code)
                        for shipment_id, t in zip(facts["shipments"], item.tracking, strict=True)
                    ],
                )
            )
        await orders.mark_updates_pushed(conn, pushed, now)
