"""Messages in both languages, Brazilian money and dates."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import get_args
from zoneinfo import ZoneInfoNotFoundError

import pytest

from daemon import i18n
from daemon.controlapi.wire import FlowState, OutboxState
from daemon.i18n import (
    EN,
    MESSAGES,
    PT_BR,
    environ_locale,
    flow_label,
    format_date,
    format_datetime,
    format_decimal,
    format_money,
    label,
    person_locale,
    resolve_locale,
    set_locale,
    store_timezone,
    t,
    translate,
)


@pytest.fixture(autouse=True)
def _reset_locale() -> Iterator[None]:
    yield
    i18n._current = None


def test_catalogues_have_the_same_keys_and_placeholders() -> None:
    assert MESSAGES[EN].keys() == MESSAGES[PT_BR].keys()
    for key, text in MESSAGES[EN].items():
        placeholders = set(re.findall(r"{(\w+)}", text))
        assert set(re.findall(r"{(\w+)}", MESSAGES[PT_BR][key])) == placeholders, key


def test_daemon_and_cli_keys_exist() -> None:
    for key in (
        "daemon.not_running",
        "sync.requested",
        "channel.paused",
        "channel.resumed",
        "reload.ok",
        "reload.failed",
        "settings.errors_header",
        "channel.down",
        "channel.recovered",
    ):
        assert key in MESSAGES[EN]


def test_translate_and_t() -> None:
    assert translate("channel.paused", "en", channel="loja") == "loja paused"
    assert translate("channel.paused", "pt_BR", channel="loja") == "loja pausado"
    set_locale("pt_BR")
    assert t("sync.requested", channel="loja") == "sincronização solicitada para loja"
    set_locale("en")
    assert t("sync.requested", channel="loja") == "sync requested for loja"
    assert t("no.such.key") == "no.such.key"
    assert (
        t("channel.down", channel="loja") == "loja is failing since {since}: {error}"
    )  # missing params kept
    assert flow_label("order_updates", "pt_BR") == "atualização de pedidos"


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        ("en", {"LANG": "pt_BR.UTF-8"}, EN),
        ("pt-BR", {}, PT_BR),
        (None, {"LANG": "en_US.UTF-8"}, EN),
        (None, {"LANG": "pt_BR.UTF-8"}, PT_BR),
        (None, {"LC_ALL": "pt_PT", "LANG": "en_US"}, PT_BR),
        (None, {"LANG": "C.UTF-8"}, PT_BR),
        (None, {}, PT_BR),
        (None, {"LANG": "de_DE@euro"}, EN),
    ],
)
def test_resolve_locale(setting: str | None, environ: dict[str, str], expected: str) -> None:
    assert resolve_locale(setting, environ) == expected


@pytest.mark.parametrize(
    ("value", "pt", "en"),
    [
        (Decimal("1234.56"), "R$ 1.234,56", "R$1,234.56"),
        (Decimal("0"), "R$ 0,00", "R$0.00"),
        (Decimal("1234567.891"), "R$ 1.234.567,89", "R$1,234,567.89"),
        (Decimal("0.005"), "R$ 0,01", "R$0.01"),
        (Decimal("-10"), "-R$ 10,00", "-R$10.00"),
        (Decimal("-0.001"), "R$ 0,00", "R$0.00"),
        (42, "R$ 42,00", "R$42.00"),
    ],
)
def test_format_money(value: Decimal | int, pt: str, en: str) -> None:
    assert format_money(value, "pt_BR") == pt
    assert format_money(value, "en") == en


def test_format_decimal() -> None:
    assert format_decimal(Decimal("1234.5"), "pt_BR", places=1) == "1.234,5"
    assert format_decimal(2.5, "en", places=0) == "3"
    assert format_decimal(Decimal("3"), "en", places=3) == "3.000"


def test_format_datetime_in_sao_paulo() -> None:
    moment = datetime(2026, 11, 26, 17, 5, tzinfo=UTC)
    assert format_datetime(moment, "pt_BR") == "26/11/2026 14:05"
    assert format_datetime(moment, "en") == "2026-11-26 14:05"
    assert format_datetime(moment.replace(tzinfo=None), "pt_BR") == "26/11/2026 14:05"  # naive = UTC
    other = timezone(timedelta(hours=2))
    assert format_datetime(moment, "pt_BR", tz=other) == "26/11/2026 19:05"
    assert format_date(date(2026, 1, 2), "pt_BR") == "02/01/2026"
    assert format_date(date(2026, 1, 2), "en") == "2026-01-02"


def test_timezone_falls_back_to_fixed_offset_without_tzdata(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> object:
        raise ZoneInfoNotFoundError(name)

    store_timezone.cache_clear()
    monkeypatch.setattr(i18n, "ZoneInfo", missing)
    try:
        zone = store_timezone()
        assert zone.utcoffset(None) == timedelta(hours=-3)
        assert format_datetime(datetime(2026, 11, 26, 17, 5, tzinfo=UTC), "pt_BR") == "26/11/2026 14:05"
    finally:
        store_timezone.cache_clear()


def test_every_key_the_cli_and_the_erp_use_exists_in_both_languages() -> None:
    """Keys written out in daemon/cli.py and daemon/erp.py, and the families they build names from."""
    root = Path(__file__).resolve().parents[2] / "daemon"
    used: set[str] = set()
    for name in ("cli.py", "erp.py"):
        source = (root / name).read_text(encoding="utf-8")
        used |= set(re.findall(r'"((?:cli|erp|outbox_state|state)\.[a-z_.]+[a-z_])"', source))
    assert {"cli.not_running", "cli.outbox_empty", "erp.stock_set", "erp.no_product"} <= used
    used.discard("erp.reason")  # a family name given to i18n.label, checked below
    columns = ["channel", "kind", "state", "flow", "flow_state", "last_ok", "pending_failed", "last_error"]
    columns += ["id", "entity", "sku", "tries", "next_try"]
    used |= {f"cli.col.{c}" for c in columns}
    used |= {f"state.{s}" for s in get_args(FlowState)}
    used |= {f"outbox_state.{s}" for s in get_args(OutboxState)}
    used |= {f"erp.reason.{r}" for r in ("adjust", "sale", "return", "transfer", "count")}
    for locale in (EN, PT_BR):
        assert sorted(used - MESSAGES[locale].keys()) == [], locale


def test_people_at_a_terminal_get_their_language_first() -> None:
    assert environ_locale({"LANG": "C.UTF-8"}) is None
    assert environ_locale({}) is None
    assert environ_locale({"LC_ALL": "POSIX", "LANG": "pt_BR.UTF-8"}) is None  # LC_ALL decides
    assert environ_locale({"LC_MESSAGES": "en_US", "LANG": "pt_BR"}) == EN
    assert person_locale("pt_BR", {"LANG": "en_US.UTF-8"}) == EN
    assert person_locale("en", {"LANG": "C"}) == EN
    assert person_locale(None, {"LANG": "C"}) == PT_BR
    assert person_locale("C", {}) == PT_BR


def test_label_falls_back_to_the_word_itself() -> None:
    assert label("erp.reason", "sale", "pt_BR") == "venda"
    assert label("erp.reason", "sale", "en") == "sale"
    assert label("erp.reason", "quebra", "pt_BR") == "quebra"
    assert label("outbox_state", "parked", "pt_BR") == "estacionado"
