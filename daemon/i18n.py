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
        # the storesync command (daemon/cli.py)
        "cli.status_line": "storesync {version}  pid {pid}  running since {since}",
        "cli.status_config": "  config {path}",
        "cli.last_reload_failed": "last reload failed: {error}",
        "cli.log_dropped": "log lines dropped (queue full): {count}",
        "cli.no_channels": "no channels configured",
        "cli.failing_since": "since {since}: {error}",
        "cli.outbox_empty": "the outbox is empty for this filter",
        "cli.not_running": (
            "storesync: no daemon is running on {socket} "
            "(start it with `storesync run` or `systemctl start storesync`)"
        ),
        "cli.lost_daemon": "storesync: lost the daemon; waiting for it to come back (Ctrl-C to stop)",
        "cli.older_rows": "(older rows: storesync logs --before {cursor} ...)",
        "cli.at_line": "line {line}",
        "cli.schema_version": "{path}: schema version {version}",
        "cli.bad_time": (
            "{name}: expected a time like 2026-11-26T14:00, 2026-11-26, or an age like 30m, 2h, 1d; "
            "got {text}"
        ),
        "cli.bad_price": "{name}: not a price: {text}",
        "cli.delta_zero": "DELTA must not be zero",
        "cli.cannot_read": "{path}: cannot read: {error}",
        "cli.not_utf8": "{path}: not UTF-8 text (byte {byte}); save the CSV as UTF-8",
        "cli.which_action": "{command}: which action? see `storesync {command} --help`",
        "cli.col.channel": "CHANNEL",
        "cli.col.kind": "KIND",
        "cli.col.state": "STATE",
        "cli.col.flow": "FLOW",
        "cli.col.flow_state": "FLOW STATE",
        "cli.col.last_ok": "LAST OK",
        "cli.col.pending_failed": "PEND/FAIL",
        "cli.col.last_error": "LAST ERROR",
        "cli.col.id": "ID",
        "cli.col.entity": "ENTITY",
        "cli.col.sku": "SKU",
        "cli.col.tries": "TRIES",
        "cli.col.next_try": "NEXT TRY",
        "cli.col.remote_id": "REMOTE ID",
        "cli.col.last_seen": "LAST SEEN",
        "cli.col.error": "ERROR",
        "cli.col.name": "NAME",
        "cli.col.order": "ORDER",
        "cli.col.carrier": "CARRIER",
        "cli.col.code": "CODE",
        "cli.col.since": "SINCE",
        "cli.col.event": "CARRIER'S LAST EVENT",
        "cli.col.checked": "ASKED",
        "cli.col.detail": "DETAIL",
        "cli.check_ok": "ok",
        "cli.check_failed": "FAILED",
        "cli.no_parcels": "order {order} on {channel} has no parcel with a tracking code",
        "cli.problems_none": "no problems: nothing failed, parked, unimported, unlinked or stuck in transit",
        "cli.problems.outbox": "Outbox items that failed or were parked ({count})",
        "cli.problems.import_failures": "Records that could not be imported ({count})",
        "cli.problems.never_integrated": "Products never integrated with a channel ({count})",
        "cli.problems.parcels": "Parcels that need a look ({count})",
        # parcel states that need a look
        "parcel_state.returned": "returned",
        "parcel_state.returning": "returning",
        "parcel_state.exception": "exception",
        "parcel_state.invalid_code": "invalid code",
        "parcel_state.not_found": "unknown to the carrier",
        "parcel_state.pending": "not asked yet",
        "parcel_state.posted": "posted",
        "parcel_state.in_transit": "in transit",
        "parcel_state.out_for_delivery": "out for delivery",
        "parcel_state.delivery_attempt": "delivery attempted",
        "parcel_state.awaiting_pickup": "awaiting pickup",
        "parcel_state.delivered": "delivered",
        # outbox item states
        "outbox_state.pending": "pending",
        "outbox_state.sent": "sent",
        "outbox_state.failed": "failed",
        "outbox_state.parked": "parked",
        # ERP actions (daemon/erp.py): ActionResult.message and the errors people see
        "erp.stock_set": "{sku}: stock in {warehouse} set to {quantity} ({delta})",
        "erp.stock_moved": "{sku}: {delta} in {warehouse} ({reason})",
        "erp.reason.adjust": "adjust",
        "erp.reason.sale": "sale",
        "erp.reason.return": "return",
        "erp.reason.transfer": "transfer",
        "erp.reason.count": "count",
        "erp.price_changed": "{sku}: price changed ({prices})",
        "erp.price_unchanged": "{sku}: price unchanged ({prices})",
        "erp.price.list": "list {amount}",
        "erp.price.sale": "sale {amount}",
        "erp.price.promo": "promotional {amount}",
        "erp.import_summary": (
            "{rows} rows: {created} created, {updated} updated, {unchanged} unchanged, {errors} with errors"
        ),
        "erp.invoice_added": "NF-e {number}/{series} attached to order {order} on {channel}",
        "erp.tracking_added": "tracking {code} added to order {order} on {channel}",
        "erp.stock_queued": "{sku}: stock queued for {channels}",
        "erp.product_linked": "{sku}: linked to {remote_id} on {channel}; product, stock and price queued",
        "erp.product_unlinked": (
            "{sku}: unlinked from {remote_id} on {channel}; its next push links it by key again or creates it"
        ),
        "erp.not_linked": "{sku} is not linked on {channel}",
        "erp.empty_remote_id": "the channel's product id is empty",
        "erp.no_channel": "no channel",
        "erp.retry_queued": "{count} item(s) queued again",
        "erp.failure_dismissed": "import failure {id} dismissed",
        "erp.nothing_pushed": "nothing has been pushed yet for {sku} on {channel}",
        "erp.no_product": "no product with SKU {sku}",
        "erp.bad_quantity": "quantity for SKU {sku} must be >= 0, got {quantity}",
        "erp.zero_movement": "a stock movement for SKU {sku} needs a non-zero quantity",
        "erp.empty_tracking": "tracking code must not be empty",
        "erp.no_order": "no order {order} on channel {channel}",
        "erp.no_failure": "no open import failure with id {id}",
        "erp.bad_entity": "entity must be 'stock' or 'price', got {entity}",
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
        "cli.status_line": "storesync {version}  pid {pid}  rodando desde {since}",
        "cli.status_config": "  configurações {path}",
        "cli.last_reload_failed": "a última recarga falhou: {error}",
        "cli.log_dropped": "linhas de log descartadas (fila cheia): {count}",
        "cli.no_channels": "nenhum canal configurado",
        "cli.failing_since": "desde {since}: {error}",
        "cli.outbox_empty": "a fila de saída está vazia para este filtro",
        "cli.not_running": (
            "storesync: nenhum serviço storesync rodando em {socket} "
            "(inicie com `storesync run` ou `systemctl start storesync`)"
        ),
        "cli.lost_daemon": (
            "storesync: conexão com o serviço perdida; aguardando ele voltar (Ctrl-C para parar)"
        ),
        "cli.older_rows": "(linhas mais antigas: storesync logs --before {cursor} ...)",
        "cli.at_line": "linha {line}",
        "cli.schema_version": "{path}: versão do esquema {version}",
        "cli.bad_time": (
            "{name}: esperava uma data/hora como 2026-11-26T14:00, 2026-11-26, ou uma idade como "
            "30m, 2h, 1d; recebi {text}"
        ),
        "cli.bad_price": "{name}: não é um preço: {text}",
        "cli.delta_zero": "DELTA não pode ser zero",
        "cli.cannot_read": "{path}: não foi possível ler: {error}",
        "cli.not_utf8": "{path}: não é texto UTF-8 (byte {byte}); salve o CSV como UTF-8",
        "cli.which_action": "{command}: qual ação? veja `storesync {command} --help`",
        "cli.col.channel": "CANAL",
        "cli.col.kind": "TIPO",
        "cli.col.state": "SITUAÇÃO",
        "cli.col.flow": "FLUXO",
        "cli.col.flow_state": "SITUAÇÃO DO FLUXO",
        "cli.col.last_ok": "ÚLTIMO OK",
        "cli.col.pending_failed": "PEND/FALHA",
        "cli.col.last_error": "ÚLTIMO ERRO",
        "cli.col.id": "ID",
        "cli.col.entity": "ENTIDADE",
        "cli.col.sku": "SKU",
        "cli.col.tries": "TENTATIVAS",
        "cli.col.next_try": "PRÓXIMA TENTATIVA",
        "cli.col.remote_id": "ID REMOTO",
        "cli.col.last_seen": "VISTO POR ÚLTIMO",
        "cli.col.error": "ERRO",
        "cli.col.name": "NOME",
        "cli.col.order": "PEDIDO",
        "cli.col.carrier": "TRANSPORTADORA",
        "cli.col.code": "CÓDIGO",
        "cli.col.since": "DESDE",
        "cli.col.event": "ÚLTIMO EVENTO DA TRANSPORTADORA",
        "cli.col.checked": "CONSULTADO",
        "cli.col.detail": "DETALHE",
        "cli.check_ok": "ok",
        "cli.check_failed": "FALHOU",
        "cli.no_parcels": "o pedido {order} em {channel} não tem encomenda com código de rastreio",
        "cli.problems_none": (
            "nenhum problema: nada com falha, estacionado, sem importar, sem vínculo ou parado no transporte"
        ),
        "cli.problems.outbox": "Itens da fila de saída com falha ou estacionados ({count})",
        "cli.problems.import_failures": "Registros que não puderam ser importados ({count})",
        "cli.problems.never_integrated": "Produtos nunca integrados a um canal ({count})",
        "cli.problems.parcels": "Encomendas que precisam de atenção ({count})",
        "parcel_state.returned": "devolvida",
        "parcel_state.returning": "em devolução",
        "parcel_state.exception": "ocorrência",
        "parcel_state.invalid_code": "código inválido",
        "parcel_state.not_found": "desconhecida pela transportadora",
        "parcel_state.pending": "ainda não consultada",
        "parcel_state.posted": "postada",
        "parcel_state.in_transit": "em trânsito",
        "parcel_state.out_for_delivery": "saiu para entrega",
        "parcel_state.delivery_attempt": "tentativa de entrega",
        "parcel_state.awaiting_pickup": "aguardando retirada",
        "parcel_state.delivered": "entregue",
        "outbox_state.pending": "pendente",
        "outbox_state.sent": "enviado",
        "outbox_state.failed": "com falha",
        "outbox_state.parked": "estacionado",
        "erp.stock_set": "{sku}: estoque em {warehouse} definido como {quantity} ({delta})",
        "erp.stock_moved": "{sku}: {delta} em {warehouse} ({reason})",
        "erp.reason.adjust": "ajuste",
        "erp.reason.sale": "venda",
        "erp.reason.return": "devolução",
        "erp.reason.transfer": "transferência",
        "erp.reason.count": "contagem",
        "erp.price_changed": "{sku}: preço alterado ({prices})",
        "erp.price_unchanged": "{sku}: preço sem alteração ({prices})",
        "erp.price.list": "cheio {amount}",
        "erp.price.sale": "venda {amount}",
        "erp.price.promo": "promocional {amount}",
        "erp.import_summary": (
            "{rows} linha(s): {created} criado(s), {updated} atualizado(s), {unchanged} sem alteração, "
            "{errors} com erro"
        ),
        "erp.invoice_added": "NF-e {number}/{series} vinculada ao pedido {order} em {channel}",
        "erp.tracking_added": "rastreio {code} adicionado ao pedido {order} em {channel}",
        "erp.stock_queued": "{sku}: estoque na fila para {channels}",
        "erp.product_linked": "{sku}: vinculado a {remote_id} em {channel}; produto, estoque e preço na fila",
        "erp.product_unlinked": (
            "{sku}: desvinculado de {remote_id} em {channel}; "
            "o próximo envio vincula pela chave de novo ou cria"
        ),
        "erp.not_linked": "{sku} não está vinculado em {channel}",
        "erp.empty_remote_id": "o id do produto no canal está vazio",
        "erp.no_channel": "nenhum canal",
        "erp.retry_queued": "{count} item(ns) na fila novamente",
        "erp.failure_dismissed": "falha de importação {id} descartada",
        "erp.nothing_pushed": "nada foi enviado ainda para {sku} em {channel}",
        "erp.no_product": "nenhum produto com SKU {sku}",
        "erp.bad_quantity": "a quantidade do SKU {sku} deve ser >= 0; recebi {quantity}",
        "erp.zero_movement": (
            "uma movimentação de estoque do SKU {sku} precisa de quantidade diferente de zero"
        ),
        "erp.empty_tracking": "o código de rastreio não pode ficar vazio",
        "erp.no_order": "nenhum pedido {order} no canal {channel}",
        "erp.no_failure": "nenhuma falha de importação aberta com id {id}",
        "erp.bad_entity": "a entidade deve ser 'stock' ou 'price'; recebi {entity}",
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


def environ_locale(environ: Mapping[str, str] | None = None) -> Locale | None:
    """The language the terminal names (POSIX precedence), or None for unset / ``C`` / ``POSIX``."""
    env = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(name):
            return _match(env[name])
    return None


def person_locale(setting: str | None, environ: Mapping[str, str] | None = None) -> Locale:
    """For a person at a terminal (the CLI): their language if it names one, else the setting, else pt_BR.

    The reverse of :func:`resolve_locale`'s order: an operator who set ``LANG=en_US.UTF-8`` reads
    English even if the store's settings say pt_BR; an SSH session with ``C.UTF-8`` gets the setting.
    """
    return environ_locale(environ) or (_match(setting) if setting else None) or DEFAULT_LOCALE


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


def label(prefix: str, value: str, locale: str | None = None) -> str:
    """``prefix.value`` translated, or ``value`` itself when the catalogue has no such word."""
    key = f"{prefix}.{value}"
    return translate(key, locale) if key in MESSAGES[EN] else value


def flow_label(flow: str, locale: str | None = None) -> str:
    return translate(f"flow.{flow}", locale)
