"""Security: secrets stay secret, the control socket is closed to other users, TLS stays verified.

* A full run with faults (rejected credentials, 5xx, error bodies that quote the credentials back,
  orders that cannot be imported) on two channels, one keyed by environment variables and one by a
  ``file:`` credential, and a Correios carrier channel whose bearer token expires on the way; then
  every place the daemon writes or answers is searched for the configured secret values and the
  credentials obtained at run time (both tokens, the encoded Basic header): its stdout and stderr,
  both SQLite files (every row of every table, text and blobs, and the raw bytes of the files and
  their WALs), every control API answer (status, channels, all log pages, outbox, problems,
  explain, the event stream, error answers) and the CLI's messages.
* The control socket is 0660 and the daemon checks the peer's credentials: a forked child that
  drops to ``nobody`` is refused at ``connect`` (the file mode), and, with the mode opened up on
  purpose, by the server itself (403).
* No source file in ``channels/`` or ``daemon/`` turns TLS verification off (an AST scan), and the
  scan itself is shown to catch each pattern it looks for.

(``systemd-analyze security`` on the unit is checked in tests/systemd.)
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import os
import pwd
import socket
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemon.controlapi.client import ControlError
from tests.faults.harness import (
    PYTHON,
    Setup,
    atp_by_sku,
    erp_move_stock,
    eventually,
    last_log_id,
    query,
    running_setup,
    ship,
    shipment,
    sim_stock,
)

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
ENV_CH, FILE_CH = "loja", "vitrine"


# --- secrets ------------------------------------------------------------------------------------------


async def raw_get(setup: Setup, path: str, params: dict[str, str] | None = None) -> tuple[int, str]:
    connector = aiohttp.UnixConnector(path=str(setup.daemon.socket_path))
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as http,
        http.get(f"http://storesync{path}", params=params) as response,
    ):
        return response.status, await response.text()


async def all_log_pages(setup: Setup) -> list[str]:
    pages: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "500"} | ({"cursor": cursor} if cursor else {})
        status, text = await raw_get(setup, "/logs", params)
        assert status == 200, text
        pages.append(text)
        nxt = json.loads(text).get("next_cursor")
        if nxt is None:
            return pages
        cursor = str(nxt)


async def event_stream(setup: Setup) -> str:
    """``GET /events?after=0``: the whole replay and the status snapshot that follows it."""
    last = last_log_id(setup.log_db)
    lines: list[str] = []
    connector = aiohttp.UnixConnector(path=str(setup.daemon.socket_path))
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.get("http://storesync/events", params={"after": "0"}) as response,
    ):
        assert response.status == 200
        seen_status = replayed = False
        async for raw in response.content:
            line = raw.decode()
            lines.append(line)
            event = json.loads(line)
            replayed = replayed or (event.get("type") == "log" and event["id"] >= last)
            seen_status = seen_status or event.get("type") == "status"
            if replayed and seen_status:
                break
    return "".join(lines)


def database_rows(db: Path) -> Iterator[tuple[str, str, Any]]:
    """(table, column, value) for every value of every table, text and blobs alike."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    yield table, column, value
    finally:
        conn.close()


def leaks(secrets: list[str], where: str, text: str | bytes) -> list[str]:
    found = []
    for secret in secrets:
        needle: str | bytes = secret.encode() if isinstance(text, bytes) else secret
        if needle in text:  # type: ignore[operator]
            found.append(f"{where}: contains {secret[:6]}…")
    return found


def cli(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "daemon", "--socket", str(setup.daemon.socket_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def exercise_with_faults(setup: Setup) -> list[str]:
    """A little of everything that produces log lines, stored errors and API answers; returns the
    credentials the daemon obtained at run time (the carrier's bearer tokens, its Basic header)."""
    env_sim, file_sim = setup.sims[ENV_CH], setup.sims[FILE_CH]
    carrier, carrier_spec = setup.carrier, setup.carrier_spec
    assert carrier is not None and carrier_spec is not None

    async def synced() -> bool:
        atp = await atp_by_sku(setup.state_db)
        return sim_stock(env_sim) == atp and sim_stock(file_sim) == atp

    await eventually(synced, timeout=30, what="the first sync of both channels")
    for sim in (env_sim, file_sim):
        sim.echo_credentials = True
    # Stock writes for one product answer 400 quoting the credentials: parked with that message.
    first_product = min(env_sim.products)
    env_sim.refuse_stock_for.add(first_product)
    await asyncio.to_thread(erp_move_stock, setup.state_db, setup.skus[0], 2)
    # Orders that cannot be imported (their raw payload is kept for the operator).
    bad = env_sim.create_orders(1, status="pedido_pago")[0]
    env_sim.tamper[bad] = lambda detail: detail["itens"][0].update(quantidade="-1")
    env_sim.create_orders(2, status="pedido_pago")
    # A burst of 5xx, then credentials refused with the key quoted back, on the file-keyed channel.
    file_sim.inject_fault("5xx", 6)
    await asyncio.to_thread(erp_move_stock, setup.state_db, setup.skus[1], 1)
    file_sim.inject_fault("401", 1_000_000)

    async def reauth() -> bool:
        return (await setup.daemon.channel_status(FILE_CH)).needs_reauth

    await eventually(reauth, timeout=30, what="the file-keyed channel to need re-authentication")
    failures = "SELECT COUNT(*) FROM import_failures"
    await eventually(
        lambda: bool(query(setup.state_db, failures)[0][0]),
        timeout=20,
        what="the bad order to be parked",
    )
    parked = "SELECT COUNT(*) FROM outbox WHERE state = 'parked' AND last_error LIKE '%credenciais%'"
    await eventually(
        lambda: bool(query(setup.state_db, parked)[0][0]), timeout=20, what="the refused push to be parked"
    )
    file_sim.clear_faults()
    assert cli(setup, "resume", FILE_CH).returncode == 0
    await eventually(
        lambda: not setup.sims[FILE_CH].state()["faults"], timeout=5, what="the faults to be cleared"
    )
    # The carrier: a token, a 401 once it expires, a second token, and a 5xx burst on the way.
    code = await ship(setup, ENV_CH)
    tokens = list(carrier.tokens)
    carrier.expire_tokens()
    carrier.inject_fault("5xx", 2, paths="/srorastro/")
    carrier.advance(code)
    await eventually(lambda: shipment(setup, code)[0] == "in_transit", timeout=20, what="the parcel moving")
    tokens += list(carrier.tokens)
    assert len(set(tokens)) == 2
    basic = base64.b64encode(f"{carrier_spec.user}:{carrier_spec.access_code}".encode()).decode()
    return [*tokens, basic]


async def collect_api_answers(setup: Setup) -> dict[str, str]:
    answers: dict[str, str] = {}
    for path in ("/status", "/channels", "/outbox", "/problems"):
        status, text = await raw_get(setup, path)
        assert status == 200, (path, text)
        answers[path] = text
    for state in ("failed", "parked", "sent", "pending"):
        answers[f"/outbox?state={state}"] = (await raw_get(setup, "/outbox", {"state": state}))[1]
    for channel in (ENV_CH, FILE_CH):
        for entity in ("stock", "price"):
            params = {"channel": channel, "entity": entity, "sku": setup.skus[0]}
            answers[f"/explain {channel} {entity}"] = (await raw_get(setup, "/explain", params))[1]
    for index, page in enumerate(await all_log_pages(setup)):
        answers[f"/logs page {index}"] = page
    answers["/events"] = await event_stream(setup)
    # Error answers, and the client's exceptions built from them.
    for path, params in (
        ("/explain", {"channel": "nope", "sku": "x"}),
        ("/logs", {"level": "loud"}),
        ("/no-such-endpoint", {}),
    ):
        answers[f"error {path}"] = (await raw_get(setup, path, params))[1]
    async with setup.daemon.client() as client:
        try:
            await client.stock_set("NO-SUCH-SKU", None, 3)
        except ControlError as exc:
            answers["ControlError"] = f"{exc} {exc.message}"
    for args in (("status",), ("outbox",), ("logs", "--limit", "500"), ("sync", "nope"), ("problems",)):
        done = cli(setup, *args)
        answers[f"cli {' '.join(args)}"] = done.stdout + done.stderr
    return answers


async def test_no_secret_anywhere_after_a_run_with_faults() -> None:
    async with running_setup(
        [ENV_CH, FILE_CH],
        file_secrets=[FILE_CH],
        flows={name: {"orders": {"interval": "1s", "batch_size": 50}} for name in (ENV_CH, FILE_CH)},
        carrier={},
    ) as setup:
        secrets = setup.secret_values
        assert len(set(secrets)) == 6  # two per sales channel, the carrier's user and access code
        secrets += await exercise_with_faults(setup)
        answers = await collect_api_answers(setup)
        assert await setup.daemon.stop() == 0
        found: list[str] = []
        for where, text in answers.items():
            found += leaks(secrets, f"control API {where}", text)
        found += leaks(secrets, "daemon stdout/stderr", setup.daemon.output())
        for db in (setup.state_db, setup.log_db):
            for table, column, value in database_rows(db):
                if isinstance(value, (str, bytes)):
                    found += leaks(secrets, f"{db.name} {table}.{column}", value)
            for path in db.parent.glob(db.name + "*"):  # the file, its -wal and -shm
                found += leaks(secrets, f"raw bytes of {path.name}", path.read_bytes())
        assert found == [], "\n".join(found)
        # The faults really happened and really quoted the keys back (so the scan had work to do).
        assert "***" in answers["/outbox?state=parked"] or "***" in answers["/outbox?state=failed"]
        assert "needs_reauth" in answers["/events"] and "credenciais" in answers["/events"]


# --- the control socket ---------------------------------------------------------------------------------


def as_nobody_connect(socket_path: Path) -> str:
    """Fork; the child drops to nobody (no supplementary groups), connects and asks for /status.

    Returns what the child saw: ``refused: <errno name>`` or the HTTP status line.
    """
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no asyncio, no threads, only system calls, then _exit
        outcome = "child failed"
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(10)
            try:
                client.connect(str(socket_path))
            except OSError as exc:
                outcome = f"refused: {os.strerror(exc.errno or 0)}"
            else:
                client.sendall(b"GET /status HTTP/1.1\r\nHost: storesync\r\nConnection: close\r\n\r\n")
                outcome = client.recv(4096).split(b"\r\n", 1)[0].decode()
        except BaseException as exc:  # anything goes back to the parent as text
            outcome = f"child error: {exc!r}"
        finally:
            os.write(write_end, outcome.encode())
            os._exit(0)
    os.close(write_end)
    try:
        chunks = []
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
async def test_control_socket_refuses_other_users() -> None:
    async with running_setup([ENV_CH]) as setup:
        socket_path = setup.daemon.socket_path
        info = socket_path.stat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660
        # Let nobody reach the socket file itself, so only its mode and the server's check decide.
        for folder in (setup.workdir, socket_path.parent):
            folder.chmod(0o755)
        seen = await asyncio.to_thread(as_nobody_connect, socket_path)
        assert seen == f"refused: {os.strerror(13)}", seen  # EACCES: the 0660 mode
        socket_path.chmod(0o666)  # a mistake an operator could make; the daemon still says no
        try:
            seen = await asyncio.to_thread(as_nobody_connect, socket_path)
        finally:
            socket_path.chmod(0o660)
        assert seen.startswith("HTTP/1.1 403"), seen
        async with setup.daemon.client() as client:  # root (the daemon's own user) still gets in
            assert (await client.status()).pid == setup.daemon.pid


# --- TLS verification --------------------------------------------------------------------------------------


def tls_off(tree: ast.AST) -> list[tuple[int, str]]:
    """Every place in ``tree`` that disables certificate or host-name verification."""
    found: list[tuple[int, str]] = []
    false_kwargs = {"ssl", "verify_ssl", "verify", "check_hostname", "verify_certs"}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in false_kwargs:
            if isinstance(node.value, ast.Constant) and node.value.value is False:
                found.append((node.value.lineno, f"{node.arg}={node.value.value!r}"))
        elif isinstance(node, ast.Attribute) and node.attr in ("CERT_NONE", "_create_unverified_context"):
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.Name) and node.id in ("CERT_NONE", "_create_unverified_context"):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr in ("check_hostname", "verify_mode")
                    and isinstance(value, ast.Constant)
                    and value.value is False
                ):
                    found.append((node.lineno, f"{target.attr} = {value.value!r}"))
        elif isinstance(node, ast.ImportFrom) and any(
            alias.name in ("CERT_NONE", "_create_unverified_context") for alias in node.names
        ):
            found.append((node.lineno, "imports an unverified-TLS name"))
    return found


def test_tls_verification_is_never_turned_off() -> None:
    offenders = []
    for package in ("channels", "daemon"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            offenders += [f"{path.relative_to(REPO)}:{line}: {what}" for line, what in tls_off(tree)]
    assert offenders == [], "\n".join(offenders)


@pytest.mark.parametrize(
    "snippet",
    [
        "aiohttp.TCPConnector(ssl=False)",
        "session.get(url, verify_ssl=False)",
        "requests.get(url, verify=False)",
        "ctx.check_hostname = False",
        "ctx.verify_mode = ssl.CERT_NONE",
        "ctx = ssl._create_unverified_context()",
        "from ssl import CERT_NONE",
    ],
)
def test_the_tls_scan_catches(snippet: str) -> None:
    assert tls_off(ast.parse(snippet)), snippet
