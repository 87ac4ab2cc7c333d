"""Push prices: list and promotional, adjusted by the channel's percent, with scheduled promotions
queued again at the moment they start or end."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

import aiosqlite

from channels.models import FlowName, PricePush, PushResult
from daemon.flows.push import Plan, PushJob
from daemon.flows.runner import RunContext
from daemon.store import bindings, catalog, outbox, prices
from daemon.store.outbox import Entity, OutboxRow


class PricesJob(PushJob[PricePush]):
    entity: ClassVar[Entity] = "price"
    flow = FlowName.PRICES
    _checked_until: datetime | None = None

    async def before_claim(self, run: RunContext, now: datetime) -> None:
        """Queue the products whose scheduled promotion started or ended since the last run."""
        if self._checked_until is None:
            self._checked_until = now
            return
        async with self.db.read() as conn:
            crossing = await prices.products_crossing(conn, self._checked_until, now)
        if crossing:
            async with self.db.write() as conn:
                await outbox.enqueue(conn, self.channel, "price", crossing)
            run.log.info("price.promotion_boundary", products=len(crossing))
        self._checked_until = now

    async def wake_in(self, conn: aiosqlite.Connection, now: datetime) -> float | None:
        waits = [w for w in (await super().wake_in(conn, now),) if w is not None]
        boundary = await prices.next_price_boundary(conn, now)
        if boundary is not None:
            waits.append(max(0.0, (boundary - now).total_seconds()) + 0.01)
        return min(waits) if waits else None

    async def prepare(
        self, conn: aiosqlite.Connection, rows: Sequence[OutboxRow], now: datetime
    ) -> Plan[PricePush]:
        plan: Plan[PricePush] = Plan()
        found = await self.synced_products(conn, rows, plan, catalog.product_refs)
        ids = [product.id for _, product in found]
        figures = await prices.effective_prices(conn, ids, self.config.price_adjust_percent, now)
        remote = await bindings.remote_ids(conn, self.channel, "product", ids)
        for row, product in self.linked(found, remote, plan):
            figure = figures.get(product.id)
            if figure is None:
                plan.skip.append(row)  # nothing to say until the product has a price
                continue
            plan.send.append(
                (
                    row,
                    PricePush(
                        local_id=product.id,
                        sku=product.sku,
                        remote_id=remote.get(product.id),
                        list_price=figure.list_price,
                        sale_price=figure.sale_price,
                        cost_price=figure.cost_price,
                        promo_start=figure.promo_start,
                        promo_end=figure.promo_end,
                    ),
                )
            )
            plan.facts[product.id] = {"value": self._value(figure), "explanation": figure.explanation}
        return plan

    async def current_values(
        self, conn: aiosqlite.Connection, product_ids: Sequence[int], now: datetime
    ) -> dict[int, object]:
        figures = await prices.effective_prices(
            conn, list(product_ids), self.config.price_adjust_percent, now
        )
        return {pid: self._value(figure) for pid, figure in figures.items()}

    @staticmethod
    def _value(figure: prices.PriceFigure) -> dict[str, str | None]:
        sale = None if figure.sale_price is None else str(figure.sale_price)
        return {"list": str(figure.list_price), "sale": sale}

    async def send(self, items: Sequence[PricePush]) -> list[PushResult]:
        return await self.connector.push_prices(items)
