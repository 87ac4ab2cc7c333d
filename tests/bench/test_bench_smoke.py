"""bench/ keeps working: the cheapest benchmark, very short, must still produce sane figures.

Timings are not asserted (they depend on the machine); what is checked is that every row logged was
counted and stored, that nothing was dropped, and that the figures are real numbers.
"""

from __future__ import annotations

import math

from bench import b_logsink
from bench.b_throughput import wire_gaps
from bench.common import percentile


async def test_log_sink_benchmark_produces_sane_figures() -> None:
    report = await b_logsink.run(quick=True, rows=3000)
    figures = report.figures
    assert figures["stored"] == 3000
    assert figures["written"] >= 3000
    assert figures["dropped"] == 0
    for key in ("rows_per_s", "writer_rows_per_s", "baseline_rows_per_s"):
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    assert figures["lag_samples"] > 0 and 0 <= figures["lag_p50"] <= figures["lag_p99"] <= figures["lag_max"]
    assert any("rows/s" in line for line in report.lines)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert math.isnan(percentile([], 50))


def test_wire_gaps_finds_the_longest_pause_and_the_share_spent_in_pauses() -> None:
    busy = [i * 0.0001 for i in range(100)]  # 10 ms of arrivals 0.1 ms apart
    arrivals = [*busy, 0.0099 + 0.005, 0.0149 + 0.0001]  # then a 5 ms pause
    longest, share = wire_gaps(arrivals)
    assert math.isclose(longest, 0.005)
    assert math.isclose(share, 0.005 / (arrivals[-1] - arrivals[0]))
    assert wire_gaps(busy)[1] == 0.0  # no pause over 2 ms
    assert wire_gaps([1.0]) == (0.0, 0.0)
