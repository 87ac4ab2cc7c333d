"""Several loopback Loja Integrada simulators in one process of their own.

The daemon and the benchmark driver each get their own process too, so a figure measured on the
daemon's side never includes the simulator's CPU. ``python -m bench.simhost --count 5 ...`` prints one
JSON line with the simulators' URLs and serves until SIGTERM; benchmarks drive the simulators through
their ``/__sim__/`` admin endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.common import python
from channels.simulators.lojaintegrada import LojaIntegradaSimulator

API_KEY = "bench-chave-api"
APP_KEY = "bench-chave-aplicacao"
UNLIMITED = 1_000_000_000
"""Requests per minute that no benchmark reaches: "no rate limit"."""


async def serve(args: argparse.Namespace) -> None:
    sims = [
        LojaIntegradaSimulator(
            API_KEY,
            APP_KEY,
            rate_limit_per_minute=args.rate_limit,
            seed=index + 1,
            orders=args.orders,
            products=args.products,
            latency_ms=args.latency_ms,
        )
        for index in range(args.count)
    ]
    urls = [await sim.start("127.0.0.1", 0) for sim in sims]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"urls": urls}), flush=True)
    try:
        await stop.wait()
    finally:
        for sim in sims:
            await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simhost")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--products", type=int, default=0)
    parser.add_argument("--orders", type=int, default=0)
    parser.add_argument("--rate-limit", type=int, default=UNLIMITED)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


@dataclass
class SimHost:
    """The simulator process, seen from the benchmark: URLs, admin calls, and a clean stop."""

    process: asyncio.subprocess.Process
    urls: list[str]
    session: aiohttp.ClientSession

    @classmethod
    async def start(
        cls,
        count: int = 1,
        *,
        products: int = 0,
        orders: int = 0,
        rate_limit: int = UNLIMITED,
        latency_ms: float = 0.0,
        timeout: float = 120.0,
    ) -> SimHost:
        process = await asyncio.create_subprocess_exec(
            python(),
            "-m",
            "bench.simhost",
            "--count",
            str(count),
            "--products",
            str(products),
            "--orders",
            str(orders),
            "--rate-limit",
            str(rate_limit),
            "--latency-ms",
            str(latency_ms),
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
        )
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
            if not line:
                raise RuntimeError("the simulator host exited before it was ready")
            urls = [str(u) for u in json.loads(line)["urls"]]
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return cls(process, urls, session)

    async def state(self, index: int = 0) -> dict[str, Any]:
        async with self.session.get(f"{self.urls[index]}/__sim__/state") as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data

    async def configure(self, index: int, **config: Any) -> None:
        async with self.session.post(f"{self.urls[index]}/__sim__/config", json=config) as resp:
            resp.raise_for_status()

    async def counters(self, index: int = 0) -> dict[str, Any]:
        counters: dict[str, Any] = (await self.state(index))["counters"]
        return counters

    async def stop(self) -> None:
        await self.session.close()
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()


if __name__ == "__main__":
    sys.exit(main())
