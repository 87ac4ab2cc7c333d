"""The real daemon against the loopback Loja Integrada: changes from outside reach the channel fast,
and no secret leaves the process by any door."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.e2e.harness import (
    CHANNEL,
    PYTHON,
    Harness,
    dump_database,
    import_products,
    link_products,
    query,
    wait_linked,
    wait_until,
)

pytestmark = pytest.mark.e2e

MAX_LATENCY_SECONDS = 2.0

_PYTHON_WRITER = """
import sqlite3, sys, time
db, sku, delta = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(db, timeout=10)
conn.execute(
    "INSERT INTO stock_movements (product_id, warehouse_id, delta, reason, reference) VALUES ("
    "(SELECT id FROM products WHERE sku = ?), (SELECT id FROM warehouses WHERE code = 'MAIN'), "
    "?, 'adjust', 'e2e: plain sqlite3')",
    (sku, delta),
)
conn.commit()
print(time.monotonic(), flush=True)
conn.close()
"""


def commit_movement_from_another_process(db: str, sku: str, delta: int) -> float:
    """INSERT a stock movement as the ERP would, with plain sqlite3 in a process of its own.

    Returns a CLOCK_MONOTONIC time (shared by every process on the host) at or before the commit:
    the sqlite3 command line's launch time, or the Python writer's own time right after commit.
    """
    cli = shutil.which("sqlite3")
    if cli is not None:
        started = time.monotonic()
        sql = (
            "INSERT INTO stock_movements (product_id, warehouse_id, delta, reason, reference) VALUES ("
            f"(SELECT id FROM products WHERE sku = '{sku}'), (SELECT id FROM warehouses WHERE code = 'MAIN'),"
            f" {int(delta)}, 'adjust', 'e2e: sqlite3 command line');"
        )
        done = subprocess.run(
            [cli, "-cmd", ".timeout 10000", db, sql], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        return started
    done = subprocess.run(
        [PYTHON, "-c", _PYTHON_WRITER, db, sku, str(delta)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip())


def test_a_stock_movement_written_by_plain_sqlite3_reaches_the_channel_within_2_s(harness: Harness) -> None:
    sim = harness.simulator(orders=0, products=4)
    config, _ = harness.settings(sim)
    daemon = harness.daemon(config)
    rows = [(sku, 10 + i) for i, sku in enumerate(sim.skus()[:3])]
    link_products(daemon, sim, rows)

    latencies = []
    for sku, quantity in rows:
        delta = 7
        committed_at = commit_movement_from_another_process(str(daemon.state_db), sku, delta)

        def arrived(
            sku: str = sku, want: int = quantity + delta, since: float = committed_at
        ) -> tuple[float] | None:
            for entry in sim.stock_history(sku):
                if entry["quantidade"] == want and entry["monotonic"] >= since:
                    return (float(entry["monotonic"]) - since,)
            return None

        (latency,) = wait_until(arrived, timeout=10, what=f"{sku}'s new stock on the simulator")
        latencies.append(latency)
    assert max(latencies) < MAX_LATENCY_SECONDS, latencies


def test_no_secret_reaches_output_databases_or_the_control_api(harness: Harness) -> None:
    sim = harness.simulator(orders=4, products=4)
    sim.inject_fault("401", 1)
    sim.inject_fault("5xx", 5)
    config, _ = harness.settings(sim)
    daemon = harness.daemon(config)

    wait_until(
        lambda: next(c for c in daemon.status().channels if c.name == CHANNEL).needs_reauth,
        timeout=10,
        what="the 401 to put the channel in needs_reauth",
    )
    rows = [(sku, 20) for sku in sim.skus()]
    import_products(daemon, rows)
    daemon.call(lambda c: c.resume(CHANNEL))
    wait_until(lambda: not sim.state()["faults"], timeout=15, what="every injected fault to be served")
    wanted = len(sim.state()["orders"])
    wait_until(
        lambda: query(daemon.state_db, "SELECT COUNT(*) FROM orders")[0][0] == wanted,
        timeout=20,
        what=f"the {wanted} orders to be imported after the faults",
    )
    wait_linked(daemon, sim, rows, check_stock=False)
    sku = rows[0][0]
    pushes_before = len(sim.stock_history(sku))
    daemon.call(lambda c: c.stock_set(sku, None, 50))
    wait_until(
        lambda: len(sim.stock_history(sku)) > pushes_before and daemon.settled(),
        timeout=10,
        what="a stock push after the faults",
    )
    responses = {
        path: daemon.raw_get(path)
        for path in (
            "/status",
            "/channels",
            "/logs?limit=5000",
            "/logs?level=warning&limit=5000",
            "/outbox?limit=5000",
            "/problems",
        )
    }
    assert sim.state()["counters"]["faults_served"] == 6
    assert daemon.stop() == 0
    events = daemon.log_events()
    assert "channel.needs_reauth" in events, "the 401 path was not exercised"
    assert "run.failed" in events or "run.recovered" in events, "the 5xx path was not exercised"

    places: dict[str, str] = {
        "daemon stdout": daemon.stdout_text(),
        "daemon stderr": daemon.stderr_text(),
        "storesync.db (rows)": dump_database(daemon.state_db),
        "storesync-log.db (rows)": dump_database(daemon.log_db),
        **{f"GET {path}": text for path, text in responses.items()},
    }
    for path in sorted(daemon.state_dir.iterdir()):
        if path.is_file():
            places[f"{path.name} (bytes)"] = path.read_bytes().decode("latin-1")
    assert places["daemon stdout"].strip(), "the daemon printed nothing: the scan would prove nothing"
    leaks = [
        f"{where} holds the {name}"
        for where, text in places.items()
        for name, value in zip(("api key", "app key"), harness.keys.values(), strict=True)
        if value in text
    ]
    assert not leaks, leaks
