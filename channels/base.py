"""The contract every connector implements, and the typed errors flows act on.

A connector declares the flows it supports in ``supported_flows`` and overrides only those methods;
the rest raise ``NotImplementedError`` so a mis-configured flow fails loudly at start-up, not mid-run.
Errors are typed so the flow decides what happens next:

* ``AuthError`` - credentials are wrong or expired and a refresh could not fix them: the channel's
  flows stop and the channel shows ``needs_reauth``.
* ``RateLimited`` - the platform said 429 (``retry_after`` seconds, when it told us).
* ``TransientError`` - 5xx, timeouts, resets, malformed bodies: retry later with backoff.
* ``PermanentError`` - the request itself is wrong (4xx): retrying the same thing cannot help.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from channels.models import (
    ChannelContext,
    FlowName,
    OrderPage,
    OrderSummaryPage,
    OrderUpdatePush,
    PricePush,
    ProductPush,
    PushResult,
    RejectedRecord,
    RemoteOrder,
    StockPush,
    TrackingStatus,
)

if TYPE_CHECKING:  # http.py raises the errors defined here
    from channels.http import HttpClient


class ChannelError(Exception):
    """Base of every error a connector raises; messages never carry secrets."""


class AuthError(ChannelError):
    pass


class RateLimited(ChannelError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(ChannelError):
    pass


class PermanentError(ChannelError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Channel:
    """One connector instance serves one configured channel (one store account)."""

    kind: ClassVar[str] = ""
    supported_flows: ClassVar[frozenset[FlowName]] = frozenset()

    def __init__(self, context: ChannelContext, http: HttpClient) -> None:
        self.context = context
        self.http = http

    @property
    def name(self) -> str:
        return self.context.name

    async def aclose(self) -> None:
        """Release connector-held resources; the HttpClient is closed by its owner."""

    async def fetch_orders(self, *, since: datetime | None, page: str | None, limit: int) -> OrderPage:
        """One page of orders changed at or after ``since`` (None: from the beginning).

        ``page`` is the token a previous call returned for the same ``since``; the flow stores it with
        the committed page so a crash resumes where it stopped.
        """
        raise NotImplementedError(self._unsupported(FlowName.ORDERS))

    async def list_orders(
        self, *, created_from: datetime, created_to: datetime, page: str | None, limit: int
    ) -> OrderSummaryPage:
        """One page of the orders created in ``[created_from, created_to]``, as summaries (one
        request a page, no detail reads): the completeness audit compares them with the ERP's.
        Connectors that cannot list by creation time leave this unsupported; the audit then skips."""
        raise NotImplementedError(self._unsupported(FlowName.ORDERS))

    async def fetch_order(self, remote_id: str) -> RemoteOrder | RejectedRecord:
        """One order by its remote id: retries of parked orders and the completeness audit use it."""
        raise NotImplementedError(self._unsupported(FlowName.ORDERS))

    async def fetch_tracking(self, codes: Sequence[str]) -> list[TrackingStatus]:
        """The latest state of each tracking code (carriers): one result per code, any order; a
        code the carrier does not know, or a malformed one, is a result too, never an exception."""
        raise NotImplementedError(self._unsupported(FlowName.TRACKING))

    async def push_products(self, batch: Sequence[ProductPush]) -> list[PushResult]:
        raise NotImplementedError(self._unsupported(FlowName.PRODUCTS))

    async def push_stock(self, batch: Sequence[StockPush]) -> list[PushResult]:
        raise NotImplementedError(self._unsupported(FlowName.STOCK))

    async def push_prices(self, batch: Sequence[PricePush]) -> list[PushResult]:
        raise NotImplementedError(self._unsupported(FlowName.PRICES))

    async def push_order_updates(self, batch: Sequence[OrderUpdatePush]) -> list[PushResult]:
        raise NotImplementedError(self._unsupported(FlowName.ORDER_UPDATES))

    async def check(self) -> str:
        """Ask the platform the cheapest thing that needs the credentials (``storesync check``);
        returns what answered, in a few words. Raises the typed errors like any call."""
        raise NotImplementedError(f"connector {self.kind!r} has no check")

    async def lookup_product_ids(self, skus: Sequence[str]) -> dict[str, str]:
        """Remote ids of products that already exist on the channel, by SKU (for linking)."""
        return {}

    def _unsupported(self, flow: FlowName) -> str:
        return f"connector {self.kind!r} does not support the {flow.value} flow"
