"""The storesync command as people run it: a bad settings file, and the demo on a fresh copy."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.harness import PYTHON, REPO, Harness, run_storesync, wait_until

pytestmark = pytest.mark.e2e

BAD_SETTINGS = """
[daemon]
state_dir = "{state_dir}"
log_level = "loud"

[channels.loja]
kind = "lojaintegrada"
base_url = "http://127.0.0.1:9"
api_key = "env:E2E_LOJA_CHAVE_API"
app_key = "env:E2E_LOJA_CHAVE_APLICACAO"
rate_limit = "fast"

[channels.loja.flows.stock]
batch_size = 0
"""
MISTAKES = ("daemon.log_level", "channels.loja.rate_limit", "channels.loja.flows.stock.batch_size")


def test_a_settings_file_with_three_mistakes_prints_all_three_and_exits_2(harness: Harness) -> None:
    bad = harness.workdir / "bad.toml"
    bad.write_text(BAD_SETTINGS.format(state_dir=harness.state_dir), encoding="utf-8")

    done = run_storesync(["--config", str(bad), "run"], harness.env, harness.workdir)

    assert done.returncode == 2, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    named = {key: [line for line in lines if key + ":" in line] for key in MISTAKES}
    assert all(len(found) == 1 for found in named.values()), done.stderr
    assert len(lines) == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert not (harness.state_dir / "control.sock").exists()
    for value in harness.keys.values():
        assert value not in done.stderr + done.stdout


def _snapshot(folder: Path) -> dict[str, int]:
    if not folder.exists():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_the_demo_imports_orders_and_pushes_stock_and_logs_shows_them(harness: Harness) -> None:
    """``storesync demo`` on a copy of the shipped settings.toml, as a new user runs it."""
    config = harness.workdir / "settings.toml"
    shutil.copyfile(REPO / "settings.toml", config)
    repo_var = _snapshot(REPO / "var")
    storesync = Path(PYTHON).with_name("storesync")
    command = [str(storesync)] if storesync.exists() else [PYTHON, "-m", "daemon"]
    output = harness.workdir / "demo.out"
    started = time.monotonic()
    with output.open("wb") as out:
        demo = harness.track(
            subprocess.Popen(
                [*command, "--config", str(config), "demo", "--no-tui", "--duration", "20"],
                cwd=harness.workdir,
                env=harness.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )

    def shown(*events: str) -> bool:
        text = output.read_text(encoding="utf-8", errors="replace")
        assert demo.poll() is None, f"the demo exited early ({demo.returncode}):\n{text[-3000:]}"
        return all(f" {event} " in text for event in events)

    wait_until(lambda: shown("order.created", "stock.pushed"), timeout=20, what="the demo's output")
    assert time.monotonic() - started < 20
    # The demo's carrier: a paid order gets a Correios parcel, and the tracking flow reads it.
    wait_until(lambda: shown("shipment.tracking_changed"), timeout=20, what="the demo's parcel tracked")

    def logged() -> set[str]:
        done = run_storesync(
            ["--config", str(config), "logs", "--json", "--limit", "1000"], harness.env, harness.workdir
        )
        assert done.returncode == 0, done.stderr
        events = {json.loads(line)["event"] for line in done.stdout.splitlines() if line.strip()}
        return events if {"order.created", "stock.pushed"} <= events else set()

    events = wait_until(logged, timeout=5, what="`storesync logs --json` to show the demo's work")
    assert "daemon.started" in events

    assert demo.wait(timeout=30) == 0, output.read_text(errors="replace")[-3000:]
    assert (harness.workdir / "var" / "storesync.db").exists()
    assert (harness.workdir / "var" / "storesync-log.db").exists()
    assert _snapshot(REPO / "var") == repo_var, "the demo wrote into the repository's var/"
