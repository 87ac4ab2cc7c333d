"""The storesync command: parsing, finding the socket, talking to a (fake) daemon, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import types
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Self, cast

import pytest

from daemon import cli
from daemon.clock import FakeClock
from daemon.controlapi.client import ControlClient
from daemon.controlapi.runtime import FieldError, Runtime
from daemon.controlapi.server import ControlServer
from daemon.controlapi.wire import (
    ActionResult,
    DaemonStatus,
    ImportFailure,
    LogPage,
    LogRow,
    Parcel,
    Problems,
)
from daemon.events import EventBus
from daemon.logbook import LogBook, LogSink, event_to_row

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class MiniRuntime:
    """Just what these tests call; the control-API tests cover the rest of the Runtime protocol."""

    def __init__(self, book: LogBook) -> None:
        self.book = book
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.problem_list = Problems()

    @property
    def erp(self) -> Self:
        """One fake plays both the runtime and its ERP operations."""
        return self

    @property
    def bus(self) -> EventBus:
        return self.book.bus

    async def status(self) -> DaemonStatus:
        return DaemonStatus(version="9.9", pid=1, started_at=T0)

    async def problems(self) -> Problems:
        return self.problem_list

    async def order_parcels(self, channel: str, order_number: str) -> list[Parcel]:
        return [p for p in self.problem_list.parcels if p.order_number == order_number]

    async def query_logs(self, **kwargs: Any) -> LogPage:
        return await self.book.query(**kwargs)

    async def log_rows_after(self, after_id: int, limit: int) -> list[LogRow]:
        return await self.book.rows_after(after_id, limit)

    async def stock_set(self, sku: str, warehouse: str | None, quantity: int) -> ActionResult:
        if quantity > 1000:
            raise FieldError("quantity is larger than any shelf", "quantity")
        self.calls.append(("stock_set", (sku, warehouse, quantity)))
        return ActionResult(ok=True, message=f"{sku}: on hand set to {quantity}")

    async def price_set(self, sku: str, *prices: Any) -> ActionResult:
        self.calls.append(("price_set", (sku, *prices)))
        return ActionResult(ok=True, message=f"{sku}: prices saved")

    async def import_products_csv(self, text: str) -> ActionResult:
        return ActionResult(
            ok=False,
            message="1 product imported, 1 line refused",
            details={"errors": [{"line": 3, "field": "sku", "error": "is empty"}]},
        )


@pytest.fixture(autouse=True)
def _english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests check the English texts; tests/cli/test_cli_i18n.py covers the choice of language."""
    for name in ("LC_ALL", "LC_MESSAGES", "STORESYNC_DAEMON__LOCALE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    token = cli._LOCALE.set("en")  # for functions called directly, not through cli.main
    yield
    cli._LOCALE.reset(token)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ssl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def book(short_dir: Path) -> AsyncIterator[LogBook]:
    opened = await LogBook.open(short_dir / "log.db", sink=LogSink(clock=FakeClock()))
    yield opened
    await opened.aclose()


@pytest.fixture
def runtime(book: LogBook) -> MiniRuntime:
    return MiniRuntime(book)


@pytest.fixture
async def sock(runtime: MiniRuntime, short_dir: Path) -> AsyncIterator[str]:
    server = ControlServer(cast(Runtime, runtime), short_dir / "control.sock")
    await server.start()
    yield str(server.socket_path)
    await server.stop()


async def storesync(*argv: str) -> int:
    """Run the command in a thread (it runs its own event loop) while the server runs on ours."""
    return await asyncio.to_thread(cli.main, list(argv))


# --- parsing ---------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def test_parsing_commands() -> None:
    args = parse(
        "stock", "move", "SKU-1", "-3", "--warehouse", "LOJA", "--reason", "sale", "--ref", "order:9"
    )
    assert (args.handler, args.sku, args.delta, args.warehouse, args.reason, args.ref) == (
        cli.cmd_stock_move,
        "SKU-1",
        -3,
        "LOJA",
        "sale",
        "order:9",
    )
    args = parse("logs", "--json", "--level", "warning", "-f", "--since", "2h")
    assert args.json and args.follow and args.level == "warning" and args.since == "2h"
    assert parse("--json", "status").json is True
    assert parse("status").json is False
    assert parse("outbox", "retry", "--channel", "loja", "4", "5").ids == [4, 5]
    assert parse("sync", "--channel", "loja", "--flow", "stock").channel == "loja"
    args = parse(
        "invoice", "add", "loja", "1001", "--number", "7", "--series", "1", "--key", "K", "--issued-at", "x"
    )
    assert (args.channel, args.order, args.number, args.key) == ("loja", "1001", "7", "K")
    assert parse("explain", "loja", "SKU-1").entity == "stock"
    args = parse("product", "link", "SKU-1", "loja", "10042")
    assert (args.handler, args.sku, args.channel, args.remote_id) == (
        cli.cmd_product_link,
        "SKU-1",
        "loja",
        "10042",
    )
    args = parse("product", "unlink", "SKU-1", "loja")
    assert (args.handler, args.sku, args.channel) == (cli.cmd_product_unlink, "SKU-1", "loja")
    assert parse("--socket", "/tmp/x.sock", "tui").socket == "/tmp/x.sock"


@pytest.mark.parametrize(
    "argv",
    [
        ["stock", "set", "SKU"],  # no quantity
        ["stock", "set", "SKU", "many"],
        ["tracking", "add", "loja", "1001"],  # --code is required
        ["outbox", "retry", "x1"],
        ["logs", "--level", "loud"],
        ["explain", "loja", "SKU", "--entity", "colour"],
        ["product", "link", "SKU", "loja"],  # the remote id is required
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_parse_values_people_type() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert cli.parse_when("90m", now=now) == datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    assert cli.parse_when("2026-03-01T09:00:00-03:00") == now
    assert cli.parse_when("2026-03-01").tzinfo is not None
    with pytest.raises(cli.UsageError, match="--since: expected a time"):
        cli.parse_when("yesterday", name="--since")
    assert cli.parse_money("1.234,56", name="LIST") == Decimal("1234.56")
    assert cli.parse_money("R$ 99,90", name="LIST") == Decimal("99.90")
    assert cli.parse_money("119.90", name="LIST") == Decimal("119.90")
    with pytest.raises(cli.UsageError, match="--sale: not a price"):
        cli.parse_money("-1", name="--sale")


# --- finding the socket ----------------------------------------------------------------------------


def test_socket_path_comes_from_the_settings_without_secrets(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('[daemon]\nstate_dir = "data"\n[channels.loja]\napi_key = "env:NOT_SET_ANYWHERE"\n')
    assert cli.default_socket_path(str(config), {}) == tmp_path / "data" / "control.sock"
    config.write_text('[daemon]\nstate_dir = "data"\nruntime_dir = "/run/storesync"\n')
    assert cli.default_socket_path(str(config), {}) == Path("/run/storesync/control.sock")
    env = {"STORESYNC_CONFIG": str(config), "STORESYNC_DAEMON__RUNTIME_DIR": "/run/other"}
    assert cli.default_socket_path(None, env) == Path("/run/other/control.sock")
    assert cli.default_socket_path(str(tmp_path / "missing.toml"), {}) == tmp_path / "var" / "control.sock"


def test_unreadable_settings_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("[daemon\n")
    assert cli.main(["--config", str(config), "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{config}: not valid TOML")


def test_no_daemon_is_one_plain_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "none.sock"
    assert cli.main(["--socket", str(path), "status"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"storesync: no daemon is running on {path} "
        "(start it with `storesync run` or `systemctl start storesync`)\n"
    )


# --- against a daemon ------------------------------------------------------------------------------


async def test_status_human_and_json(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await storesync("--socket", sock, "status") == 0
    assert "storesync 9.9" in capsys.readouterr().out
    assert await storesync("--socket", sock, "--json", "status") == 0
    assert DaemonStatus.model_validate_json(capsys.readouterr().out).version == "9.9"


async def test_logs_json_lines_oldest_first(
    sock: str, book: LogBook, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(5):
        book.sink.offer(event_to_row({"event": f"e{i}", "level": "info", "channel": "loja", "n": i}))
    book.sink.offer(event_to_row({"event": "other", "level": "error", "channel": "ml"}))
    await book.flush()
    assert await storesync("--socket", sock, "logs", "--json", "--channel", "loja", "--limit", "3") == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [LogRow.model_validate_json(line) for line in lines]
    assert [(r.id, r.event, r.data["n"]) for r in rows] == [(3, "e2", 2), (4, "e3", 3), (5, "e4", 4)]

    assert await storesync("--socket", sock, "logs", "--level", "error") == 0
    out = capsys.readouterr().out
    assert "ERROR" in out and "other" in out and "e4" not in out


async def test_follow_prints_new_matching_rows(
    sock: str, book: LogBook, capsys: pytest.CaptureFixture[str]
) -> None:
    filters = {
        "channel": "loja",
        "flow": None,
        "level": None,
        "entity": None,
        "entity_id": None,
        "until": None,
        "q": None,
    }
    async with ControlClient(sock, timeout=5) as client:
        following = asyncio.create_task(cli._follow(client, None, filters, True))
        try:
            book.sink.offer(event_to_row({"event": "skip", "level": "info", "channel": "ml"}))
            book.sink.offer(event_to_row({"event": "show", "level": "info", "channel": "loja"}))
            await book.flush()
            printed: list[str] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while not printed:
                assert loop.time() < deadline, "nothing printed"
                printed = capsys.readouterr().out.splitlines()
                await asyncio.sleep(0.01)
            assert [LogRow.model_validate_json(line).event for line in printed] == ["show"]
        finally:
            following.cancel()
            with pytest.raises(asyncio.CancelledError):
                await following


async def test_an_erp_command_end_to_end(
    sock: str, runtime: MiniRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await storesync("--socket", sock, "stock", "set", "SKU-1", "12", "--warehouse", "MAIN") == 0
    assert capsys.readouterr().out == "SKU-1: on hand set to 12\n"
    assert runtime.calls == [("stock_set", ("SKU-1", "MAIN", 12))]

    assert await storesync("--socket", sock, "stock", "set", "SKU-1", "5000") == 1
    assert capsys.readouterr().err == "storesync: quantity is larger than any shelf\n"

    assert await storesync("--socket", sock, "price", "set", "SKU-1", "119,90", "--sale", "99.90") == 0
    assert runtime.calls[-1] == (
        "price_set",
        ("SKU-1", Decimal("119.90"), Decimal("99.90"), None, None, None, None),
    )
    assert await storesync("--socket", sock, "--json", "price", "set", "SKU-1", "1") == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["ok"] is True


async def test_product_import_prints_each_refused_line(
    sock: str, short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = short_dir / "produtos.csv"
    csv.write_text("sku,name\nA,Caneca\n,Sem SKU\n", encoding="utf-8")
    assert await storesync("--socket", sock, "product", "import", str(csv)) == 1
    assert capsys.readouterr().out.splitlines() == [
        "1 product imported, 1 line refused",
        "  line 3: sku: is empty",
    ]
    assert await storesync("--socket", sock, "product", "import", str(short_dir / "nope.csv")) == 2


# --- commands that hand over to other modules ------------------------------------------------------


async def test_problems_one_heading_per_kind_that_has_any(
    sock: str, runtime: MiniRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await storesync("--socket", sock, "problems") == 0
    assert capsys.readouterr().out.startswith("no problems")
    runtime.problem_list = Problems(
        import_failures=[
            ImportFailure(
                id=4, channel="loja", entity="order", remote_id="1077", error="CPF 123 is not valid",
                attempts=2, state="open", first_seen_at=T0, last_seen_at=T0,
            )
        ],
        parcels=[
            Parcel(
                shipment_id=9, channel="loja", order_id=7, order_number="1078", carrier="correios_pac",
                tracking_code="QP123456785BR", status="returned", event="Objeto devolvido ao remetente",
                since=T0,
            )
        ],
    )  # fmt: skip
    assert await storesync("--socket", sock, "problems") == 0
    out = capsys.readouterr().out
    assert "Records that could not be imported (1)" in out and "CPF 123 is not valid" in out
    assert "Parcels that need a look (1)" in out
    parcel_line = next(line for line in out.splitlines() if "QP123456785BR" in line)
    assert "1078" in parcel_line and "returned" in parcel_line and "devolvido ao remetente" in parcel_line
    assert "Outbox" not in out and "never integrated" not in out
    assert await storesync("--socket", sock, "--json", "problems") == 0
    assert Problems.model_validate_json(capsys.readouterr().out) == runtime.problem_list

    assert await storesync("--socket", sock, "tracking", "show", "loja", "1078") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["CARRIER", "CODE", "STATE"]
    assert "QP123456785BR" in lines[1] and "returned" in lines[1]
    assert await storesync("--socket", sock, "tracking", "show", "loja", "1") == 0
    assert "has no parcel" in capsys.readouterr().out


def test_run_hands_over_to_the_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple[Path | None, dict[str, Any]]] = []
    fake = types.ModuleType("daemon.app")

    def run_daemon(config_path: Path | None, overrides: dict[str, Any]) -> int:
        seen.append((config_path, overrides))
        return 3

    fake.run_daemon = run_daemon  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "daemon.app", fake)
    config = tmp_path / "s.toml"
    assert cli.main(["--config", str(config), "run", "--log-level", "debug"]) == 3
    assert seen == [(config, {"daemon": {"log_level": "debug"}})]


def test_settings_errors_from_the_app_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.settings import SettingsError

    fake = types.ModuleType("daemon.app")

    def run_daemon(config_path: Path | None, overrides: dict[str, Any]) -> int:
        raise SettingsError(
            ["channels.loja.api_key: environment variable X is not set", "daemon.log_level: bad"]
        )

    fake.run_daemon = run_daemon  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "daemon.app", fake)
    assert cli.main(["run"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "channels.loja.api_key: environment variable X is not set",
        "daemon.log_level: bad",
    ]


def test_tui_gets_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("tui.app")
    fake.run = lambda socket_path, **_: 0 if socket_path == "/tmp/t.sock" else 9  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tui.app", fake)
    assert cli.main(["--socket", "/tmp/t.sock", "tui"]) == 0


def test_a_group_command_without_an_action_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["outbox"]) == 2
    assert "outbox: which action?" in capsys.readouterr().err
