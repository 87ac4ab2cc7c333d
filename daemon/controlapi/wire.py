"""JSON shapes spoken on the control socket; shared by the server, the CLI and the TUI."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FlowState = Literal[
    "idle", "running", "backing_off", "paused", "disabled", "circuit_open", "needs_reauth"
]
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


class Problems(WireModel):
    outbox: list[OutboxItem] = Field(default_factory=list)
    import_failures: list[ImportFailure] = Field(default_factory=list)
    never_integrated: list[NeverIntegrated] = Field(default_factory=list)


class Event(WireModel):
    """One item of ``GET /events``: a log row or a status change, with a monotonically rising id."""

    id: int
    type: Literal["log", "status"]
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
