"""Carrier faults: the Correios channel misbehaves while the Loja Integrada channel runs clean, in one
daemon process (the process-level companion of tests/daemon/test_tracking_flow.py).

* A bearer token that expires mid-run is a 401 the daemon answers by itself: one new token, the
  parcel's next event is recorded, no outage is logged and nobody is asked to re-authenticate.
* An outage of the carrier (5xx, timeouts, resets, garbage, 429) is noticed and logged once, the
  sales channel keeps syncing stock meanwhile, and once it ends the parcel catches up: nothing the
  carrier said is lost, and the order is delivered when its parcel is.
* Credentials the carrier refuses for good (a 401 from the token endpoint too) stop the carrier
  channel as ``needs_reauth`` until ``resume``; the sales channel does not notice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from channels.simulators.correios import CorreiosSimulator
from daemon.controlapi.wire import ChannelStatus
from tests.faults.harness import (
    Setup,
    atp_by_sku,
    erp_move_stock,
    eventually,
    last_log_id,
    log_events,
    running_setup,
    ship,
    shipment,
    sim_stock,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]

SALES, CARRIER = "loja", "correios"
TOKEN_PATH = "/token/"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig() -> AsyncIterator[Setup]:
    async with running_setup(
        [SALES],
        carrier={"timeout_fault_seconds": 3.0},
        flows={SALES: {"orders": {"interval": "1s", "batch_size": 50}}},
    ) as setup:
        yield setup


def carrier_sim(setup: Setup) -> CorreiosSimulator:
    assert setup.carrier is not None
    return setup.carrier


async def carrier_status(setup: Setup) -> ChannelStatus:
    return await setup.daemon.channel_status(CARRIER)


async def carrier_idle(setup: Setup) -> None:
    carrier_sim(setup).clear_faults()
    if (await carrier_status(setup)).needs_reauth:
        async with setup.daemon.client() as client:
            await client.resume(CARRIER)

    async def idle() -> bool:
        status = await carrier_status(setup)
        return status.failing_since is None and not status.needs_reauth

    await eventually(idle, timeout=30, what="the carrier channel idle")


async def sales_keeps_syncing(setup: Setup, delta: int) -> None:
    """A stock movement reaches the sales channel (whatever the carrier is doing)."""
    sku = setup.skus[1]
    await asyncio.to_thread(erp_move_stock, setup.state_db, sku, delta, "while-the-carrier-is-down")
    expected = (await atp_by_sku(setup.state_db))[sku]
    await eventually(
        lambda: sim_stock(setup.sims[SALES])[sku] == expected,
        timeout=15,
        what=f"{sku}={expected} on the sales channel",
    )


async def follow_to_delivery(setup: Setup, code: str) -> None:
    sim = carrier_sim(setup)
    while True:
        try:
            sim.advance(code)
        except ValueError:  # the end of its story
            break
    await eventually(
        lambda: shipment(setup, code) == ("delivered", "delivered"),
        timeout=20,
        what=f"{code} delivered and its order with it",
    )


def outage_events(setup: Setup, after: int) -> dict[str, int]:
    return {
        event: len(log_events(setup.log_db, event, channel=CARRIER, after_id=after))
        for event in ("channel.down", "channel.recovered", "channel.needs_reauth")
    }


async def test_an_expired_token_is_renewed_without_an_outage(rig: Setup) -> None:
    await carrier_idle(rig)
    sim = carrier_sim(rig)
    code = await ship(rig, SALES)
    marker = last_log_id(rig.log_db)
    issued = sim.tokens_issued
    sim.expire_tokens()  # the carrier forgets every token: the next request gets 401
    sim.advance(code)
    await eventually(lambda: shipment(rig, code)[0] == "in_transit", timeout=20, what=f"{code} in transit")
    assert sim.tokens_issued == issued + 1
    # The change is logged after any outage would have been: once it is in the log database, so
    # would the outage be.
    await eventually(
        lambda: bool(log_events(rig.log_db, "shipment.tracking_changed", after_id=marker)),
        timeout=10,
        what="the tracking change in the log database",
    )
    status = await carrier_status(rig)
    assert not status.needs_reauth and status.failing_since is None, status
    assert outage_events(rig, marker) == {
        "channel.down": 0,
        "channel.recovered": 0,
        "channel.needs_reauth": 0,
    }
    await follow_to_delivery(rig, code)


OUTAGES = ["5xx", "timeout", "reset", "malformed_json", "wrong_content_type", "429"]


@pytest.mark.parametrize("kind", OUTAGES)
async def test_a_carrier_outage_is_logged_once_and_the_parcel_catches_up(rig: Setup, kind: str) -> None:
    await carrier_outage(rig, kind)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("kind", OUTAGES)
async def test_long_carrier_outage_repeated(rig: Setup, kind: str) -> None:
    for _ in range(2):
        await carrier_outage(rig, kind, hold=15.0)


async def carrier_outage(rig: Setup, kind: str, *, hold: float = 0.0) -> None:
    """The carrier answers every request with ``kind`` for at least ``hold`` seconds, while the sales
    channel keeps taking stock changes; then it comes back and the parcel catches up."""
    await carrier_idle(rig)
    sim = carrier_sim(rig)
    code = await ship(rig, SALES)
    marker = last_log_id(rig.log_db)
    sim.inject_fault(kind, 1_000_000, retry_after=1.0 if kind == "429" else None)
    sim.advance(code)

    async def failing() -> bool:
        return (await carrier_status(rig)).failing_since is not None

    fault_on = time.monotonic()
    await eventually(failing, timeout=30, what=f"the carrier channel to notice {kind}")
    await sales_keeps_syncing(rig, -1)
    delta = 1
    while time.monotonic() - fault_on < hold:  # the outage goes on; the sales channel does not wait
        await sales_keeps_syncing(rig, delta)
        delta = -delta
    sales = await rig.daemon.channel_status(SALES)
    assert sales.failing_since is None and not sales.needs_reauth, sales
    assert shipment(rig, code)[0] == "posted", "nothing is recorded from a carrier that is down"
    sim.clear_faults()
    await follow_to_delivery(rig, code)
    await eventually(
        lambda: outage_events(rig, marker)["channel.recovered"] == 1,
        timeout=20,
        what="the recovery logged",
    )
    assert outage_events(rig, marker) == {
        "channel.down": 1,
        "channel.recovered": 1,
        "channel.needs_reauth": 0,
    }


async def test_refused_credentials_stop_the_carrier_until_resumed(rig: Setup) -> None:
    await carrier_idle(rig)
    sim = carrier_sim(rig)
    code = await ship(rig, SALES)
    marker = last_log_id(rig.log_db)
    sim.expire_tokens()
    sim.inject_fault("401", 1_000_000, paths=TOKEN_PATH)  # no new token either: credentials revoked
    sim.advance(code)

    async def stopped() -> bool:
        return (await carrier_status(rig)).needs_reauth

    await eventually(stopped, timeout=30, what="the carrier channel to need re-authentication")
    asked = sim.requests
    await sales_keeps_syncing(rig, 1)
    assert sim.requests - asked <= 1, "a channel waiting for new credentials does not keep asking"
    await eventually(
        lambda: outage_events(rig, marker)["channel.needs_reauth"] == 1,
        timeout=10,
        what="channel.needs_reauth in the log database",
    )
    sim.clear_faults()  # the operator fixed the credentials
    async with rig.daemon.client() as client:
        await client.resume(CARRIER)
    await follow_to_delivery(rig, code)
