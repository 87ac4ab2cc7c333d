"""What the storesync command prints, in Brazilian Portuguese and English, and how the language is chosen."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from daemon import cli
from daemon.clock import FakeClock
from daemon.controlapi.runtime import Runtime
from daemon.controlapi.server import ControlServer
from daemon.controlapi.wire import (
    ChannelStatus,
    DaemonStatus,
    FlowStatus,
    LogPage,
    LogRow,
    OutboxItem,
    OutboxState,
)
from daemon.erp import ErpService
from daemon.events import EventBus
from daemon.logbook import LogBook, LogSink, event_to_row
from daemon.statedb import StateDB
from daemon.store import stock
from tests.e2e.harness import product_csv

T0 = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 12, 30, 9, tzinfo=UTC)


def pt_time(moment: datetime) -> str:
    return moment.astimezone().strftime("%d/%m/%Y %H:%M:%S")


def en_time(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


class I18nErp(ErpService):
    """The real ERP service (its messages are under test) with a made-up outbox."""

    empty_outbox = False

    async def outbox(
        self, state: OutboxState | None, channel: str | None, limit: int, after_id: int | None
    ) -> list[OutboxItem]:
        if self.empty_outbox:
            return []
        return [
            OutboxItem(
                id=4,
                channel="loja",
                entity="stock",
                entity_id=1,
                sku="SKU-1",
                state="parked",
                attempts=3,
                next_attempt_at=T1,
                last_error="404",
            )
        ]


class I18nRuntime:
    """A daemon with one failing channel, an outbox row and a real ERP service."""

    def __init__(self, book: LogBook, erp: I18nErp) -> None:
        self.book = book
        self.erp = erp

    @property
    def bus(self) -> EventBus:
        return self.book.bus

    async def status(self) -> DaemonStatus:
        flow = FlowStatus(
            flow="stock",
            state="backing_off",
            interval_seconds=300,
            batch_size=100,
            last_ok_at=T1,
            last_error="HTTP 503",
            pending=3,
            failed=1,
        )
        channel = ChannelStatus(
            name="loja",
            kind="lojaintegrada",
            enabled=True,
            state="backing_off",
            last_error="HTTP 503",
            failing_since=T1,
            flows=[flow],
        )
        return DaemonStatus(
            version="9.9",
            pid=7,
            started_at=T0,
            last_reload_error="daemon.log_level: bad",
            channels=[channel],
        )

    async def query_logs(self, **kwargs: Any) -> LogPage:
        return await self.book.query(**kwargs)

    async def log_rows_after(self, after_id: int, limit: int) -> list[LogRow]:
        return await self.book.rows_after(after_id, limit)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ssi-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def book(short_dir: Path) -> AsyncIterator[LogBook]:
    opened = await LogBook.open(short_dir / "log.db", sink=LogSink(clock=FakeClock()))
    yield opened
    await opened.aclose()


@pytest.fixture
async def db(short_dir: Path) -> AsyncIterator[StateDB]:
    opened = await StateDB.open(short_dir / "state.db")
    yield opened
    await opened.close()


@pytest.fixture(params=["pt_BR", "en"])
def daemon_locale(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


@pytest.fixture
async def runtime(book: LogBook, db: StateDB, daemon_locale: str) -> I18nRuntime:
    erp = I18nErp(db, FakeClock(), "MAIN", locale=daemon_locale)
    async with db.write() as conn:
        await stock.ensure_warehouse(conn, "MAIN")
    assert (await erp.import_products_csv(product_csv([("SKU-1", 3)]))).ok
    return I18nRuntime(book, erp)


@pytest.fixture
async def sock(runtime: I18nRuntime, short_dir: Path) -> AsyncIterator[str]:
    server = ControlServer(cast(Runtime, runtime), short_dir / "control.sock")
    await server.start()
    yield str(server.socket_path)
    await server.stop()


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> Any:
    """Set the terminal's language; no settings file (so no configured locale) unless a test writes one."""
    monkeypatch.chdir(short_dir)
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "STORESYNC_CONFIG", "STORESYNC_DAEMON__LOCALE"):
        monkeypatch.delenv(name, raising=False)

    def use(lang: str) -> None:
        monkeypatch.setenv("LANG", lang)

    return use


async def storesync(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


# --- choosing the language ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "setting", "expected"),
    [
        ({"LANG": "en_US.UTF-8"}, "pt_BR", "en"),  # the person's terminal wins
        ({"LANG": "pt_BR.UTF-8"}, "en", "pt_BR"),
        ({"LC_ALL": "en_GB.UTF-8", "LANG": "pt_BR.UTF-8"}, None, "en"),
        ({"LC_MESSAGES": "pt_PT", "LANG": "en_US"}, None, "pt_BR"),
        ({"LANG": "C.UTF-8"}, "en", "en"),  # names no language: the settings decide
        ({"LANG": "POSIX"}, None, "pt_BR"),
        ({}, "en", "en"),
        ({}, None, "pt_BR"),
    ],
)
def test_the_terminal_then_the_settings_then_pt_br(
    tmp_path: Path, environ: dict[str, str], setting: str | None, expected: str
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(f'[daemon]\nlocale = "{setting}"\n' if setting else "[daemon]\n", encoding="utf-8")
    assert cli.cli_locale(config, environ) == expected


def test_locale_override_in_the_environment_counts_as_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    assert cli.cli_locale(missing, {"LANG": "C", "STORESYNC_DAEMON__LOCALE": "en"}) == "en"
    assert cli.cli_locale(missing, {"LANG": "C"}) == "pt_BR"


def test_the_settings_locale_is_used_when_the_terminal_says_c(
    terminal: Any, short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal("C.UTF-8")
    (short_dir / "settings.toml").write_text('[daemon]\nlocale = "en"\n', encoding="utf-8")
    assert cli.main(["--socket", str(short_dir / "none.sock"), "status"]) == 1
    assert "no daemon is running" in capsys.readouterr().err


# --- no daemon ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "pt_BR.UTF-8",
            "storesync: nenhum serviço storesync rodando em {path} "
            "(inicie com `storesync run` ou `systemctl start storesync`)\n",
        ),
        (
            "en_US.UTF-8",
            "storesync: no daemon is running on {path} "
            "(start it with `storesync run` or `systemctl start storesync`)\n",
        ),
    ],
)
def test_no_daemon_line(
    terminal: Any, short_dir: Path, lang: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal(lang)
    path = short_dir / "none.sock"
    assert cli.main(["--socket", str(path), "outbox", "list"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == expected.format(path=path)


def test_usage_errors_in_portuguese(terminal: Any, capsys: pytest.CaptureFixture[str]) -> None:
    terminal("pt_BR.UTF-8")
    assert cli.main(["--socket", "/tmp/x.sock", "stock", "move", "SKU-1", "0"]) == 2
    assert capsys.readouterr().err == "storesync: DELTA não pode ser zero\n"
    assert cli.main(["--socket", "/tmp/x.sock", "price", "set", "SKU-1", "caro"]) == 2
    assert capsys.readouterr().err == "storesync: LIST: não é um preço: 'caro'\n"
    assert cli.main(["outbox"]) == 2
    assert "outbox: qual ação?" in capsys.readouterr().err


# --- against a daemon -----------------------------------------------------------------------------------


async def test_status_in_portuguese(terminal: Any, sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    terminal("pt_BR.UTF-8")
    assert await storesync("--socket", sock, "status") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"storesync 9.9  pid 7  rodando desde {pt_time(T0)}"
    assert lines[1] == "a última recarga falhou: daemon.log_level: bad"
    assert lines[2].split() == (
        [
            "CANAL",
            "TIPO",
            "SITUAÇÃO",
            "FLUXO",
            "SITUAÇÃO",
            "DO",
            "FLUXO",
            "ÚLTIMO",
            "OK",
            "PEND/FALHA",
            "ÚLTIMO",
            "ERRO",
        ]
    )
    assert lines[3].split()[:5] == ["loja", "lojaintegrada", "aguardando", "nova", "tentativa"]
    assert f"desde {pt_time(T1)}: HTTP 503" in lines[3]
    assert lines[4].split() == [
        "stock",
        "aguardando",
        "nova",
        "tentativa",
        *pt_time(T1).split(),
        "3/1",
        "HTTP",
        "503",
    ]


async def test_status_in_english(terminal: Any, sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    terminal("en_US.UTF-8")
    assert await storesync("--socket", sock, "status") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"storesync 9.9  pid 7  running since {en_time(T0)}"
    assert lines[1] == "last reload failed: daemon.log_level: bad"
    assert lines[2].split() == [
        "CHANNEL",
        "KIND",
        "STATE",
        "FLOW",
        "FLOW",
        "STATE",
        "LAST",
        "OK",
        "PEND/FAIL",
        "LAST",
        "ERROR",
    ]
    assert lines[3].split()[:3] == ["loja", "lojaintegrada", "backing_off"]
    assert f"since {en_time(T1)}: HTTP 503" in lines[3]
    assert lines[4].split() == ["stock", "backing_off", *en_time(T1).split(), "3/1", "HTTP", "503"]


async def test_status_json_is_the_same_in_every_language(
    terminal: Any, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for lang in ("pt_BR.UTF-8", "en_US.UTF-8"):
        terminal(lang)
        assert await storesync("--socket", sock, "--json", "status") == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["channels"][0]["state"] == "backing_off"


async def test_outbox_list_in_both_languages(
    terminal: Any, sock: str, runtime: I18nRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal("pt_BR.UTF-8")
    assert await storesync("--socket", sock, "outbox", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID",
        "CANAL",
        "ENTIDADE",
        "SKU",
        "SITUAÇÃO",
        "TENTATIVAS",
        "PRÓXIMA",
        "TENTATIVA",
        "ÚLTIMO",
        "ERRO",
    ]
    assert lines[1].split() == [
        "4",
        "loja",
        "stock",
        "SKU-1",
        "estacionado",
        "3",
        *pt_time(T1).split(),
        "404",
    ]

    terminal("en_US.UTF-8")
    assert await storesync("--socket", sock, "outbox", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID",
        "CHANNEL",
        "ENTITY",
        "SKU",
        "STATE",
        "TRIES",
        "NEXT",
        "TRY",
        "LAST",
        "ERROR",
    ]
    assert lines[1].split() == ["4", "loja", "stock", "SKU-1", "parked", "3", *en_time(T1).split(), "404"]

    runtime.erp.empty_outbox = True
    assert await storesync("--socket", sock, "outbox", "list") == 0
    assert capsys.readouterr().out == "the outbox is empty for this filter\n"
    terminal("pt_BR.UTF-8")
    assert await storesync("--socket", sock, "outbox", "list") == 0
    assert capsys.readouterr().out == "a fila de saída está vazia para este filtro\n"
    assert await storesync("--socket", sock, "outbox", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


async def test_logs_dates_in_both_languages(
    terminal: Any, sock: str, book: LogBook, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        book.sink.offer(event_to_row({"event": f"e{i}", "level": "info", "channel": "loja", "n": i}))
    await book.flush()
    rows = await book.query(limit=10)
    stamps = {row.event: row.ts for row in rows.rows}

    terminal("pt_BR.UTF-8")
    assert await storesync("--socket", sock, "logs", "--limit", "2") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        pt_time(stamps["e1"]).split(),
        pt_time(stamps["e2"]).split(),
    ]
    assert "INFO" in lines[0] and " e1 " in lines[0]
    assert captured.err.startswith("(linhas mais antigas: storesync logs --before ")

    terminal("en_US.UTF-8")
    assert await storesync("--socket", sock, "logs", "--limit", "2") == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith(en_time(stamps["e1"]) + "  INFO")
    assert captured.err.startswith("(older rows: storesync logs --before ")

    assert await storesync("--socket", sock, "logs", "--json", "--limit", "1") == 0
    assert LogRow.model_validate_json(capsys.readouterr().out).event == "e2"


async def test_an_erp_action_speaks_the_daemons_language(
    terminal: Any, sock: str, daemon_locale: str, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal("en_US.UTF-8")  # the message is the daemon's: its locale, not the terminal's
    assert await storesync("--socket", sock, "stock", "set", "SKU-1", "5") == 0
    expected = {
        "pt_BR": "SKU-1: estoque em MAIN definido como 5 (+2)\n",
        "en": "SKU-1: stock in MAIN set to 5 (+2)\n",
    }
    assert capsys.readouterr().out == expected[daemon_locale]

    assert await storesync("--socket", sock, "stock", "set", "NOPE", "5") == 1
    missing = {"pt_BR": "nenhum produto com SKU 'NOPE'", "en": "no product with SKU 'NOPE'"}
    assert capsys.readouterr().err == f"storesync: {missing[daemon_locale]}\n"

    assert await storesync("--socket", sock, "--json", "stock", "set", "SKU-1", "4") == 0
    details = json.loads(capsys.readouterr().out)["details"]
    assert details == {"sku": "SKU-1", "warehouse": "MAIN", "quantity": 4, "delta": -1}
