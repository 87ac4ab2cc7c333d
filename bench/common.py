"""What every benchmark shares: the machine's description, percentiles, and how figures are printed.

Figures are printed as they are measured and also returned (``Report.figures``) so a test can check that
a benchmark still produces sane numbers without asserting on timings.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> str:
    """One line: cores, CPU model, Python, OS - printed before any figure, because figures mean
    little without it."""
    cores = os.cpu_count() or 0
    py = f"{platform.python_implementation()} {platform.python_version()}"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cores} cores · {cpu_model()} · {py} · {platform.system()} {platform.release()} · load {load}"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a p99 of 1,000 samples is the 990th value)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:,.1f} ms"


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


@dataclass
class Report:
    """A benchmark's printed lines and its figures by name (plain numbers, for tests and ratios)."""

    name: str
    title: str
    figures: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self, text: str) -> None:
        self.lines.append(text)
        print(f"  {text}", flush=True)

    def figure(self, key: str, value: float, text: str | None = None) -> float:
        self.figures[key] = value
        if text is not None:
            self.line(text)
        return value

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)


def header(report: Report, quick: bool) -> None:
    mode = "quick" if quick else "full"
    print(f"\n== {report.name}: {report.title} ({mode}) ==", flush=True)


@contextlib.contextmanager
def bench_dir(prefix: str) -> Iterator[Path]:
    """A short temporary folder under /tmp (Unix socket paths must stay under 108 bytes), removed after."""
    path = Path(tempfile.mkdtemp(prefix=f"ssb-{prefix}-", dir="/tmp"))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP"):  # BENCH_KEEP=1 keeps the settings, databases and daemon log
            print(f"  kept: {path}", flush=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def python() -> str:
    return sys.executable


def quiet_logging() -> None:
    """The benchmark driver imports daemon code that logs through structlog: keep its stdout for figures."""
    import structlog

    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
