"""Channel faults: one channel misbehaves while another runs clean, in one daemon process.

Each fault kind is served by the faulty channel's simulator to every API request for as long as the
test keeps it on (an outage, not a single blip). The test asserts that

* the faulty channel notices (status shows it failing, or ``needs_reauth`` for a 401),
* the clean channel keeps syncing and its propagation latency (stock movement committed in the ERP
  -> the clean simulator receives the new balance) does not move: the p95 during the fault stays
  below ``max(3 x before, before + 0.5 s)``,
* the faulty channel recovers once the fault ends (a 401 only after ``storesync resume``): the stock
  change made during the outage reaches it and its state is back to ``idle``,
* the outage is logged once: one ``channel.down`` (``channel.needs_reauth`` for a 401) and one
  ``channel.recovered`` carrying the duration, nothing on the clean channel.

One daemon serves every fault (module-scoped), each test first waits until both channels are idle
and in step, so the cases stay independent. The CI version runs every fault kind once; the slow
version (``-m slow``) repeats each kind twice with 15 s outages.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from tests.faults.harness import (
    PYTHON,
    Setup,
    atp_by_sku,
    erp_move_stock,
    eventually,
    last_log_id,
    log_events,
    query,
    running_setup,
    sim_stock,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]

CLEAN, FAULTY = "clean", "faulty"
SAMPLES = 6
MAX_BODY = 1_000_000


@dataclass(frozen=True)
class FaultCase:
    kind: str
    retry_after: float | None = None

    @property
    def id(self) -> str:
        if self.kind == "429":
            return "429-retry-after" if self.retry_after is not None else "429-no-retry-after"
        return self.kind


CASES = [
    FaultCase("5xx"),
    FaultCase("timeout"),
    FaultCase("reset"),
    FaultCase("429", retry_after=1.0),
    FaultCase("429"),
    FaultCase("401"),
    FaultCase("malformed_json"),
    FaultCase("wrong_content_type"),
    FaultCase("huge_body"),
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig() -> AsyncIterator[Setup]:
    async with running_setup(
        [CLEAN, FAULTY],
        sim_options={FAULTY: {"timeout_fault_seconds": 3.0, "huge_body_bytes": 4 * MAX_BODY}},
        extra={FAULTY: {"max_body_bytes": MAX_BODY}},
        flows={name: {"orders": {"interval": "1s", "batch_size": 50}} for name in (CLEAN, FAULTY)},
    ) as setup:
        yield setup


# --- helpers ----------------------------------------------------------------------------------------


def outbox_backlog(setup: Setup, channel: str) -> int:
    rows = query(
        setup.state_db,
        "SELECT COUNT(*) FROM outbox WHERE channel = ? AND state IN ('pending', 'failed', 'parked')",
        (channel,),
    )
    return int(rows[0][0])


async def in_step(setup: Setup, channel: str) -> bool:
    return sim_stock(setup.sims[channel]) == await atp_by_sku(setup.state_db) and not outbox_backlog(
        setup, channel
    )


async def healthy(setup: Setup) -> None:
    """Both channels idle and in step with the ERP: the starting point of every case."""
    setup.sims[FAULTY].clear_faults()
    status = await setup.daemon.channel_status(FAULTY)
    if status.needs_reauth or status.paused:
        async with setup.daemon.client() as client:
            await client.resume(FAULTY)

    async def ready() -> bool:
        for name in (CLEAN, FAULTY):
            if (await setup.daemon.channel_status(name)).state != "idle" or not await in_step(setup, name):
                return False
        return True

    await eventually(ready, timeout=40, what="both channels idle and in step")


async def one_latency(setup: Setup, sku: str, delta: int) -> float:
    """Seconds from an ERP stock movement (plain SQL) to the clean simulator holding the new balance."""
    sim = setup.sims[CLEAN]
    started = time.monotonic()
    await asyncio.to_thread(erp_move_stock, setup.state_db, sku, delta)
    expected = (await atp_by_sku(setup.state_db))[sku]
    arrived: list[float] = []

    def received() -> bool:
        for entry in sim.stock_history(sku):
            if entry["monotonic"] >= started and entry["quantidade"] == expected:
                arrived.append(float(entry["monotonic"]))
                return True
        return False

    await eventually(received, timeout=15, interval=0.01, what=f"{sku}={expected} on the clean channel")
    return arrived[0] - started


async def latencies(setup: Setup, count: int = SAMPLES) -> list[float]:
    skus = setup.skus[:4]
    return [await one_latency(setup, skus[i % len(skus)], 1 if i % 2 == 0 else -1) for i in range(count)]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


async def describe(setup: Setup, channel: str) -> str:
    """What a failing wait shows: the channel's status, its outbox backlog, how far the values are off."""
    status = await setup.daemon.channel_status(channel)
    flows = [(f.flow, f.state, f.pending, f.failed, f.last_error) for f in status.flows]
    backlog = query(
        setup.state_db,
        "SELECT entity, entity_id, state, attempts, next_attempt_at, last_error FROM outbox "
        "WHERE channel = ? AND state <> 'sent'",
        (channel,),
    )
    atp = await atp_by_sku(setup.state_db)
    off = {
        sku: (qty, atp.get(sku)) for sku, qty in sim_stock(setup.sims[channel]).items() if qty != atp.get(sku)
    }
    return (
        f"status: state={status.state} failing_since={status.failing_since} error={status.last_error}\n"
        f"flows: {flows}\noutbox: {backlog}\nchannel vs ERP: {off}"
    )


def cli_resume(setup: Setup, channel: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "daemon", "--socket", str(setup.daemon.socket_path), "resume", channel],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# --- the cases --------------------------------------------------------------------------------------


async def run_case(setup: Setup, case: FaultCase, *, hold: float = 0.0) -> None:
    await healthy(setup)
    marker = last_log_id(setup.log_db)
    before = await latencies(setup)
    faulty_sim = setup.sims[FAULTY]
    faulty_sim.inject_fault(case.kind, 1_000_000, retry_after=case.retry_after)
    fault_on = time.monotonic()
    served_before = faulty_sim.faults_served
    pending_sku = setup.skus[-1]
    await asyncio.to_thread(erp_move_stock, setup.state_db, pending_sku, -3, "during-the-outage")

    async def failing() -> bool:
        status = await setup.daemon.channel_status(FAULTY)
        return status.failing_since is not None or status.needs_reauth

    await eventually(failing, timeout=30, what=f"the faulty channel to notice {case.id}")
    requests_when_stopped = faulty_sim.requests
    during = await latencies(setup)
    if hold:
        await eventually(lambda: time.monotonic() - fault_on >= hold, timeout=hold + 1, what="the hold")
    status = await setup.daemon.channel_status(FAULTY)
    assert status.failing_since is not None or status.needs_reauth, "the outage ended before the measurement"
    assert status.last_error, status
    clean = await setup.daemon.channel_status(CLEAN)
    assert clean.failing_since is None and not clean.needs_reauth, clean

    if case.kind == "401":
        # No token refresh exists for Loja Integrada: the channel stops instead of failing every run.
        assert status.needs_reauth and status.state == "needs_reauth", status
        assert all(flow.state == "needs_reauth" for flow in status.flows), status.flows
        extra = faulty_sim.requests - requests_when_stopped
        assert extra <= 4, f"{extra} requests reached a channel that needs re-authentication"
    if case.kind == "429" and case.retry_after is not None:
        # Retry-After blocks the channel's limiter: the channel waits instead of hammering.
        elapsed = time.monotonic() - fault_on
        served = faulty_sim.faults_served - served_before
        assert served <= 2 * elapsed / case.retry_after + 6, f"{served} requests in {elapsed:.1f} s"

    faulty_sim.clear_faults()
    fault_off = time.monotonic()
    if case.kind == "401":
        still = await setup.daemon.channel_status(FAULTY)
        assert still.needs_reauth, "a 401 must wait for the operator, not retry by itself"
        result = await asyncio.to_thread(cli_resume, setup, FAULTY)
        assert result.returncode == 0, result.stderr

    async def recovered() -> bool:
        status = await setup.daemon.channel_status(FAULTY)
        return status.state == "idle" and status.failing_since is None and await in_step(setup, FAULTY)

    try:
        await eventually(recovered, timeout=40, what=f"the faulty channel to recover from {case.id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await describe(setup, FAULTY)}") from None
    recovery = time.monotonic() - fault_off

    # The log sink writes in batches (about every 250 ms): wait for the recovery line to land.
    await eventually(
        lambda: bool(log_events(setup.log_db, "channel.recovered", channel=FAULTY, after_id=marker)),
        timeout=10,
        what="channel.recovered in the log database",
    )
    downs = log_events(setup.log_db, "channel.down", channel=FAULTY, after_id=marker)
    reauths = log_events(setup.log_db, "channel.needs_reauth", channel=FAULTY, after_id=marker)
    ups = log_events(setup.log_db, "channel.recovered", channel=FAULTY, after_id=marker)
    if case.kind == "401":
        assert (len(downs), len(reauths)) == (0, 1), (downs, reauths)
    else:
        assert (len(downs), len(reauths)) == (1, 0), (downs, reauths)
    assert len(ups) == 1, ups
    assert ups[0]["data"]["down_seconds"] > 0
    assert not log_events(setup.log_db, "channel.down", channel=CLEAN, after_id=marker)
    assert not log_events(setup.log_db, "channel.recovered", channel=CLEAN, after_id=marker)

    bound = max(3 * p95(before), p95(before) + 0.5)
    print(
        f"{case.id}: clean p95 before {p95(before) * 1000:.0f} ms, during {p95(during) * 1000:.0f} ms; "
        f"faulty recovered {recovery:.1f} s after the fault ended"
    )
    assert p95(during) <= bound, (
        f"clean channel latency moved during {case.id}: p95 before {p95(before):.3f} s, "
        f"during {p95(during):.3f} s (bound {bound:.3f} s); recovery took {recovery:.1f} s"
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_fault_on_one_channel(rig: Setup, case: FaultCase) -> None:
    await run_case(rig, case)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_long_fault_on_one_channel_repeated(rig: Setup, case: FaultCase) -> None:
    for _ in range(2):
        await run_case(rig, case, hold=15.0)
