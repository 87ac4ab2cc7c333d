"""6. Order import: thousands of orders pulled in pages from a simulator that takes 50 ms per request.

Loja Integrada lists orders in pages (``pedido/search``, 50 a page) and gives the detail one order at a
time, so an import is 1 + 50 requests a page. With a 50 ms round trip the floor is
``requests x latency / concurrency``; pages are fetched one after the other (each commits before the
next is asked for, so a crash replays at most one page), which adds a search and the last, partial
round of details per page on top.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

from bench.common import Report, bench_dir, header, rate
from bench.harness import ChannelSpec, DaemonProcess, prepare_run, wait_until
from bench.simhost import SimHost

LATENCY = 0.050
PAGE = 50
CONCURRENCY = 16


def _count(conn: object) -> int:
    import sqlite3

    assert isinstance(conn, sqlite3.Connection)
    (n,) = conn.execute("SELECT COUNT(*) FROM orders WHERE channel = 'loja'").fetchone()
    return int(n)


async def run(quick: bool = False) -> Report:
    report = Report("orders", f"order import from a simulator with {LATENCY * 1000:.0f} ms per request")
    header(report, quick)
    count = 1000 if quick else 10_000
    with bench_dir("ord") as folder:
        host = await SimHost.start(1, products=30, orders=count, latency_ms=LATENCY * 1000)
        daemon: DaemonProcess | None = None
        try:
            settings, erp = await prepare_run(
                folder,
                [
                    ChannelSpec(
                        "loja",
                        host.urls[0],
                        options={"concurrency": CONCURRENCY},
                        flows={"orders": {"batch_size": PAGE}},
                    )
                ],
            )
            daemon = DaemonProcess(settings)
            await daemon.start()
            ready = time.monotonic()
            done = await wait_until(lambda: _count(erp) >= count, timeout=900, interval=0.25)
            wall = time.monotonic() - ready
            imported = _count(erp)
            first, last = erp.execute(
                "SELECT min(imported_at), max(imported_at) FROM orders WHERE channel = 'loja'"
            ).fetchone()
            parked = erp.execute("SELECT COUNT(*) FROM import_failures WHERE state = 'open'").fetchone()[0]
            erp.close()
            counters = await host.counters()
        finally:
            if daemon is not None:
                await daemon.stop()
            await host.stop()

    pages = math.ceil(count / PAGE)
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() if first else 0.0
    # The first page commits one page-time after the pull starts: add it back (the flows start at a
    # random offset of up to 3 s after the daemon is ready, which the wall time includes).
    elapsed = span * pages / (pages - 1) if pages > 1 else span
    requests = count + pages
    floor = requests * LATENCY / CONCURRENCY
    # One page after the other: the search, then its details in ceil(50 / concurrency) rounds.
    paged_floor = pages * (1 + math.ceil(PAGE / CONCURRENCY)) * LATENCY
    report.line(f"{count:,} orders, {pages} pages of {PAGE}, detail requests {CONCURRENCY} at a time")
    report.figure("imported", imported, f"imported: {imported:,} (parked: {parked})")
    report.figure(
        "seconds",
        elapsed,
        f"import time (first page to last): {elapsed:.1f} s  [daemon ready -> done: {wall:.1f} s]",
    )
    report.figure("orders_per_s", rate(imported, elapsed), f"orders/s: {rate(imported, elapsed):,.0f}")
    report.figure(
        "floor_s",
        floor,
        f"floor, requests x latency / concurrency: {requests:,} x {LATENCY * 1000:.0f} ms / {CONCURRENCY}"
        f" = {floor:.1f} s",
    )
    report.line(
        f"floor with pages one after the other (search, then {math.ceil(PAGE / CONCURRENCY)} rounds of"
        f" details): {paged_floor:.1f} s"
    )
    report.figure(
        "vs_floor",
        elapsed / floor,
        f"import time / floor = {elapsed / floor:.2f} (page-serial floor: {elapsed / paged_floor:.2f})",
    )
    report.line(f"requests the simulator saw: {counters['requests']:,} ({counters['by_route']})")
    if not done:
        report.note("not every order arrived before the time limit")
    return report
