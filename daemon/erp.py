"""The ERP-side operations the control API offers (and so the CLI and the TUI).

Each is one short transaction on the state database. The triggers then queue what the channels must
hear, so these functions never talk to a channel themselves. Errors are ``KeyError`` for something
that does not exist and ``ValueError`` for input that is wrong; both carry a message for people.

Messages (``ActionResult.message`` and the errors) are for store staff, in the daemon's configured
locale; the facts a program needs are in ``ActionResult.details``, so no client parses a message.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from daemon import i18n
from daemon.clock import Clock
from daemon.controlapi.wire import (
    ActionResult,
    ImportFailure,
    NeverIntegrated,
    OutboxItem,
    OutboxState,
    Parcel,
    Problems,
)
from daemon.statedb import StateDB
from daemon.store import (
    bindings,
    catalog,
    import_failures,
    orders,
    outbox,
    prices,
    problems,
    shipments,
    stock,
)
from daemon.store import channels as channels_repo
from daemon.store.errors import NotFoundError
from daemon.store.outbox import Entity

log = structlog.get_logger("storesync.erp")


class ErpService:
    def __init__(
        self, db: StateDB, clock: Clock, default_warehouse: str = "MAIN", *, locale: str = i18n.PT_BR
    ) -> None:
        self.db = db
        self.clock = clock
        self.default_warehouse = default_warehouse
        self.locale: i18n.Locale = i18n.resolve_locale(locale)

    def _t(self, key: str, /, **params: object) -> str:
        return i18n.translate(key, self.locale, **params)

    def _money(self, value: Decimal) -> str:
        return i18n.format_money(value, self.locale)

    async def _product_id(self, sku: str) -> int:
        async with self.db.read() as conn:
            product = await catalog.get_product_by_sku(conn, sku)
        if product is None:
            raise KeyError(self._t("erp.no_product", sku=repr(sku)))
        return product.id

    async def stock_set(self, sku: str, warehouse: str | None, quantity: int) -> ActionResult:
        if quantity < 0:
            raise ValueError(self._t("erp.bad_quantity", sku=repr(sku), quantity=quantity))
        where = warehouse or self.default_warehouse
        await self._product_id(sku)
        async with self.db.write() as conn:
            await stock.ensure_warehouse(conn, where)
            delta = await stock.set_stock(conn, sku, where, quantity)
        return ActionResult(
            ok=True,
            message=self._t(
                "erp.stock_set", sku=sku, warehouse=where, quantity=quantity, delta=f"{delta:+d}"
            ),
            details={"sku": sku, "warehouse": where, "quantity": quantity, "delta": delta},
        )

    async def stock_move(
        self, sku: str, warehouse: str | None, delta: int, reason: str, reference: str | None
    ) -> ActionResult:
        if delta == 0:
            raise ValueError(self._t("erp.zero_movement", sku=repr(sku)))
        where = warehouse or self.default_warehouse
        product_id = await self._product_id(sku)
        async with self.db.write() as conn:
            await stock.ensure_warehouse(conn, where)
            movement_id = await stock.add_movement(
                conn, product_id, where, delta, reason, reference, now=self.clock.now()
            )
        return ActionResult(
            ok=True,
            message=self._t(
                "erp.stock_moved",
                sku=sku,
                delta=f"{delta:+d}",
                warehouse=where,
                reason=i18n.label("erp.reason", reason, self.locale),
            ),
            details={
                "movement_id": movement_id,
                "sku": sku,
                "warehouse": where,
                "delta": delta,
                "reason": reason,
                "reference": reference,
            },
        )

    async def price_set(
        self,
        sku: str,
        list_price: Decimal,
        sale_price: Decimal | None,
        cost_price: Decimal | None,
        promo_price: Decimal | None,
        promo_start: datetime | None,
        promo_end: datetime | None,
    ) -> ActionResult:
        await self._product_id(sku)
        async with self.db.write() as conn:
            changed = await prices.set_price(
                conn, sku, list_price, sale_price, cost_price, promo_price, promo_start, promo_end
            )
        shown = [self._t("erp.price.list", amount=self._money(list_price))]
        if sale_price is not None:
            shown.append(self._t("erp.price.sale", amount=self._money(sale_price)))
        if promo_price is not None:
            shown.append(self._t("erp.price.promo", amount=self._money(promo_price)))
        key = "erp.price_changed" if changed else "erp.price_unchanged"
        return ActionResult(
            ok=True,
            message=self._t(key, sku=sku, prices=", ".join(shown)),
            details={
                "sku": sku,
                "changed": changed,
                "list_price": str(list_price),
                "sale_price": _text(sale_price),
                "cost_price": _text(cost_price),
                "promo_price": _text(promo_price),
                "promo_start": promo_start.isoformat() if promo_start else None,
                "promo_end": promo_end.isoformat() if promo_end else None,
            },
        )

    async def import_products_csv(self, text: str) -> ActionResult:
        async with self.db.write() as conn:
            report = await catalog.import_products_csv(conn, text, default_warehouse=self.default_warehouse)
        errors = [
            {"line": e.line, "field": e.column, "error": e.message, "sku": e.sku} for e in report.errors
        ]
        message = self._t(
            "erp.import_summary",
            rows=report.rows,
            created=report.created,
            updated=report.updated,
            unchanged=report.unchanged,
            errors=len(errors),
        )
        return ActionResult(
            ok=not errors,
            message=message,
            details={
                "rows": report.rows,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "errors": errors,
            },
        )

    async def invoice_add(
        self,
        channel: str,
        order_number: str,
        number: str,
        series: str,
        access_key: str,
        issued_at: datetime,
        danfe_url: str | None,
        xml_url: str | None,
    ) -> ActionResult:
        try:
            async with self.db.write() as conn:
                invoice_id = await orders.add_invoice(
                    conn,
                    (channel, order_number),
                    number,
                    series,
                    access_key,
                    issued_at,
                    danfe_url=danfe_url,
                    xml_url=xml_url,
                )
        except NotFoundError:
            raise KeyError(self._t("erp.no_order", order=repr(order_number), channel=repr(channel))) from None
        return ActionResult(
            ok=True,
            message=self._t(
                "erp.invoice_added", number=number, series=series, order=order_number, channel=channel
            ),
            details={
                "invoice_id": invoice_id,
                "channel": channel,
                "order": order_number,
                "number": number,
                "series": series,
            },
        )

    async def tracking_add(
        self, channel: str, order_number: str, carrier: str | None, code: str, url: str | None
    ) -> ActionResult:
        code = code.strip()
        if not code:
            raise ValueError(self._t("erp.empty_tracking"))
        try:
            async with self.db.write() as conn:
                order_id = await orders.resolve_order_id(conn, (channel, order_number))
                shipment_id = await orders.add_tracking(conn, order_id, carrier, code, url)
        except NotFoundError:
            raise KeyError(self._t("erp.no_order", order=repr(order_number), channel=repr(channel))) from None
        return ActionResult(
            ok=True,
            message=self._t("erp.tracking_added", code=code, order=order_number, channel=channel),
            details={
                "shipment_id": shipment_id,
                "order_id": order_id,
                "channel": channel,
                "order": order_number,
                "code": code,
            },
        )

    async def order_parcels(self, channel: str, order_number: str) -> list[Parcel]:
        """The order's parcels as the carrier last described them (KeyError: no such order)."""
        try:
            async with self.db.read() as conn:
                order_id = await orders.resolve_order_id(conn, (channel, order_number))
                records = await shipments.of_order(conn, order_id)
        except NotFoundError:
            raise KeyError(self._t("erp.no_order", order=repr(order_number), channel=repr(channel))) from None
        return [_wire_parcel(r, self.clock.now()) for r in records]

    async def push_stock(self, sku: str, channels: list[str]) -> ActionResult:
        product_id = await self._product_id(sku)
        async with self.db.write() as conn:
            for channel in channels:
                await outbox.enqueue(conn, channel, "stock", [product_id])
        return ActionResult(
            ok=True,
            message=self._t(
                "erp.stock_queued", sku=sku, channels=", ".join(channels) or self._t("erp.no_channel")
            ),
            details={"product_id": product_id, "sku": sku, "channels": channels},
        )

    async def link_product(self, sku: str, channel: str, remote_id: str) -> ActionResult:
        """Bind the SKU to the channel's product ``remote_id`` by hand (the automatic link by key
        found nothing, or the wrong listing), then queue everything that channel must hear about it.
        A remote id already bound to another product is refused (``BindingConflict``)."""
        remote_id = remote_id.strip()
        if not remote_id:
            raise ValueError(self._t("erp.empty_remote_id"))
        product_id = await self._product_id(sku)
        async with self.db.write() as conn:
            await bindings.set_binding(conn, channel, "product", product_id, remote_id)
            queued = await channels_repo.queue_full_push(conn, channel, [product_id])
        self._log_link("product.linked", channel, product_id, remote_id, sku)
        return ActionResult(
            ok=True,
            message=self._t("erp.product_linked", sku=sku, remote_id=remote_id, channel=channel),
            details={"product_id": product_id, "remote_id": remote_id, "queued": queued},
        )

    async def unlink_product(self, sku: str, channel: str) -> ActionResult:
        """Forget the SKU's binding on the channel (nothing is deleted there). Its next push links it
        by the configured key again, or creates it: unlink to let a corrected listing be found."""
        product_id = await self._product_id(sku)
        async with self.db.write() as conn:
            remote = (await bindings.remote_ids(conn, channel, "product", [product_id])).get(product_id)
            if remote is None or not await bindings.delete_binding(conn, channel, "product", product_id):
                raise KeyError(self._t("erp.not_linked", sku=sku, channel=channel))
        self._log_link("product.unlinked", channel, product_id, remote, sku)
        return ActionResult(
            ok=True,
            message=self._t("erp.product_unlinked", sku=sku, remote_id=remote, channel=channel),
            details={"product_id": product_id, "remote_id": remote},
        )

    @staticmethod
    def _log_link(event: str, channel: str, product_id: int, remote_id: str, sku: str) -> None:
        """A link made or undone by hand: in the sync log, filterable by the product like its pushes."""
        log.info(
            event,
            channel=channel,
            entity="product",
            entity_id=str(product_id),
            remote_id=remote_id,
            sku=sku,
            by="operator",
        )

    async def retry_outbox(self, ids: list[int] | None, channel: str | None) -> ActionResult:
        async with self.db.write() as conn:
            count = await outbox.retry(conn, ids=ids, channel=channel)
        return ActionResult(
            ok=True, message=self._t("erp.retry_queued", count=count), details={"count": count}
        )

    async def dismiss_import_failure(self, failure_id: int) -> ActionResult:
        async with self.db.write() as conn:
            dismissed = await import_failures.dismiss(conn, failure_id)
        if not dismissed:
            raise KeyError(self._t("erp.no_failure", id=failure_id))
        return ActionResult(
            ok=True,
            message=self._t("erp.failure_dismissed", id=failure_id),
            details={"failure_id": failure_id},
        )

    async def outbox(
        self, state: OutboxState | None, channel: str | None, limit: int, after_id: int | None
    ) -> list[OutboxItem]:
        async with self.db.read() as conn:
            items = await outbox.list_items(
                conn, state=state, channel=channel, limit=limit, after_id=after_id
            )
        return [
            OutboxItem(
                id=i.id,
                channel=i.channel,
                entity=i.entity,
                entity_id=i.entity_id,
                sku=i.sku or i.order_number,
                state=i.state,
                attempts=i.attempts,
                next_attempt_at=i.next_attempt_at,
                last_error=i.last_error,
                changed_at=i.changed_at,
            )
            for i in items
        ]

    async def problems(self, limit: int = 200) -> Problems:
        failed = await self.outbox("failed", None, limit, None)
        parked = await self.outbox("parked", None, limit, None)
        async with self.db.read() as conn:
            failures = await import_failures.list_open(conn, limit=limit)
            never = await problems.never_integrated(conn, limit=limit)
            now = self.clock.now()
            parcels = await shipments.needing_attention(
                conn,
                created_after=now - shipments.ATTENTION_HORIZON,
                unknown_before=now - shipments.UNKNOWN_GRACE,
                limit=limit,
            )
        return Problems(
            outbox=failed + parked,
            import_failures=[
                ImportFailure(
                    id=f.id,
                    channel=f.channel,
                    entity=f.entity,
                    remote_id=f.remote_id,
                    error=f.error,
                    attempts=f.attempts,
                    state=f.state,
                    first_seen_at=f.first_seen_at or now,
                    last_seen_at=f.last_seen_at or now,
                )
                for f in failures
            ],
            never_integrated=[
                NeverIntegrated(channel=n.channel, product_id=n.product_id, sku=n.sku, name=n.name)
                for n in never
            ],
            parcels=[_wire_parcel(p, now) for p in parcels],
        )

    async def explain(self, channel: str, entity: str, sku: str) -> dict[str, Any]:
        if entity not in ("stock", "price"):
            raise ValueError(self._t("erp.bad_entity", entity=repr(entity)))
        product_id = await self._product_id(sku)
        kind: Entity = "stock" if entity == "stock" else "price"
        async with self.db.read() as conn:
            pushed = await outbox.explain(conn, channel, kind, product_id)
        if pushed is None:
            return {
                "channel": channel,
                "entity": entity,
                "sku": sku,
                "pushed": None,
                "message": self._t("erp.nothing_pushed", sku=sku, channel=channel),
            }
        return {
            "channel": channel,
            "entity": entity,
            "sku": sku,
            "pushed": pushed.value,
            "pushed_at": pushed.pushed_at.isoformat() if pushed.pushed_at else None,
            "explanation": pushed.explanation,
        }


def _text(value: Decimal | None) -> str | None:
    """Decimals travel as strings in ``details``: exact, and JSON has no decimal type."""
    return None if value is None else str(value)


def _wire_parcel(record: shipments.ParcelRecord, now: datetime) -> Parcel:
    return Parcel(**{**asdict(record), "since": record.since or now})
