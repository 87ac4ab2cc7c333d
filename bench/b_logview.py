"""7. The log view with a million rows in ``sync_log``.

A log database is filled with a month of plausible rows (five channels, the five push/pull flows,
2 % warnings, a few errors), then the real daemon serves it. Measured through the control API on its
Unix socket, as the dashboard asks:

* one ``GET /logs?limit=500`` (newest first) per filter: the first screen, then each filter change;
* the dashboard's own first screen: pages of 200, asking again with the cursor until 50 rows came
  (or 10 requests), as ``tui.view_log.LogView`` does for sparse filters;
* the dashboard itself, headless (Textual ``run_test``), attached to the daemon: time from a filter
  change to the rows on screen; and the table alone redrawing a 500-row window.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Report, bench_dir, header, ms, percentile, quiet_logging
from bench.harness import DaemonProcess, write_settings
from daemon.controlapi.client import ControlClient
from daemon.controlapi.wire import LogPage
from daemon.logbook import open_log_database

CHANNELS = [f"loja{i}" for i in range(1, 6)]
FLOWS = [("stock", 45), ("prices", 20), ("orders", 20), ("products", 10), ("order_updates", 5)]
ENTITY = {
    "stock": "stock",
    "prices": "price",
    "orders": "order",
    "products": "product",
    "order_updates": "order",
}
DAYS = 29
SCREEN_ROWS = 50
PAGE = 200
MAX_HOPS = 10


def _rows(count: int, now: datetime, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    start = now - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / count
    flows = [f for f, weight in FLOWS for _ in range(weight)]
    for i in range(count):
        ts = (start + step * i).isoformat(timespec="microseconds")
        channel = rng.choice(CHANNELS)
        flow = rng.choice(flows)
        entity = ENTITY[flow]
        roll = rng.random()
        sku = f"SKU-{rng.randrange(50_000):06d}"
        entity_id = str(rng.randrange(1, 50_000))
        run_id = f"{rng.getrandbits(48):012x}"
        if roll < 0.003:
            level, event = "error", "run.failed"
            data: dict[str, Any] = {"error": "HTTP 503 Service Unavailable (after 5 attempts)"}
            entity = entity_id = None  # type: ignore[assignment]
        elif roll < 0.023:
            level, event = "warning", f"{entity}.push_failed"
            data = {
                "error": "timed out after 30s",
                "retryable": True,
                "attempts": rng.randint(1, 8),
                "sku": sku,
            }
        elif roll < 0.06:
            level, event = "info", "run.done"
            data = {"done": rng.randint(1, 100), "failed": 0, "more": False}
            entity = entity_id = None  # type: ignore[assignment]
        elif flow == "orders":
            level, event = "info", rng.choice(["order.created", "order.updated"])
            data = {"status": "pedido_pago", "changes": ["status"], "stock": "reserved"}
        else:
            level, event = "info", f"{entity}.pushed"
            data = {"sku": sku, "value": rng.randrange(100)}
        yield (
            ts,
            level,
            event,
            channel,
            flow,
            run_id,
            entity,
            entity_id,
            str(rng.randrange(10**6)),
            json.dumps(data, separators=(",", ":")),
        )


async def fill_log(path: Path, count: int, now: datetime) -> float:
    """Create the log database with the daemon's schema, then ``count`` rows; returns the seconds it took."""
    conn = await open_log_database(path)
    await conn.close()
    started = time.monotonic()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = OFF")
        rows = _rows(count, now, random.Random(42))
        for _ in range(0, count, 100_000):
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO sync_log (ts, level, event, channel, flow, run_id, entity, entity_id, remote_id,"
                " data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                itertools.islice(rows, 100_000),
            )
            db.execute("COMMIT")
        db.execute("ANALYZE")
    finally:
        db.close()
    return time.monotonic() - started


Query = Callable[[ControlClient, int | None, int], Awaitable[LogPage]]


def filters(now: datetime) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("no filter (first screen)", {}),
        ("channel = loja3", {"channel": "loja3"}),
        ("level >= warning", {"level": "warning"}),
        ("entity = order", {"entity": "order"}),
        ("text 'SKU-012345' (rare)", {"q": "SKU-012345"}),
        ("text 'timed out' (2 %)", {"q": "timed out"}),
        (
            "date range: one day, 10 days ago",
            {"since": now - timedelta(days=10), "until": now - timedelta(days=9)},
        ),
        ("channel + level >= warning", {"channel": "loja3", "level": "warning"}),
    ]


async def one_request(client: ControlClient, query: dict[str, Any]) -> tuple[float, int]:
    started = time.perf_counter()
    page = await client.logs(**query, limit=500)
    return time.perf_counter() - started, len(page.rows)


async def tui_screen(client: ControlClient, query: dict[str, Any]) -> tuple[float, int, int]:
    """What LogView does: a page of 200, then older pages until a screenful came (or 10 requests)."""
    started = time.perf_counter()
    page = await client.logs(**query, limit=PAGE)
    rows, hops, cursor = len(page.rows), 1, page.next_cursor
    while rows < SCREEN_ROWS and cursor is not None and hops < MAX_HOPS:
        page = await client.logs(**query, cursor=cursor, limit=PAGE)
        rows, hops, cursor = rows + len(page.rows), hops + 1, page.next_cursor
    return time.perf_counter() - started, rows, hops


async def api_figures(report: Report, socket: Path, now: datetime, repeats: int) -> None:
    async with ControlClient(socket) as client:
        await client.logs(limit=500)  # the first query warms SQLite's page cache, as any use would
        report.line(f"{'filter':<34} {'GET /logs?limit=500':>30}   {'dashboard screen (pages of 200)':>40}")
        for label, query in filters(now):
            single = [await one_request(client, query) for _ in range(repeats)]
            screen = [await tui_screen(client, query) for _ in range(repeats)]
            s_times = [t for t, _ in single]
            d_times = [t for t, _, _ in screen]
            key = label.split(" (")[0].replace(" ", "_")
            report.figures[f"api_p50[{key}]"] = percentile(s_times, 50)
            report.figures[f"api_p95[{key}]"] = percentile(s_times, 95)
            report.figures[f"screen_p95[{key}]"] = percentile(d_times, 95)
            report.line(
                f"{label:<34} p50 {ms(percentile(s_times, 50)):>10} p95 {ms(percentile(s_times, 95)):>10}"
                f" {single[0][1]:>4} rows   p50 {ms(percentile(d_times, 50)):>10}"
                f" p95 {ms(percentile(d_times, 95)):>10}"
                f" {screen[0][1]:>4} rows/{screen[0][2]} req"
            )


async def tui_figures(report: Report, socket: Path, now: datetime, repeats: int) -> None:
    """The dashboard, headless, attached to the daemon: filter change -> rows in the table, and the
    cost of drawing a whole frame after it (Textual paints on its own timer, at most 60 times a second;
    Pilot.pause() would add its wait for the CPU to go idle, which is no part of what a user sees)."""
    from tui.app import StoresyncApp
    from tui.log_filter import LogFilter

    app = StoresyncApp(str(socket), locale="en", theme="textual-dark")
    async with app.run_test(size=(160, 48)) as pilot:
        view = app.log_view

        async def loaded() -> None:
            deadline = time.monotonic() + 30
            while (view.loading or not view.loaded) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.0005)

        def frame() -> float:
            started = time.perf_counter()
            app.screen._compositor.render_update(full=True)
            return time.perf_counter() - started

        await loaded()
        await pilot.press("2")  # the Log tab, so the table is on screen and is drawn
        await pilot.pause()
        report.line("dashboard (headless Textual, 160x48): filter change -> rows in the table; a full frame:")
        for label, query in filters(now)[1:] + filters(now)[:1]:
            wanted = LogFilter(**query)
            times: list[float] = []
            frames: list[float] = []
            for _ in range(repeats):
                view.set_filter(LogFilter(channel="none-such") if wanted == view.filter else wanted)
                await loaded()
                await pilot.pause()
                started = time.perf_counter()
                view.set_filter(wanted)
                await loaded()
                times.append(time.perf_counter() - started)
                frames.append(frame())
            report.line(
                f"  {label:<34} p50 {ms(percentile(times, 50)):>10} p95 {ms(percentile(times, 95)):>10}"
                f"   frame p95 {ms(percentile(frames, 95)):>8}  {len(view.window.rows)} rows"
            )
            key = label.split(" (")[0].replace(" ", "_")
            report.figures[f"tui_p95[{key}]"] = percentile(times, 95) + percentile(frames, 95)

        async with ControlClient(socket) as client:
            rows = (await client.logs(limit=view.window.capacity)).rows  # a full window: 500 rows
        table = view.table
        if len(rows) >= 2:
            times = []
            for i in range(repeats):
                started = time.perf_counter()
                table._cells.clear()  # as for rows never seen: every cell formatted again
                table.show_rows(rows[i % 2 :])
                for y in range(table.size.height):
                    table.render_line(y)
                times.append(time.perf_counter() - started)
            report.figure(
                "table_render_p95",
                percentile(times, 95),
                f"the log table alone: show a {len(rows)}-row window and draw a screen: "
                f"p50 {ms(percentile(times, 50))}  p95 {ms(percentile(times, 95))}",
            )


async def run(quick: bool = False) -> Report:
    report = Report("logview", "the log view over a sync_log of a million rows")
    header(report, quick)
    quiet_logging()
    count = 100_000 if quick else 1_000_000
    repeats = 3 if quick else 9
    now = datetime.now(UTC)
    with bench_dir("lv") as folder:
        settings = write_settings(folder, [], log_level="warning")
        filled = await fill_log(folder / "var" / "storesync-log.db", count, now)
        report.line(f"{count:,} rows over {DAYS} days written in {filled:.0f} s")
        report.figures["rows"] = count
        daemon = DaemonProcess(settings)
        try:
            await daemon.start()
            await api_figures(report, daemon.socket_path, now, repeats)
            await tui_figures(report, daemon.socket_path, now, max(3, repeats // 2))
            report.figure(
                "daemon_peak_rss_mb",
                daemon.stats().peak_rss_kb / 1024,
                f"daemon peak RSS: {daemon.stats().peak_rss_kb / 1024:.0f} MB",
            )
        finally:
            await daemon.stop()
    return report
