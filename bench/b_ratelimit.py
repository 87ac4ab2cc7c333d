"""3. Rate-limit fidelity: a backlog far bigger than the budget, pushed to a simulator that enforces
N requests per sliding minute (and answers 429 beyond it), with the channel configured for the same N.

Good behaviour is using the whole budget (achieved / allowed close to 1) without ever being told off
(zero 429s). The simulator's window is 60 s, so only a run longer than a minute exercises its edge;
the quick variant is shorter and says so.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Report, bench_dir, header, verdict
from bench.harness import (
    ChannelSpec,
    DaemonProcess,
    move_stock,
    prepare_run,
    remote_ids_by_sku,
    seed_catalog,
    settle,
)
from bench.simhost import SimHost

TARGET_RATIO = 0.95
WINDOW = 60.0
BURST_SECONDS = 5.0
"""The achieved rate is measured after this: the bucket's opening burst is not the sustained rate."""


def busiest_window(stamps: list[float], width: float = WINDOW) -> int:
    """The most requests in any ``width``-second window (what the platform's sliding limit sees)."""
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


async def run(quick: bool = False) -> Report:
    report = Report("ratelimit", "achieved rate against a simulator's per-minute limit, and 429s")
    header(report, quick)
    per_minute = 600
    duration = 15.0 if quick else 75.0
    backlog = int(per_minute * duration / 60 * 1.5) + 100
    with bench_dir("rl") as folder:
        host = await SimHost.start(1, products=backlog, rate_limit=per_minute)
        daemon: DaemonProcess | None = None
        try:
            by_sku = remote_ids_by_sku(await host.state())
            skus = sorted(by_sku)
            settings, erp = await prepare_run(
                folder, [ChannelSpec("loja", host.urls[0], rate_limit=f"{per_minute}/min")]
            )
            ids = seed_catalog(erp, skus, bindings={"loja": by_sku})
            daemon = DaemonProcess(settings)
            await daemon.start()
            await settle(erp)
            before = await host.counters()
            started = move_stock(erp, [(ids[sku], 1) for sku in skus])
            await asyncio.sleep(max(0.0, started + duration - time.monotonic()))
            ended = time.monotonic()
            after = await host.counters()
            state = await host.state()
            erp.close()
        finally:
            if daemon is not None:
                await daemon.stop()
            await host.stop()

    stamps = sorted(
        h["monotonic"]
        for p in state["products"]
        for h in p["stock_history"]
        if started <= h["monotonic"] <= ended
    )
    accepted = (after["requests"] - after["rate_limited"]) - (before["requests"] - before["rate_limited"])
    limited = after["rate_limited"] - before["rate_limited"]
    elapsed = ended - started
    steady = [s for s in stamps if s >= started + BURST_SECONDS]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) * 60 if len(steady) > 1 else 0.0
    ratio = steady_rate / per_minute
    busiest = busiest_window(stamps)
    report.line(f"limit {per_minute}/min on both sides (channel burst: the default, a tenth of a minute)")
    report.line(
        f"backlog {backlog:,} stock updates, measured for {elapsed:.0f} s; {accepted:,} requests accepted"
    )
    report.figure(
        "steady_per_min",
        steady_rate,
        f"achieved rate (after the first {BURST_SECONDS:.0f} s): {steady_rate:,.0f}/min",
    )
    report.figure(
        "busiest_minute", busiest, f"busiest 60 s window: {busiest:,} requests (limit {per_minute})"
    )
    report.figure("ratio", ratio, f"achieved/allowed = {ratio:.3f} (target >= {TARGET_RATIO})")
    report.figure("http_429", limited, f"429 answers: {limited} (target 0)")
    report.line(verdict(ratio >= TARGET_RATIO and limited == 0 and busiest <= per_minute))
    if quick:
        report.note("the quick run is shorter than the simulator's 60 s window: its edge is not exercised")
    return report
