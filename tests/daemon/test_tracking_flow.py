"""The tracking flow against the real store, with a scripted carrier: which shipments it asks about,
what it keeps, and when an order becomes delivered (and is queued for its own channel)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from pydantic import SecretStr

from channels.base import Channel, TransientError
from channels.correios import CorreiosChannel
from channels.http import HttpClient, open_transport
from channels.models import FlowName, TrackingEvent, TrackingState, TrackingStatus
from channels.ratelimit import RateLimiter
from channels.simulators.correios import CorreiosSimulator, make_code
from daemon.clock import SYSTEM_CLOCK, FakeClock, utc_iso
from daemon.erp import ErpService
from daemon.flows import build_job
from daemon.flows.runner import FlowTiming, RunContext, RunResult
from daemon.secrets import SECRETS as REGISTRY
from daemon.store import orders, outbox
from daemon.supervisor import ChannelSupervisor
from tests.channels.channel_support import make_context
from tests.daemon.conftest import World

INTERVAL = 1800.0
USER, ACCESS, CARD = "loja-usuario", "codigo-SECRET-4321", "0067599079"
SECRETS = (USER, ACCESS)


class ScriptedCarrier(Channel):
    """Answers from a dict; remembers every request."""

    kind = "scripted"
    supported_flows = frozenset({FlowName.TRACKING})

    def __init__(self) -> None:
        self.states: dict[str, TrackingState] = {}
        self.requests: list[list[str]] = []

    async def fetch_tracking(self, codes: Sequence[str]) -> list[TrackingStatus]:
        self.requests.append(list(codes))
        return [
            TrackingStatus(
                tracking_code=code,
                state=self.states.get(code, TrackingState.NOT_FOUND),
                event=TrackingEvent(code="BDE-01", description="Objeto entregue ao destinatário")
                if self.states.get(code) is TrackingState.DELIVERED
                else None,
            )
            for code in codes
        ]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def carrier() -> ScriptedCarrier:
    return ScriptedCarrier()


async def track(world: World, carrier: Channel, clock: FakeClock, batch_size: int = 50) -> RunResult:
    config = replace(
        world.config,
        name="correios",
        kind="scripted",
        tracked_carriers=("correios_pac",),
        flows={FlowName.TRACKING: FlowTiming(INTERVAL, batch_size)},
    )
    job = build_job(FlowName.TRACKING, config, carrier, world.db, clock)
    log = structlog.get_logger("test").bind(channel="correios", flow="tracking")
    return await job.run_once(RunContext("correios", FlowName.TRACKING, "run1", batch_size, log))


async def order_with_parcels(world: World, *codes: str, carrier: str = "correios_pac") -> int:
    sku = world.sim.state()["products"][0]["sku"]
    [numero] = world.sim.create_orders(1, items=[(sku, 1)], status="pedido_pago")
    await world.run(FlowName.ORDERS)
    async with world.db.write() as conn:
        order_id = await orders.find_order_id(conn, "loja", str(numero))
        assert order_id is not None
        for code in codes:
            await orders.add_tracking(conn, order_id, carrier, code)
    return order_id


async def shipment_states(world: World, order_id: int) -> list[str]:
    async with world.db.read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT status FROM shipments WHERE order_id = ? AND tracking_code IS NOT NULL ORDER BY id",
            (order_id,),
        )
    return [str(r[0]) for r in rows]


async def order_status(world: World, order_id: int) -> str:
    async with world.db.read() as conn:
        record = await orders.get_order(conn, order_id)
    assert record is not None
    return record.status


async def test_an_order_is_delivered_once_every_parcel_arrived(
    world: World, carrier: ScriptedCarrier, clock: FakeClock
) -> None:
    single = await order_with_parcels(world, "QP000000001BR")
    double = await order_with_parcels(world, "QP000000002BR", "QP000000003BR")
    carrier.states = {
        code: TrackingState.IN_TRANSIT for code in ("QP000000001BR", "QP000000002BR", "QP000000003BR")
    }
    result = await track(world, carrier, clock)
    assert result.done == 3 and len(carrier.requests) == 1  # one request for the whole batch
    assert await shipment_states(world, double) == ["in_transit", "in_transit"]

    carrier.states["QP000000001BR"] = TrackingState.DELIVERED
    carrier.states["QP000000002BR"] = TrackingState.DELIVERED
    clock.advance(INTERVAL)
    with structlog.testing.capture_logs() as logs:
        await track(world, carrier, clock)
    assert await order_status(world, single) == "delivered"
    assert await order_status(world, double) == "paid"  # one parcel still on its way
    delivered = [e for e in logs if e["event"] == "order.delivered"]
    assert [e["entity_id"] for e in delivered] == [str(single)]
    async with world.db.read() as conn:
        queued = [
            i.entity_id
            for i in await outbox.list_items(conn, channel="loja", entity="order_update")
            if i.state == "pending"
        ]
    assert single in queued  # the status goes to the order's own channel

    carrier.states["QP000000003BR"] = TrackingState.DELIVERED
    clock.advance(INTERVAL)
    await track(world, carrier, clock)
    assert await order_status(world, double) == "delivered"
    assert carrier.requests[-1] == ["QP000000003BR"]  # delivered parcels are not asked about again
    async with world.db.read() as conn:
        rows = list(await conn.execute_fetchall("SELECT delivered_at, tracking_event FROM shipments"))
    assert all(r[0] is not None and "BDE-01" in r[1] for r in rows)


async def test_a_shipment_waits_half_the_interval_before_it_is_asked_again(
    world: World, carrier: ScriptedCarrier, clock: FakeClock
) -> None:
    await order_with_parcels(world, "QP000000001BR")
    carrier.states["QP000000001BR"] = TrackingState.POSTED
    await track(world, carrier, clock)
    again = await track(world, carrier, clock)
    assert len(carrier.requests) == 1 and not again.contacted
    clock.advance(INTERVAL / 2 + 1)
    await track(world, carrier, clock)
    assert len(carrier.requests) == 2


async def test_a_carrier_that_loses_a_parcel_for_a_moment_does_not_undo_its_state(
    world: World, carrier: ScriptedCarrier, clock: FakeClock
) -> None:
    order_id = await order_with_parcels(world, "QP000000001BR")
    await track(world, carrier, clock)
    assert await shipment_states(world, order_id) == ["not_found"]  # a label not posted yet
    carrier.states["QP000000001BR"] = TrackingState.IN_TRANSIT
    clock.advance(INTERVAL)
    await track(world, carrier, clock)
    del carrier.states["QP000000001BR"]  # the carrier's lookup fails once
    clock.advance(INTERVAL)
    result = await track(world, carrier, clock)
    assert await shipment_states(world, order_id) == ["in_transit"] and result.done == 0
    assert len(carrier.requests) == 3


async def test_only_the_tracked_carriers_and_open_orders_are_followed(
    world: World, carrier: ScriptedCarrier, clock: FakeClock
) -> None:
    other = await order_with_parcels(world, "JJ000000001BR", carrier="jadlog")
    cancelled = await order_with_parcels(world, "QP000000009BR")
    async with world.db.write() as conn:
        await orders.set_local_status(conn, cancelled, "cancelled")
    carrier.states["QP000000009BR"] = TrackingState.DELIVERED
    await track(world, carrier, clock)
    assert carrier.requests == [["QP000000009BR"]]
    assert await shipment_states(world, other) == ["pending"]
    assert await order_status(world, cancelled) == "cancelled"  # a delivery never revives it


async def test_batches_follow_the_batch_size_and_a_run_covers_them_all(
    world: World, carrier: ScriptedCarrier, clock: FakeClock
) -> None:
    codes = [f"QP{n:09d}BR" for n in range(1, 6)]
    await order_with_parcels(world, *codes)
    carrier.states = {code: TrackingState.IN_TRANSIT for code in codes}
    result = await track(world, carrier, clock, batch_size=2)
    assert [len(r) for r in carrier.requests] == [2, 2, 1]
    assert result.done == 5 and not result.more


@pytest.fixture
async def correios() -> AsyncIterator[tuple[CorreiosSimulator, CorreiosChannel]]:
    """The loopback Correios simulator and the real connector pointed at it."""
    async with CorreiosSimulator(USER, ACCESS, cartao_postagem=CARD) as sim:
        context = make_context(
            sim.url,
            name="correios",
            kind="correios",
            secrets={"client_id": SecretStr(USER), "client_secret": SecretStr(ACCESS)},
            options={"cartao_postagem": CARD, "backoff_base_seconds": 0.001, "backoff_max_seconds": 0.01},
            max_retries=2,
            timeout_seconds=0.5,
        )
        limiter = RateLimiter(context.rate_limit_per_minute, context.rate_limit_burst, SYSTEM_CLOCK)
        http = HttpClient(context, clock=SYSTEM_CLOCK, limiter=limiter)
        try:
            yield sim, CorreiosChannel(context, http)
        finally:
            await http.aclose()
            await limiter.aclose()


async def test_the_correios_connector_follows_a_parcel_to_delivery(
    world: World, clock: FakeClock, correios: tuple[CorreiosSimulator, CorreiosChannel]
) -> None:
    """The real connector against the loopback Correios simulator, story by story."""
    sim, connector = correios
    delivered = sim.post_object(story="delivered")
    returned = sim.post_object(story="returned")
    order_id = await order_with_parcels(world, delivered)
    other = await order_with_parcels(world, returned)
    await track(world, connector, clock)
    assert await shipment_states(world, order_id) == ["posted"]
    moving = {delivered, returned}
    while moving:
        for code in sorted(moving):
            try:
                sim.advance(code)
            except ValueError:  # the end of its story
                moving.discard(code)
        clock.advance(INTERVAL)
        with structlog.testing.capture_logs() as logs:
            await track(world, connector, clock)
        assert not any(secret in str(event) for event in logs for secret in SECRETS)
    assert await shipment_states(world, order_id) == ["delivered"]
    assert await order_status(world, order_id) == "delivered"
    erp = ErpService(world.db, clock, locale="en")
    async with world.db.read() as conn:
        number = (await orders.get_order(conn, order_id)).number  # type: ignore[union-attr]
    (parcel,) = await erp.order_parcels("loja", number)  # what `storesync tracking show` prints
    assert (parcel.tracking_code, parcel.status, parcel.carrier) == (delivered, "delivered", "correios_pac")
    assert parcel.delivered_at is not None and parcel.event and "entregue" in parcel.event.lower()
    with pytest.raises(KeyError, match="no order"):
        await erp.order_parcels("loja", "no-such-order")
    assert await shipment_states(world, other) == ["returned"]
    assert await order_status(world, other) == "paid"
    assert sim.state()["counters"]["by_route"].get("POST /token/v1/autentica/cartaopostagem") == 1


@pytest.mark.parametrize("fault", ["5xx", "timeout", "reset", "malformed_json", "wrong_content_type"])
async def test_a_carrier_outage_loses_nothing_and_the_next_run_catches_up(
    world: World, clock: FakeClock, correios: tuple[CorreiosSimulator, CorreiosChannel], fault: str
) -> None:
    sim, connector = correios
    sim.timeout_fault_seconds = 5.0  # the client gives up first (timeout_seconds=0.5)
    code = sim.post_object(story="delivered")
    order_id = await order_with_parcels(world, code)
    await track(world, connector, clock)  # posted; the token is fetched
    sim.advance(code)
    sim.inject_fault(fault, count=20, paths="/srorastro")  # every attempt of the next run
    clock.advance(INTERVAL)
    with pytest.raises(TransientError):
        await track(world, connector, clock)
    assert await shipment_states(world, order_id) == ["posted"]  # nothing half-written
    sim.clear_faults()
    await track(world, connector, clock)  # the fault is over: still due, asked again at once
    assert await shipment_states(world, order_id) == ["in_transit"]


async def test_the_daemon_learns_the_carriers_runtime_token_for_log_redaction(world: World) -> None:
    """The supervisor gives its HttpClient the process-wide registry: a bearer token the Correios
    connector obtains at run time is redacted from every log line, like a configured secret."""
    transport = open_transport()
    async with CorreiosSimulator(USER, ACCESS, cartao_postagem=CARD) as sim:
        context = make_context(
            sim.url,
            name="correios",
            kind="correios",
            secrets={"client_id": SecretStr(USER), "client_secret": SecretStr(ACCESS)},
            options={"cartao_postagem": CARD},
        )
        config = replace(
            world.config,
            name="correios",
            kind="correios",
            tracked_carriers=("correios_pac",),
            flows={FlowName.TRACKING: FlowTiming(INTERVAL, 50)},
        )
        supervisor = ChannelSupervisor(
            config, context, db=world.db, clock=SYSTEM_CLOCK, transport=transport, job_factory=build_job
        )
        try:
            await supervisor.connector.fetch_tracking([sim.post_object()])
        finally:
            await supervisor.limiter.aclose()
            await transport.aclose()
        (token,) = sim.tokens
        assert token in REGISTRY
        assert REGISTRY.redact(f"Authorization: Bearer {token}") == "Authorization: Bearer ***"


async def test_parcels_that_need_a_person_are_listed_among_the_problems(
    world: World, carrier: ScriptedCarrier, clock: FakeClock
) -> None:
    names = ("returned", "lost", "unknown_old", "unknown_new", "delivered", "moving", "cancelled")
    rng = random.Random(40)
    codes = {name: make_code(rng) for name in names}
    order_of = {name: await order_with_parcels(world, code) for name, code in codes.items()}
    carrier.states = {
        codes["returned"]: TrackingState.RETURNED,
        codes["lost"]: TrackingState.EXCEPTION,
        codes["delivered"]: TrackingState.DELIVERED,
        codes["moving"]: TrackingState.IN_TRANSIT,
        codes["cancelled"]: TrackingState.RETURNED,
    }
    erp = ErpService(world.db, clock)
    assert (await erp.problems()).parcels == []  # nobody asked the carrier yet
    await track(world, carrier, clock)
    async with world.db.write() as conn:
        four_days_ago = utc_iso(clock.now() - timedelta(days=4))
        await conn.execute(
            "UPDATE shipments SET created_at = ? WHERE tracking_code = ?",
            (four_days_ago, codes["unknown_old"]),
        )
        await conn.execute(
            "UPDATE orders SET stock_state = 'released' WHERE id = ?", (order_of["cancelled"],)
        )
    parcels = (await erp.problems()).parcels
    assert {p.tracking_code: p.status for p in parcels} == {
        codes["returned"]: "returned",
        codes["lost"]: "exception",
        codes["unknown_old"]: "not_found",
    }
    returned = next(p for p in parcels if p.status == "returned")
    assert returned.channel == "loja" and returned.order_id == order_of["returned"]
    assert returned.carrier == "correios_pac" and returned.checked_at is not None
    sixty_one_days_ago = utc_iso(clock.now() - timedelta(days=61))
    async with world.db.write() as conn:  # beyond the tracking horizon: no longer shown
        await conn.execute("UPDATE shipments SET created_at = ?", (sixty_one_days_ago,))
    assert (await erp.problems()).parcels == []
