"""Channel-neutral data that crosses the boundary between flows and connectors.

Connectors translate a platform's payloads into these models and back; flows never see a platform's
JSON and connectors never see the database. Money is ``Decimal``; quantities on orders are ``Decimal``
because platforms send "2.00"; stock balances pushed out are whole units.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class FlowName(enum.StrEnum):
    """Every flow a connector may support; the value is the settings key and the log field."""

    ORDERS = "orders"
    TICKETS = "tickets"
    TRACKING = "tracking"
    PRODUCTS = "products"
    STOCK = "stock"
    PRICES = "prices"
    ORDER_UPDATES = "order_updates"

    @property
    def is_pull(self) -> bool:
        return self in (FlowName.ORDERS, FlowName.TICKETS, FlowName.TRACKING)


class Priority(enum.IntEnum):
    """Who gets the shared rate limit first when flows compete (lower value wins)."""

    ORDERS = 0
    STOCK = 1
    ORDER_UPDATES = 2
    PRICES = 3
    PRODUCTS = 4
    BACKGROUND = 5

    @classmethod
    def for_flow(cls, flow: FlowName) -> Priority:
        return _FLOW_PRIORITY.get(flow, cls.BACKGROUND)


_FLOW_PRIORITY = {
    FlowName.ORDERS: Priority.ORDERS,
    FlowName.TICKETS: Priority.ORDERS,
    FlowName.STOCK: Priority.STOCK,
    FlowName.ORDER_UPDATES: Priority.ORDER_UPDATES,
    FlowName.TRACKING: Priority.ORDER_UPDATES,
    FlowName.PRICES: Priority.PRICES,
    FlowName.PRODUCTS: Priority.PRODUCTS,
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChannelContext(BaseModel):
    """What a connector is told about the channel it serves; built by the daemon from settings."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    kind: str
    base_url: str
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float = 30.0
    max_retries: int = 4
    rate_limit_per_minute: float = 60.0
    rate_limit_burst: int = 0
    """0 means 'derive from the rate' (a tenth of the per-minute budget, at least 1)."""

    def secret(self, key: str) -> str:
        """The plain secret; only a connector building an auth header should call this."""
        value = self.secrets.get(key)
        if value is None:
            raise KeyError(f"channel {self.name!r}: secret {key!r} is not configured")
        return value.get_secret_value()


# --- pulled from a channel -------------------------------------------------------------------------


class RemoteCustomer(_Model):
    remote_id: str | None = None
    name: str
    email: str | None = None
    document: str | None = None
    """CPF or CNPJ exactly as the channel sent it; the importer normalises and validates it."""
    phone: str | None = None


class Address(_Model):
    name: str | None = None
    street: str | None = None
    number: str | None = None
    complement: str | None = None
    district: str | None = None
    city: str | None = None
    state: str | None = None
    zip_code: str | None = None
    country: str | None = None


class RemoteOrderItem(_Model):
    sku: str | None = None
    ean: str | None = None
    remote_product_id: str | None = None
    name: str = ""
    quantity: Decimal
    unit_price: Decimal


class RemotePayment(_Model):
    method: str
    """The channel's payment method code; mapped through the channel's de-para table."""
    amount: Decimal
    installments: int = 1


class RemoteShipment(_Model):
    remote_id: str | None = None
    carrier: str | None = None
    """The channel's carrier/shipping-method code; mapped through the de-para table."""
    tracking_code: str | None = None
    cost: Decimal = Decimal("0")


class RemoteOrder(_Model):
    remote_id: str
    number: str
    """The reference people use for the order on the channel (often equal to remote_id)."""
    status: str
    """The channel's own status code (mapped to a local status by the channel's de-para table)."""
    paid: bool
    created_at: datetime
    updated_at: datetime
    customer: RemoteCustomer
    shipping_address: Address | None = None
    items: tuple[RemoteOrderItem, ...]
    payments: tuple[RemotePayment, ...] = ()
    shipments: tuple[RemoteShipment, ...] = ()
    total: Decimal
    shipping_cost: Decimal = Decimal("0")
    discount: Decimal = Decimal("0")
    raw: dict[str, Any] = Field(default_factory=dict)


class RejectedRecord(_Model):
    """A remote record the connector could not parse: parked by the flow, never silently dropped."""

    remote_id: str
    error: str
    raw: dict[str, Any] | list[Any] | str | None = None


class OrderPage(_Model):
    orders: tuple[RemoteOrder, ...]
    rejected: tuple[RejectedRecord, ...] = ()
    next_page: str | None = None
    """Opaque token for the next page of the same window; None when the window is exhausted."""


class OrderSummary(_Model):
    """What an order listing tells without a detail read: enough for the completeness audit."""

    remote_id: str
    status: str | None = None
    """The channel's status code, when the listing carries it."""
    paid: bool | None = None
    """None: the listing does not tell."""
    created_at: datetime | None = None


class OrderSummaryPage(_Model):
    summaries: tuple[OrderSummary, ...]
    unreadable: int = 0
    """Listed entries with no usable id (the orders flow parks those when it pages over them)."""
    next_page: str | None = None


# --- carrier tracking ------------------------------------------------------------------------------


class TrackingState(enum.StrEnum):
    """Where a parcel is, in words every carrier maps onto (the shipment's ``status`` column)."""

    POSTED = "posted"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERY_ATTEMPT = "delivery_attempt"
    """A delivery failed and will be tried again: still on its way."""
    AWAITING_PICKUP = "awaiting_pickup"
    DELIVERED = "delivered"
    RETURNING = "returning"
    RETURNED = "returned"
    EXCEPTION = "exception"
    """Lost, stolen, damaged and the like: someone must call the carrier."""
    NOT_FOUND = "not_found"
    """The carrier does not know the code (yet: labels are often created before posting)."""
    INVALID_CODE = "invalid_code"

    @property
    def final(self) -> bool:
        """Nothing more will happen: tracking stops."""
        return self in (TrackingState.DELIVERED, TrackingState.RETURNED, TrackingState.INVALID_CODE)


class TrackingEvent(_Model):
    code: str
    """The carrier's event code (Correios: family and type, e.g. ``BDE-01``)."""
    description: str = ""
    at: datetime | None = None
    place: str | None = None


class TrackingStatus(_Model):
    """One tracking code's latest state, as ``Channel.fetch_tracking`` reports it."""

    tracking_code: str
    state: TrackingState
    event: TrackingEvent | None = None
    """The latest event (None when the carrier has none: not found, invalid code)."""
    expected_delivery: datetime | None = None
    detail: str | None = None
    """The carrier's message when there is no event (e.g. ``SRO-020: Objeto não encontrado``)."""


# --- pushed to a channel ---------------------------------------------------------------------------


class ProductPush(_Model):
    local_id: int
    sku: str
    ean: str | None = None
    code: str | None = None
    name: str
    description: str = ""
    active: bool = True
    weight_kg: Decimal | None = None
    remote_id: str | None = None
    """Set when the product is already bound on this channel: update instead of create."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StockPush:
    """A plain dataclass, not a model: the daemon builds thousands a second from its own store, where
    there is nothing to validate (measured: a model's validation was a tenth of the push path)."""

    local_id: int
    sku: str
    remote_id: str | None = None
    quantity: int
    manage_stock: bool = True


class PricePush(_Model):
    local_id: int
    sku: str
    remote_id: str | None = None
    list_price: Decimal
    sale_price: Decimal | None = None
    """The promotional price in force now, or None for no promotion."""
    cost_price: Decimal | None = None
    promo_start: datetime | None = None
    promo_end: datetime | None = None


class InvoiceData(_Model):
    number: str
    series: str
    access_key: str
    issued_at: datetime
    danfe_url: str | None = None
    xml_url: str | None = None


class TrackingData(_Model):
    shipment_remote_id: str | None = None
    carrier: str | None = None
    tracking_code: str
    url: str | None = None


class OrderUpdatePush(_Model):
    local_id: int
    remote_id: str
    status: str | None = None
    """The channel's status code to set, or None to leave the status alone."""
    invoice: InvoiceData | None = None
    tracking: tuple[TrackingData, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PushResult:
    """Per-item outcome of a push: one bad item never fails the other 99. A dataclass for the same
    reason as ``StockPush``: one per item, built by our own code."""

    local_id: int
    ok: bool
    remote_id: str | None = None
    error: str | None = None
    retryable: bool = True
    """False when sending the same item again cannot succeed (validation error): park it."""

    @classmethod
    def success(cls, local_id: int, remote_id: str | None = None) -> PushResult:
        return cls(local_id=local_id, ok=True, remote_id=remote_id)

    @classmethod
    def failure(cls, local_id: int, error: str, *, retryable: bool) -> PushResult:
        return cls(local_id=local_id, ok=False, error=error, retryable=retryable)
