"""Push the products selected for sync; a newly created or linked product gets its stock and price
queued at once, so the channel never shows it without them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

import aiosqlite

from channels.models import FlowName, ProductPush, PushResult
from daemon.flows.push import Plan, PushJob
from daemon.store import bindings, catalog, outbox
from daemon.store.outbox import Entity, OutboxRow


class ProductsJob(PushJob[ProductPush]):
    entity: ClassVar[Entity] = "product"
    flow = FlowName.PRODUCTS

    async def prepare(
        self, conn: aiosqlite.Connection, rows: Sequence[OutboxRow], now: datetime
    ) -> Plan[ProductPush]:
        plan: Plan[ProductPush] = Plan()
        found = await self.synced_products(conn, rows, plan, catalog.get_products)
        remote = await bindings.remote_ids(conn, self.channel, "product", [p.id for _, p in found])
        for row, product in found:
            item = ProductPush(
                local_id=product.id,
                sku=product.sku,
                ean=product.ean,
                code=product.code,
                name=product.name,
                description=product.description,
                active=product.active,
                weight_kg=product.weight_kg,
                remote_id=remote.get(product.id),
            )
            plan.send.append((row, item))
        return plan

    async def send(self, items: Sequence[ProductPush]) -> list[PushResult]:
        return await self.connector.push_products(items)

    async def after_success(self, conn, done, plan, now):  # type: ignore[no-untyped-def]
        await super().after_success(conn, done, plan, now)
        newly_bound = [
            row.entity_id for row, item, result in done if item.remote_id is None and result.remote_id
        ]
        if newly_bound:
            await outbox.enqueue(conn, self.channel, "stock", newly_bound)
            await outbox.enqueue(conn, self.channel, "price", newly_bound)
