"""The dashboard in a real terminal: ``storesync demo`` and ``storesync tui`` inside tmux at 80x24.

What only a terminal shows: the app starts from the console command, finds the daemon's socket from
the settings, speaks the configured language when the terminal names none, and quitting ends the demo
with its daemon and simulator and gives the terminal back.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon import cli
from daemon.settings import load_settings

PROJECT = Path(__file__).resolve().parents[2]
STATE_WORDS = (
    "ocioso|rodando|aguardando|pausado|desativado|circuito|reautenticar|"
    "idle|running|backing|paused|disabled|circuit|needs"
)
CHANNEL_ROW = re.compile(rf"^ loja\s+({STATE_WORDS})\b", re.MULTILINE)


def shows_channel_row(screen: str) -> bool:
    return CHANNEL_ROW.search(screen) is not None


# -- storesync tui finds the socket the daemon listens on -----------------------------------------------


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """Stands in for the dashboard: records what ``storesync tui`` would open it with."""
    calls: list[tuple[str, str | None]] = []

    def run(socket_path: str, *, default_locale: str | None = None) -> int:
        calls.append((socket_path, default_locale))
        return 0

    monkeypatch.setattr("tui.app.run", run)
    for name in list(os.environ):
        if name.upper().startswith("STORESYNC_"):
            monkeypatch.delenv(name)
    return calls


def test_storesync_tui_opens_the_socket_of_the_settings(
    tmp_path: Path, opened: list[tuple[str, str | None]]
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('[daemon]\nstate_dir = "state"\nlocale = "pt_BR"\n', encoding="utf-8")
    assert cli.main(["--config", str(config), "tui"]) == 0
    expected = load_settings(config, environ={}).socket_path
    assert opened == [(str(expected), "pt_BR")]
    assert expected == tmp_path / "state" / "control.sock"  # relative to the file, not to the shell


def test_storesync_tui_follows_the_environment_like_the_daemon(
    tmp_path: Path, opened: list[tuple[str, str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('[daemon]\nstate_dir = "state"\n', encoding="utf-8")
    run_dir = tmp_path / "run"
    monkeypatch.setenv("STORESYNC_CONFIG", str(config))
    monkeypatch.setenv("STORESYNC_DAEMON__RUNTIME_DIR", str(run_dir))
    monkeypatch.setenv("STORESYNC_DAEMON__LOCALE", "en")
    assert cli.main(["tui"]) == 0
    expected = load_settings(None, environ=dict(os.environ)).socket_path
    assert opened == [(str(expected), "en")]
    assert expected == run_dir / "control.sock"
    assert cli.main(["--socket", "/tmp/elsewhere.sock", "tui"]) == 0
    assert opened[-1][0] == "/tmp/elsewhere.sock"


# -- the demo in tmux -----------------------------------------------------------------------------------


class Tmux:
    """A private tmux server (its own socket), so nothing touches the user's sessions."""

    def __init__(self, binary: str, socket: Path, env: dict[str, str]) -> None:
        self.binary = binary
        self.socket = socket
        self.env = env

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            [self.binary, "-S", str(self.socket), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
            env=self.env,
        )
        return done.stdout

    def screen(self, target: str) -> str:
        return self("capture-pane", "-p", "-t", target)

    def wait_for(self, target: str, check: Callable[[str], bool], what: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen(target)
            if check(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f} s; the screen:\n{text}")
            time.sleep(0.2)  # the next look at the screen; the deadline bounds the wait

    def kill(self) -> None:
        subprocess.run(
            [self.binary, "-S", str(self.socket), "kill-server"],
            capture_output=True,
            timeout=10,
            env=self.env,
            check=False,
        )


def _terminal_env() -> dict[str, str]:
    """The caller's environment without settings overrides, and a locale that names no language."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("STORESYNC_", "LC_", "LOJA_"))}
    env["LANG"] = "C.UTF-8"
    return env


def _shell(command: list[str], exit_file: Path) -> str:
    """Runs ``command``, writes its exit status, then keeps the pane open to look at what is left."""
    return f"{shlex.join(command)}; echo $? > {shlex.quote(str(exit_file))}; exec sleep 300"


def _exit_status(path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise AssertionError(f"the command did not exit within {timeout:.0f} s")
        time.sleep(0.1)
    return int(path.read_text().strip())


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sstx", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.e2e
def test_demo_at_80x24_shows_the_channel_and_q_stops_everything(tmux: str, workdir: Path) -> None:
    server = Tmux(tmux, workdir / "tmux.sock", _terminal_env())
    config = workdir / "settings.toml"
    shutil.copyfile(PROJECT / "settings.toml", config)
    storesync = [sys.executable, "-m", "daemon", "--config", str(config)]
    watched: dict[int, str] = {}
    try:
        server(
            "new-session", "-d", "-s", "ss", "-n", "demo", "-x", "80", "-y", "24",
            _shell([*storesync, "demo"], workdir / "demo.exit"),
        )  # fmt: skip
        screen = server.wait_for("ss:demo", shows_channel_row, "the Channels screen with 'loja'", 45)
        assert "Canal / fluxo" in screen, "LANG=C names no language: the settings' pt_BR is used"
        pane = int(server("display-message", "-p", "-t", "ss:demo", "#{pane_pid}"))
        watched = {pid: _cmdline(pid) for pid in _descendants(pane)}
        assert any("channels.simulators.lojaintegrada" in c for c in watched.values()), watched
        assert any(re.search(r"-m daemon --config \S+ run", c) for c in watched.values()), watched

        # `storesync tui` attaches to the running daemon, and Ctrl+C quits it.
        server("new-window", "-t", "ss", "-n", "tui", _shell([*storesync, "tui"], workdir / "tui.exit"))
        server.wait_for("ss:tui", shows_channel_row, "storesync tui showing 'loja'", 30)
        server("send-keys", "-t", "ss:tui", "C-c")
        assert _exit_status(workdir / "tui.exit", 15) == 0

        server("send-keys", "-t", "ss:demo", "q")
        assert _exit_status(workdir / "demo.exit", 45) == 0
        left = {pid: cmd for pid, cmd in watched.items() if _alive(pid)}
        assert left == {}, "the demo left processes running"
        daemon_line = f"-m daemon --config {config} run"
        assert not [pid for pid in _parents() if daemon_line in _cmdline(pid)], "a daemon is still running"
        # The terminal is given back: off the alternate screen, the demo's own lines in view.
        assert server("display-message", "-p", "-t", "ss:demo", "#{alternate_on}").strip() == "0"
        assert "storesync demo: simulators on http://127.0.0.1:" in server.screen("ss:demo")
    finally:
        server.kill()
        for pid in watched:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
