"""5. Log sink: rows per second into ``sync_log`` and the event loop's lag meanwhile.

The daemon's own set-up (``configure_logging`` with the sink, ``LogBook.open``) in this process; a
producer logs push-style events through structlog as fast as the sink takes them (it backs off while
the queue is over half full, so nothing is dropped), and a watchdog task measures how late its 5 ms
sleeps wake up. Baseline, in the same run: one row per transaction through aiosqlite, the naive way.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog

from bench.common import Report, bench_dir, header, ms, percentile, rate, verdict
from daemon.logbook import LogBook, LogSink, configure_logging, open_log_database, reset_logging

TARGET_ROWS_PER_S = 20_000
TARGET_LAG_P99 = 0.050
TICK = 0.005
CHUNK = 200


async def baseline(path: Path, rows: int) -> float:
    """One INSERT + COMMIT per row, the same table and pragmas: rows/s."""
    conn = await open_log_database(path)
    try:
        started = time.perf_counter()
        for i in range(rows):
            await conn.execute("BEGIN")
            await conn.execute(
                "INSERT INTO sync_log (ts, level, event, channel, flow, entity, entity_id, data)"
                " VALUES (?, 'info', 'stock.pushed', 'loja', 'stock', 'stock', ?, '{}')",
                ("2026-01-01T00:00:00.000000+00:00", str(i)),
            )
            await conn.execute("COMMIT")
        return rate(rows, time.perf_counter() - started)
    finally:
        await conn.close()


async def measure_lag(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(TICK)
        lags.append(loop.time() - started - TICK)


async def sink_run(path: Path, rows: int, *, via_structlog: bool = True) -> dict[str, float]:
    """Log ``rows`` events through the daemon's logging set-up (or, ``via_structlog=False``, offer
    ready-made rows to the sink: the writer's own capacity); returns the figures."""
    sink = LogSink()
    configure_logging("info", json_stdout=False, sink=sink)
    book = await LogBook.open(path, sink=sink)
    log = structlog.get_logger("storesync.flow").bind(channel="loja", flow="stock", run_id="0123456789ab")
    lags: list[float] = []
    stop = asyncio.Event()
    watchdog = asyncio.create_task(measure_lag(stop, lags))
    try:
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        produced = 0
        while produced < rows:
            if sink.pending > 10_000:  # let the writer catch up instead of dropping
                await book.flush()
            for _ in range(min(CHUNK, rows - produced)):
                if not via_structlog:
                    sink.offer(
                        (
                            "2026-01-01T00:00:00.000000+00:00",
                            "info",
                            "stock.pushed",
                            "loja",
                            "stock",
                            "0123456789ab",
                            "stock",
                            str(produced),
                            str(100_000 + produced),
                            f'{{"sku":"SKU-{produced:06d}","value":{produced % 97}}}',
                        )
                    )
                    produced += 1
                    continue
                log.info(
                    "stock.pushed",
                    entity="stock",
                    entity_id=str(produced),
                    remote_id=str(100_000 + produced),
                    sku=f"SKU-{produced:06d}",
                    value=produced % 97,
                )
                produced += 1
            await asyncio.sleep(0)
        offered = time.perf_counter() - started
        await book.flush()
        elapsed = time.perf_counter() - started
        stop.set()
        await watchdog
        written, batches, dropped = sink.written, sink.batches, sink.dropped
    finally:
        stop.set()
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
        await book.aclose()
        reset_logging()
    conn = await open_log_database(path)
    try:
        async with conn.execute("SELECT COUNT(*) FROM sync_log WHERE event = 'stock.pushed'") as cur:
            row = await cur.fetchone()
        stored = int(row[0]) if row else 0
    finally:
        await conn.close()
    return {
        "rows": float(rows),
        "stored": float(stored),
        "written": float(written),
        "batches": float(batches),
        "dropped": float(dropped),
        "seconds": elapsed,
        "offer_seconds": offered,
        "rows_per_s": rate(stored, elapsed),
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "lag_max": max(lags, default=0.0),
        "lag_samples": float(len(lags)),
    }


async def run(quick: bool = False, rows: int | None = None) -> Report:
    report = Report("logsink", "rows/s into sync_log and event-loop lag meanwhile")
    header(report, quick)
    count = rows if rows is not None else (20_000 if quick else 200_000)
    with bench_dir("log") as folder:
        base = await baseline(folder / "baseline.db", max(200, count // 100))
        figures = await sink_run(folder / "storesync-log.db", count)
        writer = await sink_run(folder / "writer-log.db", count, via_structlog=False)
    for key, value in figures.items():
        report.figures[key] = value
    report.figure("baseline_rows_per_s", base, f"baseline, one row per commit: {base:,.0f} rows/s")
    rows_per_s = figures["rows_per_s"]
    report.line(
        f"{int(figures['stored']):,} events logged through structlog -> sink -> sync_log "
        f"in {figures['seconds']:.2f} s "
        f"({int(figures['batches'])} transactions, {int(figures['dropped'])} dropped)"
    )
    report.figure(
        "writer_rows_per_s",
        writer["rows_per_s"],
        f"the writer alone (rows offered ready-made, no structlog): {writer['rows_per_s']:,.0f} rows/s, "
        f"lag p99 {ms(writer['lag_p99'])}",
    )
    report.line(f"structlog chain per event (producer side): {figures['offer_seconds'] / count * 1e6:.0f} µs")
    report.line(
        f"sink: {rows_per_s:,.0f} rows/s = {rows_per_s / base:.0f}x the baseline "
        f"(target >= {TARGET_ROWS_PER_S:,}): {verdict(rows_per_s >= TARGET_ROWS_PER_S)}"
    )
    report.line(
        f"event-loop lag meanwhile: p50 {ms(figures['lag_p50'])}  p99 {ms(figures['lag_p99'])}  "
        f"max {ms(figures['lag_max'])} "
        f"(target p99 < {TARGET_LAG_P99 * 1000:.0f} ms): {verdict(figures['lag_p99'] < TARGET_LAG_P99)}"
    )
    return report
