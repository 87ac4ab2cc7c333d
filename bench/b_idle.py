"""4. Idle cost and scale.

(a) Fifty channels, every flow enabled at its default interval, nothing to do: the daemon's CPU time
(user + system, from /proc) over a minute, and its peak RSS. (b) A catalog appears in the ERP at once
(one transaction, as an ERP import does) and the daemon pushes it to a fresh channel with no rate
limit: product, stock and price for every item. Peak RSS over both, and how long the push takes.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Report, bench_dir, header, rate, verdict
from bench.harness import (
    START_SPREAD,
    ChannelSpec,
    DaemonProcess,
    create_state_db,
    outbox_counts,
    prepare_run,
    seed_catalog,
    wait_until,
    write_settings,
)
from bench.simhost import SimHost

CHANNELS = 50
TARGET_CPU = 0.01
TARGET_RSS_MB = 150.0
PUSH_CONCURRENCY = 16
PUSH_BATCH = 500


async def idle(report: Report, quick: bool) -> None:
    seconds = 15.0 if quick else 60.0
    with bench_dir("idle") as folder:
        host = await SimHost.start(CHANNELS)
        daemon: DaemonProcess | None = None
        try:
            names = [f"loja{i + 1:02d}" for i in range(CHANNELS)]
            settings = write_settings(
                folder, [ChannelSpec(name, url) for name, url in zip(names, host.urls, strict=True)]
            )
            await create_state_db(folder / "var" / "storesync.db", names)
            daemon = DaemonProcess(settings)
            await daemon.start()
            await asyncio.sleep(START_SPREAD + 1.0)  # every flow has made its first run
            before = daemon.stats()
            started = time.monotonic()
            await asyncio.sleep(seconds)
            after = daemon.stats()
            elapsed = time.monotonic() - started
            counters = [await host.counters(i) for i in range(CHANNELS)]
        finally:
            if daemon is not None:
                await daemon.stop()
            await host.stop()
    cpu = after.cpu_seconds - before.cpu_seconds
    share = cpu / elapsed
    requests = sum(int(c["requests"]) for c in counters)
    report.line(
        f"{CHANNELS} channels x 5 flows (orders, products, stock, prices, order updates), "
        f"idle {elapsed:.0f} s"
    )
    report.figure(
        "idle_cpu_s",
        cpu,
        f"CPU used: {cpu:.2f} s = {share * 100:.2f} % of one core (target < 1 %): "
        + verdict(share < TARGET_CPU),
    )
    report.figure("idle_cpu_share", share)
    report.figure(
        "idle_rss_mb",
        after.rss_kb / 1024,
        f"RSS: {after.rss_kb / 1024:.0f} MB, peak {after.peak_rss_kb / 1024:.0f} MB",
    )
    report.figure("idle_peak_rss_mb", after.peak_rss_kb / 1024)
    report.line(f"requests to the channels since start-up (the first order pulls): {requests}")


async def catalog(report: Report, quick: bool) -> None:
    count = 5_000 if quick else 100_000
    with bench_dir("cat") as folder:
        host = await SimHost.start(1)
        daemon: DaemonProcess | None = None
        try:
            settings, erp = await prepare_run(
                folder,
                [
                    ChannelSpec(
                        "loja",
                        host.urls[0],
                        options={"concurrency": PUSH_CONCURRENCY},
                        flows={flow: {"batch_size": PUSH_BATCH} for flow in ("products", "stock", "prices")},
                    )
                ],
            )
            daemon = DaemonProcess(settings)
            await daemon.start()
            await asyncio.sleep(START_SPREAD)
            cpu_before = daemon.stats().cpu_seconds
            started = time.monotonic()
            seed_catalog(erp, [f"CAT-{i:06d}" for i in range(count)], on_hand=10, settled=False)
            queued = time.monotonic() - started
            peak = 0

            def settled() -> bool:
                nonlocal peak
                peak = max(peak, daemon.stats().peak_rss_kb if daemon else 0)
                counts = outbox_counts(erp)
                return counts.get("pending", 0) == 0 and counts.get("failed", 0) == 0

            done = await wait_until(settled, timeout=1200, interval=1.0)
            elapsed = time.monotonic() - started
            stats = daemon.stats()
            counts = outbox_counts(erp)
            by_entity = {entity: outbox_counts(erp, entity) for entity in ("product", "stock", "price")}
            erp.close()
            counters = await host.counters()
        finally:
            if daemon is not None:
                await daemon.stop()
            await host.stop()
    requests = int(counters["requests"])
    report.line(
        f"catalog of {count:,} products committed in {queued:.1f} s; "
        f"concurrency {PUSH_CONCURRENCY}, batches of {PUSH_BATCH}"
    )
    report.figure(
        "catalog_seconds",
        elapsed,
        f"pushed (product + stock + price, all settled) in {elapsed:.1f} s: "
        f"{rate(count, elapsed):,.0f} products/s",
    )
    report.figure(
        "catalog_requests",
        requests,
        f"requests: {requests:,} ({rate(requests, elapsed):,.0f}/s) {counters['by_route']}",
    )
    report.figure(
        "catalog_cpu_s", stats.cpu_seconds - cpu_before, f"daemon CPU: {stats.cpu_seconds - cpu_before:.1f} s"
    )
    report.figure(
        "catalog_peak_rss_mb",
        stats.peak_rss_kb / 1024,
        f"peak RSS: {stats.peak_rss_kb / 1024:.0f} MB (target < {TARGET_RSS_MB:.0f}): "
        + verdict(stats.peak_rss_kb / 1024 < TARGET_RSS_MB),
    )
    report.line(f"outbox after: {counts}; by entity: {by_entity}")
    if not done:
        report.note("the push did not finish within the time limit")


async def run(quick: bool = False) -> Report:
    report = Report("idle", "idle cost of 50 channels, then a catalog's initial push")
    header(report, quick)
    await idle(report, quick)
    await catalog(report, quick)
    return report
