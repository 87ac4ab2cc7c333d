"""1. Propagation latency: a stock movement committed in SQLite -> each channel holds the new balance.

Five channels on five simulators (rate limits far above the load), each product already linked. The
benchmark commits one movement at a time from its own connection, at a steady pace, each on a product
of its own so every movement produces a balance no other movement produces; the simulators record when
each value arrived (CLOCK_MONOTONIC, shared by every process on the machine). Latency = arrival - commit.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Report, bench_dir, header, ms, percentile, verdict
from bench.harness import (
    ChannelSpec,
    DaemonProcess,
    move_stock,
    outbox_counts,
    prepare_run,
    remote_ids_by_sku,
    seed_catalog,
    settle,
    wait_until,
)
from bench.simhost import SimHost

CHANNELS = 5
TARGET_P99 = 1.0


async def run(quick: bool = False) -> Report:
    report = Report("latency", "stock movement committed -> every channel has the new balance")
    header(report, quick)
    movements = 200 if quick else 1000
    pace = 50.0  # movements per second
    on_hand = 100
    with bench_dir("lat") as folder:
        host = await SimHost.start(CHANNELS, products=movements)
        daemon: DaemonProcess | None = None
        try:
            names = [f"loja{i + 1}" for i in range(CHANNELS)]
            states = [await host.state(i) for i in range(CHANNELS)]
            skus = sorted(remote_ids_by_sku(states[0]))[:movements]
            settings, erp = await prepare_run(
                folder, [ChannelSpec(name, url) for name, url in zip(names, host.urls, strict=True)]
            )
            ids = seed_catalog(
                erp,
                skus,
                on_hand=on_hand,
                bindings={name: remote_ids_by_sku(state) for name, state in zip(names, states, strict=True)},
            )
            daemon = DaemonProcess(settings)
            await daemon.start()
            await settle(erp)

            committed: dict[str, float] = {}
            started = time.monotonic()
            for index, sku in enumerate(skus):
                due = started + index / pace
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                committed[sku] = move_stock(erp, [(ids[sku], 1)])
            done = await wait_until(
                lambda: outbox_counts(erp, "stock").get("pending", 0) == 0, timeout=120, interval=0.2
            )
            if not done:
                report.note("the outbox did not drain within 120 s; figures cover what arrived")
            erp.close()

            expected = on_hand + 1
            per_sample: list[float] = []
            per_movement: dict[str, float] = {}
            missing = 0
            for index in range(CHANNELS):
                state = await host.state(index)
                for product in state["products"]:
                    sku = product["sku"]
                    if sku not in committed:
                        continue
                    arrivals = [
                        h["monotonic"] for h in product["stock_history"] if h["quantidade"] == expected
                    ]
                    if not arrivals:
                        missing += 1
                        continue
                    latency = min(arrivals) - committed[sku]
                    per_sample.append(latency)
                    per_movement[sku] = max(per_movement.get(sku, 0.0), latency)
        finally:
            if daemon is not None:
                await daemon.stop()
            await host.stop()

    report.line(
        f"{movements:,} movements at {pace:.0f}/s, each to {CHANNELS} channels ({len(per_sample):,} arrivals)"
    )
    for label, values in (("per channel", per_sample), ("all 5 channels", list(per_movement.values()))):
        p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
        report.line(
            f"{label:<15} p50 {ms(p50)}  p95 {ms(p95)}  p99 {ms(p99)}  max {ms(max(values, default=0))}"
        )
    p99_all = percentile(list(per_movement.values()), 99)
    report.figure("p50", percentile(per_sample, 50))
    report.figure("p95", percentile(per_sample, 95))
    report.figure("p99", percentile(per_sample, 99))
    report.figure("p99_all_channels", p99_all)
    report.figure("missing", missing)
    report.line(f"missing arrivals: {missing}")
    report.line(
        f"target p99 < {TARGET_P99:.0f} s (all channels): {verdict(p99_all < TARGET_P99 and missing == 0)}"
    )
    return report
