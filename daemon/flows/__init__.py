"""One module per flow; ``build_job`` picks the job that runs a (channel, flow)."""

from __future__ import annotations

from channels.base import Channel
from channels.models import FlowName
from daemon.clock import Clock
from daemon.flows.config import ChannelConfig
from daemon.flows.order_updates import OrderUpdatesJob
from daemon.flows.orders import OrdersJob
from daemon.flows.prices import PricesJob
from daemon.flows.products import ProductsJob
from daemon.flows.runner import FlowJob
from daemon.flows.stock import StockJob
from daemon.flows.tracking import TrackingJob
from daemon.statedb import StateDB

_JOBS: dict[
    FlowName, type[OrdersJob | StockJob | PricesJob | ProductsJob | OrderUpdatesJob | TrackingJob]
] = {
    FlowName.ORDERS: OrdersJob,
    FlowName.STOCK: StockJob,
    FlowName.PRICES: PricesJob,
    FlowName.PRODUCTS: ProductsJob,
    FlowName.ORDER_UPDATES: OrderUpdatesJob,
    FlowName.TRACKING: TrackingJob,
}


def implemented_flows() -> frozenset[FlowName]:
    return frozenset(_JOBS)


def build_job(
    flow: FlowName, config: ChannelConfig, connector: Channel, db: StateDB, clock: Clock
) -> FlowJob:
    try:
        job_class = _JOBS[flow]
    except KeyError:
        raise ValueError(f"the {flow.value} flow is not implemented yet") from None
    return job_class(config, connector, db, clock)
