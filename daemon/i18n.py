"""Texts and formats for people (CLI, daemon status), in Brazilian Portuguese or English.

Logs stay machine-readable English; this is only for what store staff read. The catalogue is a plain
dict so a translator can edit it without tooling, and a test checks both languages have the same keys
and placeholders. Money and dates use Brazilian conventions: R$ 1.234,56 and 26/11/2026 14:05 in
São Paulo time (the store's clock, whatever the server's timezone).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Locale = Literal["pt_BR", "en"]
PT_BR: Locale = "pt_BR"
EN: Locale = "en"
LOCALES: tuple[Locale, ...] = (PT_BR, EN)
DEFAULT_LOCALE: Locale = PT_BR
"""Used when nothing says otherwise (no setting, LANG unset or C/POSIX): the users are Brazilian."""
STORE_TIMEZONE = "America/Sao_Paulo"
_FALLBACK_OFFSET = timezone(timedelta(hours=-3), "-03")
"""Brazil has had no daylight saving time since 2019, so a fixed -03:00 is right without tzdata."""

MESSAGES: dict[Locale, dict[str, str]] = {
    EN: {
        # daemon life cycle
        "daemon.starting": "storesync is starting",
        "daemon.ready": "storesync is running: {channels} channel(s)",
        "daemon.stopping": "storesync is stopping; finishing in-flight work",
        "daemon.stopped": "storesync stopped",
        "daemon.not_running": "the storesync daemon is not running (no answer on {socket})",
        "daemon.permission_denied": "no permission to use {socket}: join the storesync group",
        "daemon.timeout": "the daemon did not answer within {seconds} s",
        "daemon.status": "{running} running, {failing} failing, {pending} pending item(s)",
        # operator actions
        "sync.requested": "sync requested for {channel}",
        "sync.requested_flow": "{flow} sync requested for {channel}",
        "sync.requested_all": "sync requested for every channel",
        "channel.paused": "{channel} paused",
        "channel.resumed": "{channel} resumed",
        "channel.unknown": "unknown channel {channel}",
        "outbox.retry_queued": "{count} item(s) queued to be sent again",
        "stock.push_queued": "stock of {sku} queued for every channel",
        # channel health
        "channel.down": "{channel} is failing since {since}: {error}",
        "channel.recovered": "{channel} is back after {duration}",
        "channel.needs_reauth": (
            "{channel}: the credentials were refused; update them and reload the settings"
        ),
        "channel.circuit_open": "{channel}: too many failures in a row; trying again at {until}",
        # settings
        "settings.errors_header": "{path}: {count} problem(s) in the settings:",
        "settings.ok": "settings OK: {path}",
        "reload.ok": "settings reloaded from {path}",
        "reload.failed": "settings not reloaded ({count} problem(s)); the previous settings stay in force",
        # flows
        "flow.orders": "orders",
        "flow.tickets": "customer service",
        "flow.tracking": "tracking",
        "flow.products": "products",
        "flow.stock": "stock",
        "flow.prices": "prices",
        "flow.order_updates": "order updates",
        # flow states
        "state.idle": "idle",
        "state.running": "running",
        "state.backing_off": "backing off",
        "state.paused": "paused",
        "state.disabled": "disabled",
        "state.circuit_open": "circuit open",
        "state.needs_reauth": "needs new credentials",
        # documents
        "document.invalid": "invalid document {document}: {reason}",
    },
    PT_BR: {
        "daemon.starting": "storesync iniciando",
        "daemon.ready": "storesync em execução: {channels} canal(is)",
        "daemon.stopping": "storesync parando; concluindo o trabalho em andamento",
        "daemon.stopped": "storesync parado",
        "daemon.not_running": "o serviço storesync não está rodando (sem resposta em {socket})",
        "daemon.permission_denied": "sem permissão para usar {socket}: entre no grupo storesync",
        "daemon.timeout": "o serviço não respondeu em {seconds} s",
        "daemon.status": "{running} rodando, {failing} com falha, {pending} item(ns) pendente(s)",
        "sync.requested": "sincronização solicitada para {channel}",
        "sync.requested_flow": "sincronização de {flow} solicitada para {channel}",
        "sync.requested_all": "sincronização solicitada para todos os canais",
        "channel.paused": "{channel} pausado",
        "channel.resumed": "{channel} retomado",
        "channel.unknown": "canal desconhecido: {channel}",
        "outbox.retry_queued": "{count} item(ns) na fila para reenvio",
        "stock.push_queued": "estoque de {sku} na fila para todos os canais",
        "channel.down": "{channel} com falha desde {since}: {error}",
        "channel.recovered": "{channel} voltou após {duration}",
        "channel.needs_reauth": (
            "{channel}: as credenciais foram recusadas; atualize-as e recarregue as configurações"
        ),
        "channel.circuit_open": "{channel}: muitas falhas seguidas; nova tentativa às {until}",
        "settings.errors_header": "{path}: {count} problema(s) nas configurações:",
        "settings.ok": "configurações OK: {path}",
        "reload.ok": "configurações recarregadas de {path}",
        "reload.failed": (
            "configurações não recarregadas ({count} problema(s)); as anteriores continuam valendo"
        ),
        "flow.orders": "pedidos",
        "flow.tickets": "atendimento (SAC)",
        "flow.tracking": "rastreio",
        "flow.products": "produtos",
        "flow.stock": "estoque",
        "flow.prices": "preços",
        "flow.order_updates": "atualização de pedidos",
        "state.idle": "ocioso",
        "state.running": "rodando",
        "state.backing_off": "aguardando nova tentativa",
        "state.paused": "pausado",
        "state.disabled": "desativado",
        "state.circuit_open": "circuito aberto",
        "state.needs_reauth": "precisa de novas credenciais",
        "document.invalid": "documento inválido {document}: {reason}",
    },
}

_current: Locale | None = None


def resolve_locale(value: str | None = None, environ: Mapping[str, str] | None = None) -> Locale:
    """``value`` (the settings' ``daemon.locale``) if given, else LC_ALL / LC_MESSAGES / LANG."""
    if value:
        return _match(value) or DEFAULT_LOCALE
    env = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(name):
            return _match(env[name]) or DEFAULT_LOCALE
    return DEFAULT_LOCALE


def _match(tag: str) -> Locale | None:
    language = re.split(r"[.@]", tag, maxsplit=1)[0].replace("-", "_").lower()
    if language in ("", "c", "posix"):
        return None
    if language == "pt" or language.startswith("pt_"):
        return PT_BR
    return EN


def set_locale(locale: str | None) -> Locale:
    """Fix the locale :func:`t` uses (the daemon calls this after loading settings)."""
    global _current  # noqa: PLW0603 - one process, one audience
    _current = resolve_locale(locale)
    return _current


def get_locale() -> Locale:
    return _current if _current is not None else resolve_locale()


class _KeepMissing(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def translate(key: str, locale: str | None = None, /, **params: object) -> str:
    """The message ``key`` in ``locale``; falls back to English, then to the key itself."""
    loc = resolve_locale(locale) if locale else get_locale()
    template = MESSAGES[loc].get(key) or MESSAGES[EN].get(key) or key
    return template.format_map(_KeepMissing(params))


def t(key: str, /, **params: object) -> str:
    """The message ``key`` in the current locale (see :func:`set_locale`)."""
    return translate(key, None, **params)


def format_decimal(value: Decimal | int | float, locale: str | None = None, *, places: int = 2) -> str:
    """``1234.5`` → ``1.234,50`` (pt_BR) or ``1,234.50`` (en)."""
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    exponent = Decimal(1).scaleb(-places)
    text = f"{abs(number.quantize(exponent, rounding=ROUND_HALF_UP)):,.{places}f}"
    if (resolve_locale(locale) if locale else get_locale()) == PT_BR:
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return ("-" if number < 0 and text.strip("0.,") else "") + text


def format_money(value: Decimal | int, locale: str | None = None) -> str:
    """``R$ 1.234,56`` (pt_BR) or ``R$1,234.56`` (en); negatives as ``-R$ 10,00``."""
    loc = resolve_locale(locale) if locale else get_locale()
    text = format_decimal(value, loc, places=2)
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    return f"{sign}R$ {digits}" if loc == PT_BR else f"{sign}R${digits}"


@lru_cache(maxsize=8)
def store_timezone(name: str = STORE_TIMEZONE) -> tzinfo:
    """The store's timezone; a fixed -03:00 when the system has no tz database."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return _FALLBACK_OFFSET


def format_datetime(moment: datetime, locale: str | None = None, *, tz: tzinfo | None = None) -> str:
    """``26/11/2026 14:05`` (pt_BR) or ``2026-11-26 14:05`` (en) in the store's time; naive means UTC."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    local = aware.astimezone(tz or store_timezone())
    loc = resolve_locale(locale) if locale else get_locale()
    return local.strftime("%d/%m/%Y %H:%M" if loc == PT_BR else "%Y-%m-%d %H:%M")


def format_date(day: date, locale: str | None = None) -> str:
    loc = resolve_locale(locale) if locale else get_locale()
    return day.strftime("%d/%m/%Y" if loc == PT_BR else "%Y-%m-%d")


def flow_label(flow: str, locale: str | None = None) -> str:
    return translate(f"flow.{flow}", locale)
