"""An in-memory daemon behind the real ControlServer, for the dashboard's tests.

It implements ``daemon.controlapi.runtime.Runtime``: it records every call, changes its state the way
the daemon would (pause really pauses, retry really moves items back to pending), publishes status and
log events on a real EventBus, and holds a deterministic scenario for snapshots. The lead can swap it
for the real daemon with the simulator; the tests only use ``status()``/``problems()`` and the recorded
calls to check that state changed.
"""

from __future__ import annotations

import json
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from daemon.controlapi.wire import (
    ActionResult,
    ChannelStatus,
    DaemonStatus,
    FlowStatus,
    ImportFailure,
    Level,
    LogPage,
    LogRow,
    NeverIntegrated,
    OutboxItem,
    OutboxState,
    Parcel,
    Problems,
)
from daemon.events import EventBus

T0 = datetime(2026, 1, 25, 17, 0, tzinfo=UTC)
"""The frozen "now" of the scenario (14:00 in São Paulo)."""
LEVELS: tuple[Level, ...] = ("debug", "info", "warning", "error", "critical")


def _flow(flow: str, state: str = "idle", **extra: Any) -> FlowStatus:
    values: dict[str, Any] = {
        "flow": flow,
        "state": state,
        "interval_seconds": 120.0,
        "batch_size": 50,
        "last_run_at": T0 - timedelta(minutes=2),
        "last_ok_at": T0 - timedelta(minutes=2),
        "next_run_at": T0 + timedelta(seconds=80),
    }
    values.update(extra)
    return FlowStatus.model_validate(values)


def scenario_channels() -> list[ChannelStatus]:
    """Three channels: one healthy with a failing flow, one that needs re-auth, one paused."""
    loja = ChannelStatus(
        name="loja",
        kind="lojaintegrada",
        enabled=True,
        state="running",
        rate_limit_per_minute=100,
        rate_budget_remaining=82,
        flows=[
            _flow("orders", items_done_last_run=12),
            _flow("stock", "running", items_done_last_run=40, items_failed_last_run=1, pending=3, failed=1),
            _flow(
                "prices",
                "backing_off",
                last_error="HTTP 503 from the channel; retrying in 30s",
                failing_since=T0 - timedelta(minutes=7),
                consecutive_failures=3,
                failed=1,
                last_ok_at=T0 - timedelta(minutes=9),
            ),
            _flow("products", "disabled", enabled=False, next_run_at=None, last_run_at=None, last_ok_at=None),
        ],
        synced_per_minute=[(i * 7) % 23 for i in range(60)],
    )
    meli = ChannelStatus(
        name="meli",
        kind="mercadolivre",
        enabled=True,
        state="needs_reauth",
        needs_reauth=True,
        last_error="refresh token rejected (invalid_grant): authorise the app again",
        failing_since=T0 - timedelta(hours=2),
        flows=[
            _flow("orders", "needs_reauth", failed=1, next_run_at=None),
            _flow("stock", "needs_reauth", pending=17, next_run_at=None),
        ],
        synced_per_minute=[0] * 60,
    )
    vtex = ChannelStatus(
        name="vtex",
        kind="vtex",
        enabled=True,
        state="paused",
        paused=True,
        flows=[
            _flow("orders", "paused", next_run_at=None),
            _flow("stock", "paused", next_run_at=None),
            _flow("products", "paused", next_run_at=None),
        ],
        synced_per_minute=[3 if i % 10 == 0 else 0 for i in range(60)],
    )
    return [loja, meli, vtex]


def scenario_logs(count: int = 40) -> list[LogRow]:
    events: list[tuple[Level, str, str, str | None, dict[str, Any]]] = [
        ("info", "orders", "orders_pulled", "order", {"count": 3, "cursor": "2026-01-25T16:58:00Z"}),
        ("info", "stock", "stock_pushed", "product", {"sku": "CAM-001-P", "quantity": 7}),
        ("warning", "prices", "channel_unavailable", None, {"status": 503, "retry_in": "30s"}),
        ("error", "orders", "order_import_failed", "order", {"error": "CPF inválido", "remote_id": "10234"}),
        ("debug", "stock", "outbox_read", None, {"batch": 50}),
    ]
    rows: list[LogRow] = []
    for i in range(count):
        level, flow, event, entity, data = events[i % len(events)]
        rows.append(
            LogRow(
                id=i + 1,
                ts=T0 - timedelta(seconds=10 * (count - i)),
                level=level,
                event=event,
                channel="loja" if i % 3 else "meli",
                flow=flow,
                run_id=f"run-{i // 5:03d}",
                entity=entity,
                entity_id=str(100 + i) if entity else None,
                data=dict(data),
            )
        )
    return rows


class FakeRuntime:
    def __init__(self, *, now: datetime = T0, logs: list[LogRow] | None = None) -> None:
        self.now = now
        self.started_at = now - timedelta(hours=3)
        self.channels = scenario_channels()
        self.rows: list[LogRow] = scenario_logs() if logs is None else logs
        self.bus = EventBus(last_id=self.rows[-1].id if self.rows else 0)
        self.erp = self  # one fake plays both the runtime and its ERP operations
        self.products = {"CAM-001-P": 1, "CAN-002": 2, "KIT-PRESENTE": 7}
        self.outbox_items = [
            OutboxItem(
                id=31,
                channel="loja",
                entity="stock",
                entity_id=1,
                sku="CAM-001-P",
                state="failed",
                attempts=4,
                next_attempt_at=now + timedelta(minutes=5),
                last_error="HTTP 422: estoque negativo não permitido",
                changed_at=now - timedelta(minutes=12),
            ),
            OutboxItem(
                id=32,
                channel="loja",
                entity="price",
                entity_id=2,
                sku="CAN-002",
                state="parked",
                attempts=10,
                last_error="price below the channel's minimum (R$ 5,00)",
                changed_at=now - timedelta(hours=1),
            ),
        ]
        self.import_failures = [
            ImportFailure(
                id=5,
                channel="meli",
                entity="order",
                remote_id="2000004123",
                error="customer document is not a valid CPF or CNPJ: 123.456.789-00",
                attempts=3,
                state="open",
                first_seen_at=now - timedelta(hours=5),
                last_seen_at=now - timedelta(minutes=30),
            )
        ]
        self.never_integrated = [
            NeverIntegrated(channel="vtex", product_id=7, sku="KIT-PRESENTE", name="Kit presente caneca")
        ]
        self.parcels: list[Parcel] = []
        """Empty unless a test puts some in (the snapshots show the usual three kinds)."""
        # What the dashboard asked for (tests assert on these and on the state they changed).
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.log_queries: list[dict[str, Any]] = []
        self.reloads = 0
        self.stock_pushes: list[str] = []
        self.sync_requests: list[tuple[str | None, str | None]] = []

    # -- helpers for tests --

    def add_log(
        self, event: str, *, level: Level = "info", channel: str | None = "loja", **data: Any
    ) -> LogRow:
        row = LogRow(
            id=(self.rows[-1].id + 1) if self.rows else 1,
            ts=self.now,
            level=level,
            event=event,
            channel=channel,
            data=data,
        )
        self.rows.append(row)
        self.bus.publish_logs([row])
        return row

    def publish_status(self) -> None:
        self.bus.publish_status(self._status())

    def channel(self, name: str) -> ChannelStatus:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(f"unknown channel {name!r}")

    def flow(self, channel: str, flow: str) -> FlowStatus:
        for candidate in self.channel(channel).flows:
            if candidate.flow == flow:
                return candidate
        raise KeyError(f"channel {channel!r} has no flow {flow!r}")

    def _status(self) -> DaemonStatus:
        return DaemonStatus(
            version="0.1.0",
            pid=4242,
            started_at=self.started_at,
            config_path="/etc/storesync/settings.toml",
            settings_loaded_at=self.started_at,
            channels=deepcopy(self.channels),
        )

    def _act(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    # -- Runtime: reads --

    async def status(self) -> DaemonStatus:
        return self._status()

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
        query = {
            "channel": channel,
            "flow": flow,
            "level": level,
            "entity": entity,
            "entity_id": entity_id,
            "since": since,
            "until": until,
            "q": q,
            "cursor": cursor,
            "limit": limit,
        }
        self.log_queries.append(query)
        wanted = LEVELS[LEVELS.index(level) :] if level in LEVELS else LEVELS

        def keep(row: LogRow) -> bool:
            return (
                (cursor is None or row.id < cursor)
                and (channel is None or row.channel == channel)
                and (flow is None or row.flow == flow)
                and row.level in wanted
                and (entity is None or row.entity == entity)
                and (entity_id is None or row.entity_id == entity_id)
                and (since is None or row.ts >= since)
                and (until is None or row.ts < until)
                and (not q or q.lower() in (row.event + json.dumps(row.data, ensure_ascii=False)).lower())
            )

        found = [row for row in reversed(self.rows) if keep(row)]
        page = found[:limit]
        more = len(found) > limit
        return LogPage(rows=page, next_cursor=page[-1].id if more and page else None)

    async def log_rows_after(self, after_id: int, limit: int) -> list[LogRow]:
        return [row for row in self.rows if row.id > after_id][:limit]

    async def outbox(
        self, state: OutboxState | None, channel: str | None, limit: int, after_id: int | None
    ) -> list[OutboxItem]:
        items = [
            i
            for i in self.outbox_items
            if (state is None or i.state == state)
            and (channel is None or i.channel == channel)
            and (after_id is None or i.id > after_id)
        ]
        return items[:limit]

    async def problems(self) -> Problems:
        return Problems(
            outbox=[i for i in self.outbox_items if i.state in ("failed", "parked")],
            import_failures=[f for f in self.import_failures if f.state == "open"],
            never_integrated=list(self.never_integrated),
            parcels=list(self.parcels),
        )

    async def explain(self, channel: str, entity: str, sku: str) -> dict[str, Any]:
        self._act("explain", channel, entity, sku)
        return {"sku": sku, "channel": channel, "entity": entity, "value": 7}

    # -- Runtime: actions --

    async def sync_now(self, channel: str | None, flow: str | None) -> ActionResult:
        self._act("sync_now", channel, flow)
        if channel is not None:
            if flow is not None:
                self.flow(channel, flow)
            else:
                self.channel(channel)
        self.sync_requests.append((channel, flow))
        target = "everything" if channel is None else (channel if flow is None else f"{channel}/{flow}")
        self.add_log("sync_requested", channel=channel, target=target)
        return ActionResult(ok=True, message=f"sync requested: {target}")

    async def pause(self, channel: str, flow: str | None) -> ActionResult:
        self._act("pause", channel, flow)
        if flow is None:
            found = self.channel(channel)
            found.paused, found.state = True, "paused"
            for each in found.flows:
                each.state = "paused"
        else:
            self.flow(channel, flow).state = "paused"
        self.publish_status()
        return ActionResult(ok=True, message=f"paused {channel if flow is None else f'{channel}/{flow}'}")

    async def resume(self, channel: str, flow: str | None) -> ActionResult:
        self._act("resume", channel, flow)
        if flow is None:
            found = self.channel(channel)
            found.paused, found.state = False, "idle"
            for each in found.flows:
                each.state = "idle"
        else:
            self.flow(channel, flow).state = "idle"
        self.publish_status()
        return ActionResult(ok=True, message=f"resumed {channel if flow is None else f'{channel}/{flow}'}")

    async def reload(self) -> ActionResult:
        self._act("reload")
        self.reloads += 1
        return ActionResult(ok=True, message="settings reloaded")

    async def push_stock(self, sku: str) -> ActionResult:
        self._act("push_stock", sku)
        if sku not in self.products:
            raise KeyError(f"unknown SKU {sku!r}")
        self.stock_pushes.append(sku)
        return ActionResult(ok=True, message=f"stock of {sku} queued for 3 channels")

    async def link_product(self, sku: str, channel: str, remote_id: str) -> ActionResult:
        self._act("link_product", sku, channel, remote_id)
        return ActionResult(ok=True, message=f"{sku} linked to {remote_id} on {channel}")

    async def unlink_product(self, sku: str, channel: str) -> ActionResult:
        self._act("unlink_product", sku, channel)
        return ActionResult(ok=True, message=f"{sku} unlinked on {channel}")

    async def retry_outbox(self, ids: list[int] | None, channel: str | None) -> ActionResult:
        self._act("retry_outbox", ids, channel)
        retried = 0
        for item in self.outbox_items:
            if item.state not in ("failed", "parked"):
                continue
            if (ids is None or item.id in ids) and (channel is None or item.channel == channel):
                item.state, item.attempts = "pending", 0
                retried += 1
        if ids is not None and retried == 0:
            raise KeyError(f"no failed or parked outbox item with id {ids}")
        self.publish_status()
        return ActionResult(
            ok=True, message=f"{retried} outbox item(s) queued again", details={"count": retried}
        )

    async def dismiss_import_failure(self, failure_id: int) -> ActionResult:
        self._act("dismiss_import_failure", failure_id)
        for failure in self.import_failures:
            if failure.id == failure_id and failure.state == "open":
                failure.state = "dismissed"
                self.publish_status()
                return ActionResult(ok=True, message=f"import failure {failure_id} dismissed")
        raise KeyError(f"no open import failure with id {failure_id}")

    # -- Runtime: ERP writes (the dashboard offers none of these) --

    async def stock_set(self, sku: str, warehouse: str | None, quantity: int) -> ActionResult:
        raise ValueError("not supported by the fake runtime")

    async def stock_move(
        self, sku: str, warehouse: str | None, delta: int, reason: str, reference: str | None
    ) -> ActionResult:
        raise ValueError("not supported by the fake runtime")

    async def order_parcels(self, channel: str, order_number: str) -> list[Parcel]:
        return [p for p in self.parcels if (p.channel, p.order_number) == (channel, order_number)]

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
        raise ValueError("not supported by the fake runtime")

    async def import_products_csv(self, text: str) -> ActionResult:
        raise ValueError("not supported by the fake runtime")

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
        raise ValueError("not supported by the fake runtime")

    async def tracking_add(
        self, channel: str, order_number: str, carrier: str | None, code: str, url: str | None
    ) -> ActionResult:
        raise ValueError("not supported by the fake runtime")
