"""What the control server needs from the running daemon; ``daemon.app`` implements it.

Errors are the contract for status codes: ``KeyError`` (unknown channel, flow, SKU, order, outbox
row, import failure) becomes 404 and ``ValueError`` (bad input, refused ERP write) becomes 400, each
with its message shown to people as is, so messages must name what is wrong and never hold a secret.
A ``ValueError`` may carry ``field`` (see :class:`FieldError`) to point at the offending input.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from daemon.controlapi.wire import (
    ActionResult,
    DaemonStatus,
    LogPage,
    LogRow,
    OutboxItem,
    OutboxState,
    Parcel,
    Problems,
)
from daemon.events import EventBus


class FieldError(ValueError):
    """A ValueError that names the input at fault (answered as 400 with ``field`` set)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class Runtime(Protocol):
    @property
    def bus(self) -> EventBus:
        """Live log rows and status changes (``daemon.logbook.LogBook.bus``)."""
        ...

    async def status(self) -> DaemonStatus: ...

    async def query_logs(
        self,
        *,
        channel: str | None,
        flow: str | None,
        level: str | None,
        entity: str | None,
        entity_id: str | None,
        since: datetime | None,
        until: datetime | None,
        q: str | None,
        cursor: int | None,
        limit: int,
    ) -> LogPage:
        """``LogBook.query(**kwargs)``."""
        ...

    async def log_rows_after(self, after_id: int, limit: int) -> list[LogRow]:
        """``LogBook.rows_after``: rows with id > after_id, oldest first (event replay)."""
        ...

    async def sync_now(self, channel: str | None, flow: str | None) -> ActionResult:
        """Wake the flows now (all channels when ``channel`` is None). KeyError: unknown channel/flow."""
        ...

    async def pause(self, channel: str, flow: str | None) -> ActionResult: ...

    async def resume(self, channel: str, flow: str | None) -> ActionResult: ...

    async def reload(self) -> ActionResult:
        """Re-read settings; a bad file gives ok=False with the problems in details, old ones kept."""
        ...

    async def push_stock(self, sku: str) -> ActionResult:
        """Queue the SKU's stock for every channel now (KeyError: unknown SKU)."""
        ...

    async def retry_outbox(self, ids: list[int] | None, channel: str | None) -> ActionResult: ...

    async def link_product(self, sku: str, channel: str, remote_id: str) -> ActionResult:
        """Bind the SKU to the channel's product by hand (KeyError: unknown SKU or channel;
        ValueError: the remote id is empty or bound to another product)."""
        ...

    async def unlink_product(self, sku: str, channel: str) -> ActionResult:
        """Forget the SKU's binding on the channel (KeyError: unknown, or not linked there)."""
        ...

    async def explain(self, channel: str, entity: str, sku: str) -> dict[str, Any]:
        """How the last pushed value of ``entity`` (stock | price) for ``sku`` was computed."""
        ...

    @property
    def erp(self) -> ErpOperations:
        """Stock, prices, catalog, invoices, tracking, outbox and problem lists."""
        ...


class ErpOperations(Protocol):
    """The ERP-side reads and writes (``daemon.erp.ErpService``): one short transaction each; the
    triggers queue whatever the channels must hear."""

    async def dismiss_import_failure(self, failure_id: int) -> ActionResult: ...

    async def outbox(
        self, state: OutboxState | None, channel: str | None, limit: int, after_id: int | None
    ) -> list[OutboxItem]:
        """Outbox rows by id ascending, ``id > after_id``."""
        ...

    async def problems(self) -> Problems: ...

    async def stock_set(self, sku: str, warehouse: str | None, quantity: int) -> ActionResult:
        """Set the on-hand balance (None: the default warehouse) by recording the difference."""
        ...

    async def stock_move(
        self, sku: str, warehouse: str | None, delta: int, reason: str, reference: str | None
    ) -> ActionResult: ...

    async def price_set(
        self,
        sku: str,
        list_price: Decimal,
        sale_price: Decimal | None,
        cost_price: Decimal | None,
        promo_price: Decimal | None,
        promo_start: datetime | None,
        promo_end: datetime | None,
    ) -> ActionResult: ...

    async def import_products_csv(self, text: str) -> ActionResult:
        """Import a products CSV; ``details["errors"]`` lists ``{"line", "field", "error"}`` per bad line."""
        ...

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
    ) -> ActionResult: ...

    async def tracking_add(
        self, channel: str, order_number: str, carrier: str | None, code: str, url: str | None
    ) -> ActionResult: ...

    async def order_parcels(self, channel: str, order_number: str) -> list[Parcel]:
        """The order's parcels as the carrier last described them (KeyError: no such order)."""
        ...
