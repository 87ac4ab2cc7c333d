"""What the flows need to know about a channel, independent of how settings are written down."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from channels.models import FlowName
from daemon.flows.runner import FlowTiming


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    kind: str
    enabled: bool = True
    order_statuses: frozenset[str] = frozenset()
    """Channel status codes to import; empty means every status."""
    only_paid: bool = False
    link_by: Literal["sku", "ean", "code"] = "sku"
    create_missing_products: bool = True
    stock_warehouses: tuple[str, ...] = ("MAIN",)
    sale_warehouse: str = "MAIN"
    stock_buffer: int = 0
    channel_holds_stock_in: frozenset[str] = frozenset()
    """Channel status codes in which the channel itself holds stock back for its own orders."""
    price_adjust_percent: Decimal = Decimal("0")
    cursor_lookback: float = 600.0
    initial_lookback: float = 30 * 86400.0
    """How far back the very first order pull reaches."""
    order_audit_interval: float = 86400.0
    """Seconds between completeness audits of the orders flow (0: off)."""
    order_audit_window: float = 93600.0
    """How far back (by creation time) an audit compares the channel's orders with the ERP's."""
    tracked_carriers: tuple[str, ...] = ()
    """Carrier channels: the local carrier codes whose shipments they track."""
    delivered_status: str = "delivered"
    """Carrier channels: the local order status once every parcel of an order arrived ("": leave it)."""
    tracking_horizon_days: float = 60.0
    """Carrier channels: shipments older than this are no longer asked about."""
    outbox_max_attempts: int = 8
    breaker_failures: int = 5
    breaker_cooldown: float = 120.0
    mappings: dict[str, dict[str, str]] = field(default_factory=dict)
    """de-para: kind -> {local: remote}."""
    flows: dict[FlowName, FlowTiming] = field(default_factory=dict)

    def remote_status(self, local: str) -> str:
        return self.mappings.get("status", {}).get(local, local)

    def local_status(self, remote: str) -> str:
        for local, mapped in self.mappings.get("status", {}).items():
            if mapped == remote:
                return local
        return remote

    def local_code(self, kind: str, remote: str | None) -> str | None:
        if remote is None:
            return None
        for local, mapped in self.mappings.get(kind, {}).items():
            if mapped == remote:
                return local
        return remote
