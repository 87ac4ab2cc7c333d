"""Signals to the real daemon process: SIGUSR1 syncs now, SIGHUP reloads (or keeps the old settings),
SIGTERM stops gracefully mid-batch without losing or doubling an order, and flushes the log."""

from __future__ import annotations

import copy
import json
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from daemon.controlapi.wire import DaemonStatus
from tests.e2e.harness import (
    ALL_FLOWS,
    CHANNEL,
    Harness,
    link_products,
    query,
    run_storesync,
    wait_until,
    write_toml,
)

pytestmark = pytest.mark.e2e


def test_sigusr1_runs_every_flow_at_once(harness: Harness) -> None:
    sim = harness.simulator(orders=3, products=4)
    config, _ = harness.settings(sim, interval="1h")
    daemon = harness.daemon(config)
    wait_until(daemon.settled, timeout=15, what="every flow's first run")
    before = daemon.flows()
    assert set(before) == set(ALL_FLOWS)
    soon = datetime.now(UTC) + timedelta(minutes=30)
    for flow in before.values():
        assert flow.next_run_at is not None and flow.next_run_at > soon, (
            f"{flow.flow} would run again by itself at {flow.next_run_at}"
        )

    daemon.send(signal.SIGUSR1)

    def all_ran_again() -> bool:
        now = daemon.flows()
        runs = [(before[name].last_run_at, now[name].last_run_at) for name in ALL_FLOWS]
        return all(then is not None and later is not None and later > then for then, later in runs)

    wait_until(all_ran_again, timeout=5, what="every flow to run again after SIGUSR1")
    assert daemon.alive


def test_sigterm_mid_batch_loses_no_order_and_imports_none_twice(harness: Harness) -> None:
    sim = harness.simulator(orders=300, products=20, latency_ms=20)
    config, tree = harness.settings(sim, interval="1h", shutdown_timeout="1s")
    for flow, body in tree["channels"][CHANNEL]["flows"].items():
        body["enabled"] = flow == "orders"
    write_toml(config, tree)
    statuses = set(tree["channels"][CHANNEL]["order_statuses"])
    wanted = {str(o["numero"]) for o in sim.state()["orders"] if o["situacao"] in statuses}
    assert len(wanted) == 300

    def imported() -> int:
        return int(query(daemon.state_db, "SELECT COUNT(*) FROM orders")[0][0])

    daemon = harness.daemon(config)
    wait_until(lambda: imported() >= 60, timeout=20, what="the import to be past its first page")
    daemon.send(signal.SIGTERM)
    stop_started = time.monotonic()
    assert daemon.wait_exit(timeout=15) == 0
    assert time.monotonic() - stop_started < 10
    at_stop = imported()
    assert 0 < at_stop < len(wanted), f"the stop was not mid-import ({at_stop} of {len(wanted)})"
    events = daemon.log_events()
    assert "channel.batch_abandoned" in events, "SIGTERM did not land mid-batch"
    assert events[-1] == "daemon.stopped"

    restarted = harness.daemon(config)
    wait_until(lambda: imported() >= len(wanted), timeout=40, what="the import to finish after the restart")
    wait_until(restarted.settled, timeout=10, what="the orders flow to settle")
    assert restarted.stop() == 0

    db = restarted.state_db
    doubled = query(
        db, "SELECT channel, remote_id, COUNT(*) FROM orders GROUP BY channel, remote_id HAVING COUNT(*) > 1"
    )
    assert doubled == []
    remote_ids = {row[0] for row in query(db, "SELECT remote_id FROM orders WHERE channel = ?", (CHANNEL,))}
    assert remote_ids == wanted
    assert query(db, "SELECT COUNT(*) FROM orders")[0][0] == len(wanted)
    assert query(db, "SELECT COUNT(*) FROM import_failures WHERE state = 'open'")[0][0] == 0
    doubled_items = query(
        db, "SELECT order_id, sku, COUNT(*) FROM order_items GROUP BY order_id, sku HAVING COUNT(*) > 1"
    )
    assert doubled_items == []
    items_per_order = dict(
        query(
            db,
            "SELECT o.remote_id, COUNT(i.id) FROM orders o LEFT JOIN order_items i "
            "ON i.order_id = o.id GROUP BY o.id",
        )
    )
    raw_items = {
        remote_id: len(json.loads(raw)["itens"])
        for remote_id, raw in query(db, "SELECT remote_id, raw FROM orders")
    }
    assert items_per_order == raw_items


def test_a_reload_with_a_bad_file_keeps_the_old_settings_running(harness: Harness) -> None:
    sim = harness.simulator(orders=0, products=3)
    config, tree = harness.settings(sim, interval="1h")
    daemon = harness.daemon(config)
    sku = sim.skus()[0]
    link_products(daemon, sim, [(sku, 10)])
    pid = daemon.status().pid
    assert pid == daemon.proc.pid

    broken = copy.deepcopy(tree)
    broken["channels"][CHANNEL]["flows"]["stock"]["batch_size"] = 0
    write_toml(config, broken)
    daemon.send(signal.SIGHUP)

    def reload_failed() -> DaemonStatus | None:
        status = daemon.status()
        return status if status.last_reload_error else None

    status = wait_until(reload_failed, timeout=10, what="the reload to fail and say so in /status")
    assert status.last_reload_error is not None
    assert "channels.loja.flows.stock.batch_size" in status.last_reload_error
    assert daemon.alive and status.pid == pid
    assert daemon.flows()["stock"].batch_size == 50

    daemon.call(lambda c: c.stock_move(sku, None, 5, "adjust", "e2e: after a bad reload"))
    wait_until(
        lambda: any(e["quantidade"] == 15 for e in sim.stock_history(sku)),
        timeout=10,
        what="a stock change to reach the channel on the old settings",
    )

    fixed = copy.deepcopy(tree)
    fixed["channels"][CHANNEL]["flows"]["stock"]["interval"] = "42m"
    fixed["channels"][CHANNEL]["channel_holds_stock_in"] = ["aguardando_pagamento"]
    write_toml(config, fixed)
    daemon.send(signal.SIGHUP)
    wait_until(
        lambda: (
            daemon.status().last_reload_error is None and daemon.flows()["stock"].interval_seconds == 42 * 60
        ),
        timeout=10,
        what="the fixed file to be applied",
    )
    assert daemon.alive and daemon.status().pid == pid
    holds = "SELECT holds_stock_in FROM channels WHERE name = ?"
    assert query(daemon.state_db, holds, (CHANNEL,)) == [('["aguardando_pagamento"]',)]
    wait_until(
        lambda: "settings.reload_failed" in daemon.log_events(),
        timeout=5,
        what="the failed reload in the log database",
    )


def test_graceful_stop_flushes_every_log_line(harness: Harness) -> None:
    sim = harness.simulator(orders=5, products=4)
    config, _ = harness.settings(sim)
    daemon = harness.daemon(config)
    wait_until(daemon.settled, timeout=15, what="the first runs")
    imported = query(daemon.state_db, "SELECT COUNT(*) FROM orders")[0][0]
    assert imported == 5

    assert daemon.stop(timeout=15) == 0
    events = daemon.log_events()
    assert events.count("order.created") == imported
    assert "daemon.stopping" in events
    assert events[-1] == "daemon.stopped"


def test_a_second_daemon_on_the_same_state_dir_is_refused(harness: Harness) -> None:
    sim = harness.simulator(orders=0, products=2)
    config, _ = harness.settings(sim)
    first = harness.daemon(config)

    second = run_storesync(["--config", str(config), "run"], harness.env, harness.workdir, timeout=30)
    assert second.returncode == 1, second.stderr
    assert "another storesync daemon is running" in second.stderr
    assert str(first.socket_path) in second.stderr

    assert first.alive
    assert first.socket_path.exists()
    assert first.status().pid == first.proc.pid
    assert first.stop() == 0
