"""JSON shapes spoken on the control socket; shared by the server, the CLI and the TUI."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FlowState = Literal["idle", "running", "backing_off", "paused", "disabled", "circuit_open", "needs_reauth"]
Level = Literal["debug", "info", "warning", "error", "critical"]
OutboxState = Literal["pending", "sent", "failed", "parked"]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FlowStatus(WireModel):
    flow: str
    state: FlowState
    enabled: bool = True
    interval_seconds: float
    batch_size: int
    rate_limit_per_minute: float | None = None
    """The flow's own cap within the channel's budget, if it has one."""
    last_run_at: datetime | None = None
    last_ok_at: datetime | None = None
    next_run_at: datetime | None = None
    last_error: str | None = None
    failing_since: datetime | None = None
    consecutive_failures: int = 0
    items_done_last_run: int = 0
    items_failed_last_run: int = 0
    pending: int = 0
    failed: int = 0
    """Outbox rows in failed + parked (push flows) or open import failures (pull flows)."""


class ChannelStatus(WireModel):
    name: str
    kind: str
    enabled: bool
    state: FlowState
    """The channel's own state: paused, circuit_open and needs_reauth override the flows' states."""
    paused: bool = False
    needs_reauth: bool = False
    circuit_open_until: datetime | None = None
    last_error: str | None = None
    failing_since: datetime | None = None
    rate_limit_per_minute: float = 0.0
    rate_budget_remaining: float = 0.0
    flows: list[FlowStatus] = Field(default_factory=list)
    synced_per_minute: list[int] = Field(default_factory=list)
    """Items synced in each of the last 60 minutes, oldest first (for the sparkline)."""


class DaemonStatus(WireModel):
    version: str
    pid: int
    started_at: datetime
    config_path: str | None = None
    settings_loaded_at: datetime | None = None
    last_reload_error: str | None = None
    log_queue_dropped: int = 0
    channels: list[ChannelStatus] = Field(default_factory=list)


class LogRow(WireModel):
    id: int
    ts: datetime
    level: Level
    event: str
    channel: str | None = None
    flow: str | None = None
    run_id: str | None = None
    entity: str | None = None
    entity_id: str | None = None
    remote_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class LogPage(WireModel):
    rows: list[LogRow]
    next_cursor: int | None = None
    """Pass as ``cursor`` to get the next (older) page; None at the end of history."""


class OutboxItem(WireModel):
    id: int
    channel: str
    entity: str
    entity_id: int
    sku: str | None = None
    state: OutboxState
    attempts: int
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    changed_at: datetime | None = None


class ImportFailure(WireModel):
    id: int
    channel: str
    entity: str
    remote_id: str
    error: str
    attempts: int
    state: str
    first_seen_at: datetime
    last_seen_at: datetime


class NeverIntegrated(WireModel):
    channel: str
    product_id: int
    sku: str
    name: str


class Parcel(WireModel):
    """A parcel as the carrier last described it: an order's shipments (``tracking show``), or one
    someone should look at (``problems``: returned or on its way back, lost or damaged, a code the
    carrier rejects, or one it still does not know days after the label was made)."""

    shipment_id: int
    channel: str
    """The sales channel of the order."""
    order_id: int
    order_number: str
    carrier: str
    tracking_code: str
    status: str
    event: str | None = None
    """The carrier's latest event, as it words it."""
    since: datetime
    """When the parcel got this status."""
    checked_at: datetime | None = None
    """When the carrier was last asked (None: not yet)."""
    delivered_at: datetime | None = None


class Problems(WireModel):
    outbox: list[OutboxItem] = Field(default_factory=list)
    import_failures: list[ImportFailure] = Field(default_factory=list)
    never_integrated: list[NeverIntegrated] = Field(default_factory=list)
    parcels: list[Parcel] = Field(default_factory=list)


EventType = Literal["log", "status", "heartbeat"]


class Event(WireModel):
    """One item of ``GET /events``: a log row or a status change, with a monotonically rising id.

    ``heartbeat`` lines (every ~15 s, no payload, id = the last log id sent) let a client tell a quiet
    daemon from a dead connection; log ids come from ``sync_log`` and status events carry the id of
    the latest log row, so ``after=<last id seen>`` resumes without gaps or repeats.
    """

    id: int
    type: EventType
    log: LogRow | None = None
    status: DaemonStatus | None = None


class ActionResult(WireModel):
    ok: bool
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(WireModel):
    error: str
    """A message for people; names what is wrong and where, never a secret."""
    field: str | None = None


# --- Request bodies (POST); the client sends these and the server validates them. ----------------


class OutboxRetryRequest(WireModel):
    ids: list[int] | None = None
    channel: str | None = None


class ProductLinkRequest(WireModel):
    channel: str = Field(min_length=1)
    remote_id: str = Field(min_length=1)


class ProductUnlinkRequest(WireModel):
    channel: str = Field(min_length=1)


class StockSetRequest(WireModel):
    sku: str = Field(min_length=1)
    warehouse: str | None = None
    """None: the default (first) warehouse."""
    quantity: int = Field(ge=0)


class StockMoveRequest(WireModel):
    sku: str = Field(min_length=1)
    warehouse: str | None = None
    delta: int
    reason: str = "adjust"
    reference: str | None = None


class PriceSetRequest(WireModel):
    sku: str = Field(min_length=1)
    list_price: Decimal = Field(ge=0)
    sale_price: Decimal | None = Field(default=None, ge=0)
    cost_price: Decimal | None = Field(default=None, ge=0)
    promo_price: Decimal | None = Field(default=None, ge=0)
    promo_start: datetime | None = None
    promo_end: datetime | None = None


class InvoiceAddRequest(WireModel):
    channel: str = Field(min_length=1)
    order_number: str = Field(min_length=1)
    number: str = Field(min_length=1)
    series: str = Field(min_length=1)
    access_key: str = Field(min_length=1)
    issued_at: datetime
    danfe_url: str | None = None
    xml_url: str | None = None


class TrackingAddRequest(WireModel):
    channel: str = Field(min_length=1)
    order_number: str = Field(min_length=1)
    code: str = Field(min_length=1)
    carrier: str | None = None
    url: str | None = None
