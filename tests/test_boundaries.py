"""The import boundaries of DESIGN.md, enforced: statically (every import statement) and at run time
(loading the whole daemon never loads Textual or the TUI)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports_of(package: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[path.relative_to(ROOT)] = names
    return found


def offenders(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path, names in imports_of(package).items():
        for name in sorted(names):
            hit = any(name == f or name.startswith(f + ".") for f in forbidden)
            ok = any(name == a or name.startswith(a + ".") for a in allowed)
            if hit and not ok:
                bad.append(f"{path}: imports {name}")
    return bad


def test_daemon_and_channels_never_import_textual_or_tui() -> None:
    assert offenders("daemon", ("textual", "tui")) == []
    assert offenders("channels", ("textual", "tui")) == []


def test_channels_never_import_the_store_or_the_daemon() -> None:
    # Connectors get and return channel-neutral models; only the injectable clock is shared.
    assert offenders("channels", ("daemon",), allowed=("daemon.clock",)) == []


def test_tui_imports_only_the_control_api_client_and_wire_types() -> None:
    allowed = ("daemon.controlapi.client", "daemon.controlapi.wire", "daemon.controlapi")
    bad = offenders("tui", ("daemon", "channels"), allowed=allowed)
    # `from daemon.controlapi import client` names the package; anything deeper must be allowed above.
    assert bad == []


def test_loading_the_whole_daemon_loads_no_textual() -> None:
    code = (
        "import sys, daemon.app, daemon.cli, daemon.demo, channels.lojaintegrada, "
        "channels.simulators.lojaintegrada\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui'))\n"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    assert result.stdout.strip() == ""
