"""2. Push throughput against the network's limit.

The same simulator (no rate limit) receives the same stock PUTs twice in one run: first from a plain
aiohttp script (the most a Python client on this machine gets through this server: "raw"), then from the
daemon, which reads the outbox, computes available-to-promise, pushes, settles each batch and logs every
item. The ratio daemon/raw is the price of doing it properly. Both send with the same number of
requests in flight.

A third figure splits that price: the daemon's own HTTP layer (``HttpClient`` + the Loja Integrada
connector: rate limiter, retries, typed errors, response checks), driven in the benchmark's process
with no store, flow or log behind it. raw -> connector is what the HTTP manners cost, connector ->
daemon what reading, computing, settling and logging each item costs.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
from pydantic import SecretStr

from bench.common import Report, bench_dir, header, rate, verdict
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
from bench.simhost import API_KEY, APP_KEY, SimHost
from channels.http import HttpClient, open_transport
from channels.lojaintegrada import LojaIntegradaChannel
from channels.models import ChannelContext, StockPush
from channels.ratelimit import RateLimiter
from daemon.clock import SYSTEM_CLOCK

CONCURRENCY = 16
"""Requests in flight: the connector's ``concurrency`` option and the raw script's worker count."""
BATCH_SIZE = 500
TARGET_RATIO = 0.8


def stock_body(quantity: int) -> dict[str, Any]:
    """What the Loja Integrada connector sends for one stock push."""
    return {"gerenciado": True, "quantidade": quantity, "situacao_em_estoque": 0, "situacao_sem_estoque": -1}


async def raw_push(base_url: str, remote_ids: list[str], quantity: int, concurrency: int) -> float:
    """The plain script: ``concurrency`` workers PUT one stock value each until the list is done."""
    headers = {"Authorization": f"chave_api {API_KEY} aplicacao {APP_KEY}", "Accept": "application/json"}
    todo = iter(remote_ids)
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            nonlocal failures
            for remote in todo:
                async with session.put(
                    f"{base_url}/v1/produto_estoque/{remote}", json=stock_body(quantity), headers=headers
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        failures += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    if failures:
        raise RuntimeError(f"the raw script got {failures} non-200 answers")
    return elapsed


async def connector_push(base_url: str, remote_ids: list[str], quantity: int, concurrency: int) -> float:
    """The daemon's HTTP layer alone: the connector pushes the same items, BATCH_SIZE at a time."""
    context = ChannelContext(
        name="bench",
        kind="lojaintegrada",
        base_url=base_url,
        secrets={"api_key": SecretStr(API_KEY), "app_key": SecretStr(APP_KEY)},
        options={"concurrency": concurrency},
        rate_limit_per_minute=1_000_000,
    )
    limiter = RateLimiter(context.rate_limit_per_minute, context.rate_limit_burst, SYSTEM_CLOCK)
    transport = open_transport()  # the daemon's default engine
    try:
        http = HttpClient(context, clock=SYSTEM_CLOCK, limiter=limiter, transport=transport)
        channel = LojaIntegradaChannel(context, http)
        items = [
            StockPush(local_id=i, sku=f"bench-{i}", remote_id=remote, quantity=quantity)
            for i, remote in enumerate(remote_ids)
        ]
        started = time.monotonic()
        for start in range(0, len(items), BATCH_SIZE):
            results = await channel.push_stock(items[start : start + BATCH_SIZE])
            if not all(result.ok for result in results):
                raise RuntimeError(f"the connector failed: {next(r.error for r in results if not r.ok)}")
        return time.monotonic() - started
    finally:
        await transport.aclose()


GAP_SECONDS = 0.002
"""A pause between two arrivals longer than this is the daemon not sending (16 requests in flight
arrive every ~0.1-0.2 ms when the wire is busy)."""


def wire_gaps(arrivals: list[float]) -> tuple[float, float]:
    """The longest pause between consecutive arrivals, and the share of the span spent in pauses
    over GAP_SECONDS: how often the event loop stalled (a claim, a collector pass, a long step)."""
    if len(arrivals) < 2:
        return 0.0, 0.0
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    idle = sum(gap for gap in gaps if gap > GAP_SECONDS)
    return max(gaps), idle / (arrivals[-1] - arrivals[0])


def rounds(rates: list[float]) -> str:
    return ", ".join(f"{r:,.0f}" for r in rates)


ROUNDS = 2
"""Each side runs twice and keeps its best: on a small machine a neighbour's burst can halve one round."""


async def run(quick: bool = False) -> Report:
    report = Report("throughput", "stock pushes/s: the daemon against a plain aiohttp script")
    header(report, quick)
    count = 2000 if quick else 20_000
    on_hand = 100
    raw_rates: list[float] = []
    connector_rates: list[float] = []
    daemon_rates: list[float] = []
    cpu_per_item: list[float] = []
    stalls: list[tuple[float, float]] = []
    with bench_dir("thr") as folder:
        host = await SimHost.start(1, products=count)
        daemon: DaemonProcess | None = None
        try:
            state = await host.state()
            by_sku = remote_ids_by_sku(state)
            skus = sorted(by_sku)[:count]
            remote = [by_sku[s] for s in skus]
            await raw_push(host.urls[0], remote[: count // 10], on_hand + 9, CONCURRENCY)  # warm-up
            for round_ in range(ROUNDS):
                seconds = await raw_push(host.urls[0], remote, on_hand + 50 + round_, CONCURRENCY)
                raw_rates.append(rate(count, seconds))
                seconds = await connector_push(host.urls[0], remote, on_hand + 60 + round_, CONCURRENCY)
                connector_rates.append(rate(count, seconds))

            settings, erp = await prepare_run(
                folder,
                [
                    ChannelSpec(
                        "loja",
                        host.urls[0],
                        options={"concurrency": CONCURRENCY},
                        flows={"stock": {"batch_size": BATCH_SIZE}},
                    )
                ],
            )
            ids = seed_catalog(erp, skus, on_hand=on_hand, bindings={"loja": by_sku})
            daemon = DaemonProcess(settings)
            await daemon.start()
            await settle(erp)
            for round_ in range(ROUNDS):
                cpu_before = daemon.stats().cpu_seconds
                daemon.start_sampler()
                committed = move_stock(erp, [(ids[sku], 1) for sku in skus])
                drained = await wait_until(
                    lambda: outbox_counts(erp, "stock").get("pending", 0) == 0, timeout=600, interval=0.2
                )
                cpu_per_item.append((daemon.stats().cpu_seconds - cpu_before) / count)
                daemon.stop_sampler()
                if not drained:
                    report.note(f"round {round_ + 1}: the outbox did not drain in time")
                state = await host.state()
                expected = on_hand + round_ + 1
                arrivals = [
                    h["monotonic"]
                    for p in state["products"]
                    for h in p["stock_history"]
                    if h["quantidade"] == expected and h["monotonic"] >= committed
                ]
                if len(arrivals) != count:
                    report.note(f"round {round_ + 1}: {len(arrivals):,} of {count:,} updates arrived")
                daemon_rates.append(rate(len(arrivals), max(arrivals, default=committed) - committed))
                stalls.append(wire_gaps(sorted(arrivals)))
            counts = outbox_counts(erp, "stock")
            erp.close()
        finally:
            if daemon is not None:
                await daemon.stop()
            await host.stop()

    raw_rate, connector_rate, daemon_rate = max(raw_rates), max(connector_rates), max(daemon_rates)
    ratio = daemon_rate / raw_rate
    report.line(f"{count:,} stock updates a round, {CONCURRENCY} in flight, daemon batch size {BATCH_SIZE}")
    report.figure(
        "raw_per_s", raw_rate, f"raw aiohttp script: {raw_rate:8,.0f} PUT/s  (rounds: {rounds(raw_rates)})"
    )
    report.figure(
        "connector_per_s",
        connector_rate,
        f"daemon's HTTP layer alone:  {connector_rate:8,.0f} PUT/s  (rounds: {rounds(connector_rates)}; "
        f"{connector_rate / raw_rate:.2f} of raw)",
    )
    report.figure(
        "daemon_per_s",
        daemon_rate,
        f"daemon, commit -> last arrival: {daemon_rate:8,.0f} PUT/s  (rounds: {rounds(daemon_rates)})",
    )
    cpu_us = min(cpu_per_item) * 1e6
    report.figure(
        "daemon_cpu_us_per_item", cpu_us, f"daemon CPU per pushed item: {cpu_us:.0f} µs (all threads)"
    )
    longest, idle_share = min(stalls, default=(0.0, 0.0))
    report.figure(
        "longest_gap_ms",
        longest * 1000,
        f"the wire during the daemon's push: longest gap between arrivals {longest * 1000:.1f} ms; "
        f"gaps over {GAP_SECONDS * 1000:.0f} ms add up to {idle_share:.0%} of the round",
    )
    report.line(f"outbox after: {counts}; requests the simulator saw: {state['counters']['by_route']}")
    report.figure(
        "ratio",
        ratio,
        f"daemon/raw = {ratio:.2f} (target >= {TARGET_RATIO}): {verdict(ratio >= TARGET_RATIO)}",
    )
    return report
