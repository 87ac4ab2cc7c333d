"""``python -m bench [NAME ...] [--quick]``: run the benchmarks (all, or the ones named) and print figures.

Each benchmark starts what it needs (simulators, the daemon) in a temporary folder and stops it after,
also on failure. The full run takes a few minutes; ``--quick`` gives short versions for a smoke check.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bench import b_idle, b_latency, b_logsink, b_logview, b_orders, b_ratelimit, b_throughput
from bench.common import Report, machine

Bench = Callable[[bool], Coroutine[Any, Any, Report]]

BENCHMARKS: dict[str, Bench] = {
    "latency": b_latency.run,
    "throughput": b_throughput.run,
    "ratelimit": b_ratelimit.run,
    "idle": b_idle.run,
    "logsink": b_logsink.run,
    "orders": b_orders.run,
    "logview": b_logview.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="short versions (about two minutes in all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    names = args.names or list(BENCHMARKS)
    print(f"storesync benchmarks · machine: {machine()}", flush=True)
    failed: list[str] = []
    started = time.monotonic()
    for name in names:
        try:
            asyncio.run(BENCHMARKS[name](args.quick))
        except Exception:
            failed.append(name)
            print(f"  FAILED: {name}", flush=True)
            traceback.print_exc()
    print(
        f"\n{len(names) - len(failed)}/{len(names)} benchmark(s) ran in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
