"""Push available-to-promise stock: on hand in the channel's warehouses, minus open reservations,
minus the channel's safety buffer (kits: the minimum their components allow)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

import aiosqlite

from channels.models import FlowName, PushResult, StockPush
from daemon.flows.push import Plan, PushJob
from daemon.store import bindings, catalog, stock
from daemon.store.outbox import Entity, OutboxRow


class StockJob(PushJob[StockPush]):
    entity: ClassVar[Entity] = "stock"
    flow = FlowName.STOCK

    @property
    def held(self) -> stock.HeldByChannel | None:
        """This channel's own holds, added back to what it is sent (``channel_holds_stock_in``)."""
        statuses = self.config.channel_holds_stock_in
        return stock.HeldByChannel(self.channel, statuses) if statuses else None

    async def prepare(
        self, conn: aiosqlite.Connection, rows: Sequence[OutboxRow], now: datetime
    ) -> Plan[StockPush]:
        plan: Plan[StockPush] = Plan()
        found = await self.synced_products(conn, rows, plan, catalog.product_refs)
        ids = [product.id for _, product in found]
        figures = await stock.available_to_promise(
            conn, ids, list(self.config.stock_warehouses), self.config.stock_buffer, held=self.held
        )
        remote = await bindings.remote_ids(conn, self.channel, "product", ids)
        for row, product in self.linked(found, remote, plan):
            figure = figures[row.entity_id]
            item = StockPush(
                local_id=product.id,
                sku=product.sku,
                remote_id=remote.get(product.id),
                quantity=figure.quantity,
                manage_stock=product.manage_stock,
            )
            plan.send.append((row, item))
            plan.facts[product.id] = {"value": figure.quantity, "explanation": figure.explanation}
        return plan

    async def current_values(
        self, conn: aiosqlite.Connection, product_ids: Sequence[int], now: datetime
    ) -> dict[int, object]:
        figures = await stock.available_to_promise(
            conn,
            list(product_ids),
            list(self.config.stock_warehouses),
            self.config.stock_buffer,
            held=self.held,
        )
        return {pid: figure.quantity for pid, figure in figures.items()}

    async def send(self, items: Sequence[StockPush]) -> list[PushResult]:
        return await self.connector.push_stock(items)
