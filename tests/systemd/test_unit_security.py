"""The shipped unit: the directives the daemon relies on, a verify pass, and an exposure of 2.0 or lower."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "storesync.service"
MAX_EXPOSURE = 2.0
INSTALL_TIMEOUT = 900


def _install_systemd_analyze() -> str | None:
    """On Debian, systemd-analyze comes with the ``systemd`` package."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(
            ["apt-get", "update", "-qq"], check=True, env=env, timeout=INSTALL_TIMEOUT, capture_output=True
        )
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "systemd"],
            check=True,
            env=env,
            timeout=INSTALL_TIMEOUT,
            capture_output=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return shutil.which("systemd-analyze")


@pytest.fixture(scope="session")
def analyze() -> str:
    tool = shutil.which("systemd-analyze") or _install_systemd_analyze()
    if tool is None:
        pytest.skip("systemd-analyze is not installed and could not be installed (needs root and apt-get)")
    return tool


def _service_section() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service":
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_unit_has_what_the_daemon_relies_on() -> None:
    service = _service_section()
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/usr/bin/storesync run --config /etc/storesync/settings.toml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "WatchdogSec": "30s",
        "Restart": "on-failure",
        "StateDirectory": "storesync",
        "RuntimeDirectory": "storesync",
        "RuntimeDirectoryMode": "0750",
        "UMask": "0027",
        "User": "storesync",
        "Group": "storesync",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert set(service["Environment"]) == {
        "STORESYNC_DAEMON__STATE_DIR=/var/lib/storesync",
        "STORESYNC_DAEMON__RUNTIME_DIR=/run/storesync",
    }
    # The daemon gives in-flight work 20 s (daemon.shutdown_timeout); systemd must wait longer.
    assert int(service["TimeoutStopSec"][0].removesuffix("s")) > 20
    assert "LoadCredential" in UNIT.read_text(encoding="utf-8")


@pytest.mark.timeout(INSTALL_TIMEOUT + 60)
def test_security_exposure_is_low(analyze: str) -> None:
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for storesync\.service: (\d+(?:\.\d+)?)", output)
    assert match, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


@pytest.mark.timeout(INSTALL_TIMEOUT + 60)
def test_unit_verifies_cleanly(analyze: str, tmp_path: Path) -> None:
    # verify checks that ExecStart exists; point it at a stub so the check runs without an install.
    stub = tmp_path / "storesync"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    unit = tmp_path / "storesync.service"
    text = UNIT.read_text(encoding="utf-8")
    assert "ExecStart=/usr/bin/storesync " in text
    unit.write_text(text.replace("ExecStart=/usr/bin/storesync ", f"ExecStart={stub} "), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 even for unknown keys, only warning on stderr: treat any message as a failure.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
