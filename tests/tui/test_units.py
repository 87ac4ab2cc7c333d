"""Textual-free pieces of the dashboard: formats, language, the log window and filter, backoff."""

from __future__ import annotations

import ast
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.controlapi.wire import LogPage, LogRow
from tests.tui.fake_runtime import T0, scenario_logs
from tests.tui.tui_support import SAO_PAULO
from tui import channel_table, log_table, screen_help, ui, view_problems
from tui.connection import Backoff
from tui.fmt import Formatter, duration
from tui.i18n import CATALOGS, EN, PT_BR, Translator, detect_locale
from tui.log_filter import LogFilter
from tui.log_window import LogWindow

TUI = Path(__file__).resolve().parents[2] / "tui"


def fmt(locale: str = PT_BR) -> Formatter:
    return Formatter(Translator(locale), now=lambda: T0, tz=SAO_PAULO)


# -- language and formats ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LANG": "pt_BR.UTF-8"}, PT_BR),
        ({"LANG": "pt_PT.UTF-8"}, PT_BR),
        ({"LANG": "en_US.UTF-8"}, EN),
        ({"LANG": "pt_BR.UTF-8", "LC_ALL": "C.UTF-8"}, EN),
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "pt_BR.UTF-8"}, PT_BR),
        ({"LC_ALL": "pt_BR.UTF-8", "LANG": "en_US"}, PT_BR),
        ({}, EN),
    ],
)
def test_locale_follows_posix_precedence(environ: dict[str, str], expected: str) -> None:
    assert detect_locale(environ) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LANG": "C.UTF-8"}, PT_BR),
        ({"LANG": "POSIX"}, PT_BR),
        ({"LC_ALL": "C", "LANG": "en_US.UTF-8"}, PT_BR),
        ({}, PT_BR),
        ({"LANG": "en_US.UTF-8"}, EN),
        ({"LANG": "C.UTF-8", "LC_MESSAGES": "en_GB.UTF-8"}, EN),
    ],
)
def test_a_terminal_that_names_no_language_gets_the_configured_one(
    environ: dict[str, str], expected: str
) -> None:
    assert detect_locale(environ, default=PT_BR) == expected


def test_dates_read_the_brazilian_way_in_local_time() -> None:
    assert fmt(PT_BR).stamp(datetime(2026, 1, 5, 17, 7, tzinfo=UTC)) == "05/01/2026 14:07"
    assert fmt(EN).stamp(datetime(2026, 1, 5, 17, 7, tzinfo=UTC)) == "2026-01-05 14:07"
    assert fmt(PT_BR).stamp(None) == "—"


def test_relative_times_in_both_languages() -> None:
    assert fmt(PT_BR).relative(T0 + timedelta(seconds=80)) == "em 1m20s"
    assert fmt(EN).relative(T0 + timedelta(seconds=80)) == "in 1m20s"
    assert fmt(PT_BR).relative(T0 - timedelta(minutes=5)) == "há 5m00s"
    assert fmt(EN).relative(T0 - timedelta(hours=2, minutes=3)) == "2h03m ago"
    assert fmt(PT_BR).relative(T0) == "agora"
    assert duration(3 * 86400 + 4 * 3600) == "3d04h"


def test_money_and_numbers() -> None:
    assert fmt(PT_BR).money(1234.56) == "R$ 1.234,56"
    assert fmt(PT_BR).money(-0.5) == "-R$ 0,50"
    assert fmt(EN).money(1234.56) == "R$ 1,234.56"
    assert fmt(PT_BR).number(1234567) == "1.234.567"


def test_date_filters_accept_what_staff_type() -> None:
    f = fmt(PT_BR)
    local = SAO_PAULO
    assert f.parse_moment("25/01/2026 13:55") == datetime(2026, 1, 25, 13, 55, tzinfo=local)
    assert f.parse_moment("2026-01-25") == datetime(2026, 1, 25, tzinfo=local)
    assert f.parse_moment("25/01/2026", end_of_day=True) == datetime(2026, 1, 26, tzinfo=local)
    assert f.parse_moment("2h") == T0 - timedelta(hours=2)
    assert f.parse_moment("2026-01-25T10:00:00+00:00") == datetime(2026, 1, 25, 10, tzinfo=UTC)
    assert f.parse_moment("ontem") is None
    assert f.parse_moment("32/01/2026") is None


def _msgids() -> set[str]:
    """Every English text the dashboard shows: tr("...") literals, key labels, column titles."""
    ids: set[str] = set()
    for path in TUI.glob("*.py"):
        if path.name == "i18n.py":
            continue
        source = path.read_text()
        ids.update(re.findall(r'\btr\(\s*"([^"]+)"', source))
        ids.update(re.findall(r'Binding\(\s*"[^"]+",\s*"[^"]+",\s*"([^"]+)"', source))
    for columns in (channel_table.COLUMNS, log_table.COLUMNS, view_problems.COLUMNS):
        ids.update(label for _, label, _ in columns)
    ids.update(ui.STATE_LABELS.values())
    for title, keys in screen_help.SECTIONS:
        ids.add(title)
        ids.update(text for _, text in keys)
    ids.update(("failed", "parked", "open", "outbox", "import", "never integrated", "palette"))
    return ids


def test_every_text_has_a_portuguese_translation() -> None:
    ids = _msgids()
    assert len(ids) > 100
    missing = sorted(i for i in ids if i not in CATALOGS[PT_BR])
    assert missing == []


def test_translator_fills_placeholders_and_remembers_gaps() -> None:
    tr = Translator("pt_BR")
    assert tr("in {duration}", duration="5s") == "em 5s"
    assert tr("no such text") == "no such text"
    assert tr.missing == {"no such text"}
    assert Translator("en")("in {duration}", duration="5s") == "in 5s"


def test_tui_imports_only_the_control_client_and_wire_types_from_the_daemon() -> None:
    allowed = {"daemon.controlapi.client", "daemon.controlapi.wire"}
    offenders: list[str] = []
    for path in sorted(TUI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if (top == "daemon" and name not in allowed) or top == "channels":
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


# -- log filter and window ----------------------------------------------------------------------


def row(i: int, **values: object) -> LogRow:
    base: dict[str, object] = {"id": i, "ts": T0, "level": "info", "event": "e", "channel": "loja"}
    base.update(values)
    return LogRow.model_validate(base)


def test_filter_query_sends_only_what_is_set() -> None:
    since = T0 - timedelta(hours=1)
    assert LogFilter().query() == {}
    assert LogFilter(channel="loja", level="warning", since=since).query() == {
        "channel": "loja",
        "level": "warning",
        "since": since,
    }


def test_filter_matches_live_rows_like_the_server() -> None:
    f = LogFilter(channel="loja", level="warning", q="cpf", since=T0 - timedelta(minutes=1), until=T0)
    hit = row(1, level="error", ts=T0 - timedelta(seconds=1), data={"error": "CPF inválido"})
    assert f.matches(hit)
    assert not f.matches(hit.model_copy(update={"level": "info"}))
    assert not f.matches(hit.model_copy(update={"channel": "meli"}))
    assert not f.matches(hit.model_copy(update={"ts": T0}))  # until is exclusive
    assert not f.matches(hit.model_copy(update={"data": {}}))
    assert LogFilter(q="import_failed").matches(row(2, event="order_import_failed"))


def page(ids: list[int], next_cursor: int | None) -> LogPage:
    return LogPage(rows=[row(i) for i in ids], next_cursor=next_cursor)


def test_window_pages_back_and_stays_bounded() -> None:
    window = LogWindow(capacity=5)
    window.reset(page([100, 99, 98], next_cursor=98))
    assert window.at_head and window.older_cursor == 98
    dropped = window.append_older(page([97, 96, 95], next_cursor=95))
    assert dropped == 1
    assert [r.id for r in window.rows] == [99, 98, 97, 96, 95]
    assert not window.at_head  # the newest row left the window: live rows are counted, not shown
    assert window.prepend_live([row(101)]) == 0
    assert window.unseen == 1
    window.append_older(page([], next_cursor=None))
    assert not window.has_older


def test_window_prepends_live_rows_once_and_moves_the_cursor_when_trimming() -> None:
    window = LogWindow(capacity=4)
    window.reset(page([10, 9, 8], next_cursor=8))
    assert window.prepend_live([row(11), row(10), row(12)]) == 2  # 10 is already shown
    assert [r.id for r in window.rows] == [12, 11, 10, 9]
    assert window.older_cursor == 9  # keyset: the next older page is below the oldest row kept


def test_window_rejects_a_useless_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LogWindow(capacity=0)


def test_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(base=0.5, cap=10.0, jitter=0.2, rng=random.Random(7))
    delays = [backoff.delay(n) for n in range(12)]
    assert 0.4 <= delays[0] <= 0.6
    assert 0.8 <= delays[1] <= 1.2
    assert all(d <= 10.0 for d in delays)
    assert delays[-1] >= 8.0


def test_scenario_is_deterministic() -> None:
    assert scenario_logs() == scenario_logs()
