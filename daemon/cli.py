"""The ``storesync`` command: runs the daemon, and drives a running one through the control socket.

Everything an operator can do in the TUI is here too. Talking to the daemon needs only the socket path,
so that is found from the settings file *without* resolving secrets (an operator's shell does not hold
the channel keys). Exit status: 0 done, 1 the daemon refused or is not running, 2 bad usage/settings.

What the command prints itself is for store staff: in the terminal's language (LC_ALL / LC_MESSAGES /
LANG) when it names one, else the settings' ``daemon.locale``, else pt_BR. ``--json`` never changes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import re
import sys
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from daemon import i18n
from daemon.controlapi.client import (
    ControlClient,
    ControlClientError,
    ControlError,
    ControlTimeout,
    DaemonNotRunning,
)
from daemon.controlapi.wire import ActionResult, DaemonStatus, LogRow, OutboxItem, Problems

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
ENV_CONFIG = "STORESYNC_CONFIG"
DEFAULT_CONFIG_NAME = "settings.toml"
SOCKET_NAME = "control.sock"
STATE_DB_NAME = "storesync.db"
LEVELS = ("debug", "info", "warning", "error", "critical")

_LOCALE: ContextVar[i18n.Locale] = ContextVar("storesync_cli_locale", default=i18n.DEFAULT_LOCALE)
"""The locale of this run of the command; :func:`main` sets it (a ContextVar: tests run it in threads)."""


def use_locale(locale: str | None) -> i18n.Locale:
    """Fix the language of what this command prints (``main`` does this from the environment)."""
    chosen = i18n.resolve_locale(locale)
    _LOCALE.set(chosen)
    return chosen


def cli_locale(config: Path, environ: Mapping[str, str] | None = None) -> i18n.Locale:
    """The terminal's language if it names one, else the settings' ``daemon.locale``, else pt_BR."""
    return i18n.person_locale(configured_locale(config, environ), environ)


def _t(key: str, /, **params: object) -> str:
    return i18n.translate(key, _LOCALE.get(), **params)


def _word(prefix: str, value: str) -> str:
    """A state word in Portuguese; in English the identifier itself (what ``--state`` etc. accept)."""
    return value if _LOCALE.get() == i18n.EN else i18n.label(prefix, value, _LOCALE.get())


class UsageError(Exception):
    """A bad argument value; printed as one line, exit status 2."""


# --- paths without secrets -------------------------------------------------------------------------


class PathsError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def config_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """``--config``, else ``$STORESYNC_CONFIG``, else ``./settings.toml`` (as the settings loader does)."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    return Path.cwd() / DEFAULT_CONFIG_NAME


def daemon_dirs(config: Path, environ: Mapping[str, str] | None = None) -> tuple[Path, Path | None]:
    """(state_dir, runtime_dir) from the file's ``[daemon]`` table and ``STORESYNC_DAEMON__*``.

    A missing file means the built-in defaults; relative paths start at the file's folder.
    """
    env = os.environ if environ is None else environ
    table: dict[str, Any] = {}
    try:
        raw = config.read_bytes()
    except FileNotFoundError:
        raw = b""
    except OSError as exc:
        raise PathsError([f"{config}: cannot read the settings file: {exc.strerror}"]) from None
    if raw:
        try:
            tree = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PathsError([f"{config}: not valid TOML: {exc}"]) from None
        section = tree.get("daemon", {})
        if not isinstance(section, dict):
            raise PathsError([f"{config}: [daemon] must be a table"])
        table = section
    for key in ("state_dir", "runtime_dir"):
        for name, env_value in env.items():
            if name.upper() == f"STORESYNC_DAEMON__{key.upper()}":
                table[key] = env_value
    base = config.absolute().parent
    dirs: list[Path | None] = []
    for key, default in (("state_dir", "var"), ("runtime_dir", None)):
        value: Any = table.get(key, default)
        if value is None:
            dirs.append(None)
            continue
        if not isinstance(value, str) or not value.strip():
            raise PathsError([f"daemon.{key}: must be a folder path"])
        path = Path(value)
        dirs.append(path if path.is_absolute() else base / path)
    state_dir = dirs[0]
    assert state_dir is not None
    return state_dir, dirs[1]


def default_socket_path(explicit_config: str | None, environ: Mapping[str, str] | None = None) -> Path:
    state_dir, runtime_dir = daemon_dirs(config_path(explicit_config, environ), environ)
    return (runtime_dir or state_dir) / SOCKET_NAME


def configured_locale(config: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """``daemon.locale`` from the file or ``STORESYNC_DAEMON__LOCALE``, read without secrets; None if unset.

    The TUI uses it when the operator's terminal names no language (``LANG=C.UTF-8`` over SSH).
    """
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if name.upper() == "STORESYNC_DAEMON__LOCALE" and value.strip():
            return value.strip()
    try:
        section = tomllib.loads(config.read_text(encoding="utf-8")).get("daemon", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # a bad file is reported by whatever reads it for real; the TUI falls back to English
    locale = section.get("locale") if isinstance(section, dict) else None
    return locale.strip() if isinstance(locale, str) and locale.strip() else None


# --- parsing values people type ----------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, *, now: datetime | None = None, name: str = "time") -> datetime:
    """``15m``/``2h``/``3d`` ago, or an ISO date/time (without a zone: this machine's local time)."""
    match = _RELATIVE.match(text)
    if match:
        moment = (now or datetime.now(UTC)) - timedelta(seconds=float(match[1]) * _UNIT[match[2]])
        return moment
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(_t("cli.bad_time", name=name, text=repr(text))) from None
    return moment if moment.tzinfo else moment.astimezone()


def parse_money(text: str, *, name: str) -> Decimal:
    """``119.90``, ``119,90`` or ``1.234,56`` (Brazilian) → Decimal."""
    cleaned = text.strip().removeprefix("R$").strip()
    if "," in cleaned:
        cleaned = cleaned.replace(".", "").replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise UsageError(_t("cli.bad_price", name=name, text=repr(text))) from None
    if not value.is_finite() or value < 0:
        raise UsageError(_t("cli.bad_price", name=name, text=repr(text)))
    return value


# --- output ------------------------------------------------------------------------------------------


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _local(moment: datetime | None) -> str:
    """This machine's local time: 26/11/2026 14:05:09 (pt_BR) or 2026-11-26 14:05:09 (en)."""
    if moment is None:
        return "-"
    pattern = "%d/%m/%Y %H:%M:%S" if _LOCALE.get() == i18n.PT_BR else "%Y-%m-%d %H:%M:%S"
    return moment.astimezone().strftime(pattern)


def _short(text: str | None, width: int) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def format_log_row(row: LogRow) -> str:
    ids = []
    if row.entity or row.entity_id:
        ids.append(f"{row.entity or '?'}:{row.entity_id or '?'}")
    if row.remote_id:
        ids.append(f"remote:{row.remote_id}")
    if row.run_id:
        ids.append(f"run:{row.run_id}")
    extra = " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)}"
        for k, v in row.data.items()
    )
    parts = [
        _local(row.ts),
        row.level.upper().ljust(8),
        (row.channel or "-").ljust(10),
        (row.flow or "-").ljust(13),
        row.event,
    ]
    if ids:
        parts.append(" ".join(ids))
    if extra:
        parts.append(_short(extra, 160))
    return "  ".join(parts)


def print_status(status: DaemonStatus) -> None:
    _out(
        _t("cli.status_line", version=status.version, pid=status.pid, since=_local(status.started_at))
        + (_t("cli.status_config", path=status.config_path) if status.config_path else "")
    )
    if status.last_reload_error:
        _out(_t("cli.last_reload_failed", error=status.last_reload_error))
    if status.log_queue_dropped:
        _out(_t("cli.log_dropped", count=status.log_queue_dropped))
    if not status.channels:
        _out(_t("cli.no_channels"))
        return
    rows: list[list[str]] = []
    for ch in status.channels:
        error = ch.last_error or ""
        if ch.failing_since:
            error = _t("cli.failing_since", since=_local(ch.failing_since), error=error)
        rows.append([ch.name, ch.kind, _word("state", ch.state), "", "", "", "", _short(error, 80)])
        for fl in ch.flows:
            rows.append(
                [
                    "",
                    "",
                    "",
                    fl.flow,
                    _word("state", fl.state),
                    _local(fl.last_ok_at),
                    f"{fl.pending}/{fl.failed}",
                    _short(fl.last_error, 80),
                ]
            )
    columns = ("channel", "kind", "state", "flow", "flow_state", "last_ok", "pending_failed", "last_error")
    for line in _table([_t(f"cli.col.{c}") for c in columns], rows):
        _out(line)


def print_outbox(items: Sequence[OutboxItem]) -> None:
    if not items:
        _out(_t("cli.outbox_empty"))
        return
    rows = [
        [
            str(i.id),
            i.channel,
            i.entity,
            i.sku or str(i.entity_id),
            _word("outbox_state", i.state),
            str(i.attempts),
            _local(i.next_attempt_at),
            _short(i.last_error, 80),
        ]
        for i in items
    ]
    columns = ("id", "channel", "entity", "sku", "state", "tries", "next_try", "last_error")
    for line in _table([_t(f"cli.col.{c}") for c in columns], rows):
        _out(line)


def print_problems(problems: Problems) -> None:
    """Every kind of problem under its own heading; kinds with nothing to show are left out."""
    sections: list[tuple[str, tuple[str, ...], list[list[str]]]] = [
        (
            "outbox",
            ("id", "channel", "entity", "sku", "state", "tries", "last_error"),
            [
                [str(i.id), i.channel, i.entity, i.sku or str(i.entity_id), _word("outbox_state", i.state),
                 str(i.attempts), _short(i.last_error, 80)]
                for i in problems.outbox
            ],
        ),
        (
            "import_failures",
            ("id", "channel", "entity", "remote_id", "tries", "last_seen", "error"),
            [
                [str(f.id), f.channel, f.entity, f.remote_id, str(f.attempts), _local(f.last_seen_at),
                 _short(f.error, 80)]
                for f in problems.import_failures
            ],
        ),
        (
            "never_integrated",
            ("channel", "sku", "name"),
            [[n.channel, n.sku, n.name] for n in problems.never_integrated],
        ),
        (
            "parcels",
            ("channel", "order", "carrier", "code", "state", "since", "event"),
            [
                [p.channel, p.order_number, p.carrier, p.tracking_code, _word("parcel_state", p.status),
                 _local(p.since), _short(p.event, 60)]
                for p in problems.parcels
            ],
        ),
    ]  # fmt: skip
    shown = [section for section in sections if section[2]]
    if not shown:
        _out(_t("cli.problems_none"))
        return
    for index, (kind, columns, rows) in enumerate(shown):
        if index:
            _out("")
        _out(_t(f"cli.problems.{kind}", count=len(rows)))
        for line in _table([_t(f"cli.col.{c}") for c in columns], rows):
            _out("  " + line)


def _print_tree(value: Any, indent: int = 0) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                _out(f"{pad}{key}:")
                _print_tree(item, indent + 1)
            else:
                _out(f"{pad}{key}: {item}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                _out(f"{pad}-")
                _print_tree(item, indent + 1)
            else:
                _out(f"{pad}- {item}")
    else:
        _out(f"{pad}{value}")


def print_result(result: ActionResult, as_json: bool) -> int:
    if as_json:
        _out(result.model_dump_json(indent=2))
    else:
        _out(result.message)
        errors = result.details.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, dict):
                    where = _t("cli.at_line", line=item["line"]) if item.get("line") is not None else "?"
                    field = f" {item['field']}:" if item.get("field") else ""
                    _out(f"  {where}:{field} {item.get('error', '')}")
                else:
                    _out(f"  {item}")
        problems = result.details.get("problems")
        if isinstance(problems, list):
            for line in problems:
                _out(f"  {line}")
    return EXIT_OK if result.ok else EXIT_FAILED


# --- talking to the daemon ---------------------------------------------------------------------------


def not_running_line(socket_path: str | Path) -> str:
    return _t("cli.not_running", socket=socket_path)


def _with_client(args: argparse.Namespace, work: Callable[[ControlClient], Awaitable[int]]) -> int:
    async def go() -> int:
        async with ControlClient(args.socket, timeout=args.timeout) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except DaemonNotRunning as exc:
        _err(not_running_line(exc.socket_path))
    except ControlError as exc:
        where = f" ({exc.field})" if exc.field and exc.field not in exc.message else ""
        _err(f"storesync: {exc.message}{where}")
    except ControlTimeout as exc:
        _err(f"storesync: {exc}")
    except ControlClientError as exc:  # pragma: no cover - every subclass is handled above
        _err(f"storesync: {exc}")
    return EXIT_FAILED


def _action(args: argparse.Namespace, call: Callable[[ControlClient], Awaitable[ActionResult]]) -> int:
    async def work(client: ControlClient) -> int:
        return print_result(await call(client), args.json)

    return _with_client(args, work)


# --- commands ----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    app = importlib.import_module("daemon.app")
    overrides: dict[str, Any] = {}
    if args.log_level:
        overrides.setdefault("daemon", {})["log_level"] = args.log_level
    result: int = app.run_daemon(Path(args.config) if args.config else None, overrides)
    return result


def cmd_status(args: argparse.Namespace) -> int:
    async def work(client: ControlClient) -> int:
        status = await client.status()
        if args.json:
            _out(status.model_dump_json(indent=2))
        else:
            print_status(status)
        return EXIT_OK

    return _with_client(args, work)


def cmd_sync(args: argparse.Namespace) -> int:
    return _action(args, lambda c: c.sync(args.channel, args.flow))


def cmd_pause(args: argparse.Namespace) -> int:
    return _action(args, lambda c: c.pause(args.channel, args.flow))


def cmd_resume(args: argparse.Namespace) -> int:
    return _action(args, lambda c: c.resume(args.channel, args.flow))


def cmd_reload(args: argparse.Namespace) -> int:
    return _action(args, lambda c: c.reload())


def _log_filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "channel": args.channel,
        "flow": args.flow,
        "level": args.level,
        "entity": args.entity,
        "entity_id": args.entity_id,
        "since": parse_when(args.since, name="--since") if args.since else None,
        "until": parse_when(args.until, name="--until") if args.until else None,
        "q": args.q,
    }


def _matches(row: LogRow, filters: Mapping[str, Any]) -> bool:
    """The server's filters, applied client-side to the live stream."""
    for key in ("channel", "flow", "entity", "entity_id"):
        if filters[key] is not None and getattr(row, key) != filters[key]:
            return False
    if filters["level"] is not None and LEVELS.index(row.level) < LEVELS.index(filters["level"]):
        return False
    if filters["until"] is not None and row.ts >= filters["until"]:
        return False
    q = filters["q"]
    if q:
        haystack = (row.event + " " + json.dumps(row.data, ensure_ascii=False, default=str)).casefold()
        if q.casefold() not in haystack:
            return False
    return True


def _print_row(row: LogRow, as_json: bool) -> None:
    _out(row.model_dump_json() if as_json else format_log_row(row))


async def _follow(client: ControlClient, after: int | None, filters: Mapping[str, Any], as_json: bool) -> int:
    """Stream new rows until interrupted; reconnects (bounded, with backoff) when the daemon restarts."""
    attempts = 0
    waiting_said = False
    while True:
        try:
            async for event in client.events(after=after):
                attempts = 0
                waiting_said = False
                if event.type == "log" and event.log is not None:
                    after = event.id
                    if _matches(event.log, filters):
                        _print_row(event.log, as_json)
                elif after is None and event.type == "status":
                    after = event.id
        except (DaemonNotRunning, ControlTimeout):
            if not waiting_said:
                _err(_t("cli.lost_daemon"))
                waiting_said = True
        attempts += 1
        if attempts > 60:
            raise DaemonNotRunning(client.socket_path)
        await asyncio.sleep(min(5.0, 0.25 * 2 ** min(attempts, 5)) * random.uniform(0.8, 1.2))


def cmd_logs(args: argparse.Namespace) -> int:
    filters = _log_filters(args)

    async def work(client: ControlClient) -> int:
        page = await client.logs(limit=args.limit, cursor=args.before, **filters)
        for row in reversed(page.rows):
            _print_row(row, args.json)
        if not args.follow:
            if page.next_cursor is not None and not args.json:
                _err(_t("cli.older_rows", cursor=page.next_cursor))
            return EXIT_OK
        # Nothing matched yet: follow from "now" (the stream's status snapshot gives the id).
        newest = page.rows[0].id if page.rows else None
        return await _follow(client, newest, filters, args.json)

    return _with_client(args, work)


def cmd_stock_set(args: argparse.Namespace) -> int:
    return _action(args, lambda c: c.stock_set(args.sku, args.warehouse, args.quantity))


def cmd_stock_move(args: argparse.Namespace) -> int:
    if args.delta == 0:
        raise UsageError(_t("cli.delta_zero"))
    return _action(args, lambda c: c.stock_move(args.sku, args.warehouse, args.delta, args.reason, args.ref))


def cmd_price_set(args: argparse.Namespace) -> int:
    list_price = parse_money(args.list_price, name="LIST")
    sale = parse_money(args.sale, name="--sale") if args.sale else None
    cost = parse_money(args.cost, name="--cost") if args.cost else None
    promo = parse_money(args.promo, name="--promo") if args.promo else None
    start = parse_when(args.promo_start, name="--promo-start") if args.promo_start else None
    end = parse_when(args.promo_end, name="--promo-end") if args.promo_end else None
    return _action(args, lambda c: c.price_set(args.sku, list_price, sale, cost, promo, start, end))


def cmd_product_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise UsageError(_t("cli.cannot_read", path=path, error=exc.strerror)) from None
    except UnicodeDecodeError as exc:
        raise UsageError(_t("cli.not_utf8", path=path, byte=exc.start)) from None
    return _action(args, lambda c: c.import_products(text))


def cmd_product_push_stock(args: argparse.Namespace) -> int:
    return _action(args, lambda c: c.push_stock(args.sku))


def cmd_product_link(args: argparse.Namespace) -> int:
    return _action(args, lambda c: c.link_product(args.sku, args.channel, args.remote_id))


def cmd_product_unlink(args: argparse.Namespace) -> int:
    return _action(args, lambda c: c.unlink_product(args.sku, args.channel))


def cmd_invoice_add(args: argparse.Namespace) -> int:
    issued_at = parse_when(args.issued_at, name="--issued-at")
    return _action(
        args,
        lambda c: c.invoice_add(
            args.channel,
            args.order,
            args.number,
            args.series,
            args.key,
            issued_at,
            danfe_url=args.danfe_url,
            xml_url=args.xml_url,
        ),
    )


def cmd_tracking_add(args: argparse.Namespace) -> int:
    return _action(
        args,
        lambda c: c.tracking_add(args.channel, args.order, args.code, carrier=args.carrier, url=args.url),
    )


def cmd_tracking_show(args: argparse.Namespace) -> int:
    async def work(client: ControlClient) -> int:
        parcels = await client.order_parcels(args.channel, args.order)
        if args.json:
            _out(json.dumps([p.model_dump(mode="json") for p in parcels], indent=2, ensure_ascii=False))
        elif not parcels:
            _out(_t("cli.no_parcels", order=args.order, channel=args.channel))
        else:
            rows = [
                [p.carrier, p.tracking_code, _word("parcel_state", p.status), _local(p.since),
                 _local(p.checked_at), _short(p.event, 70)]
                for p in parcels
            ]  # fmt: skip
            columns = ("carrier", "code", "state", "since", "checked", "event")
            for line in _table([_t(f"cli.col.{c}") for c in columns], rows):
                _out(line)
        return EXIT_OK

    return _with_client(args, work)


def cmd_outbox_list(args: argparse.Namespace) -> int:
    async def work(client: ControlClient) -> int:
        items = await client.outbox(
            state=args.state, channel=args.channel, limit=args.limit, after=args.after
        )
        if args.json:
            _out(json.dumps([i.model_dump(mode="json") for i in items], indent=2, ensure_ascii=False))
        else:
            print_outbox(items)
        return EXIT_OK

    return _with_client(args, work)


def cmd_problems(args: argparse.Namespace) -> int:
    async def work(client: ControlClient) -> int:
        problems = await client.problems()
        if args.json:
            _out(json.dumps(problems.model_dump(mode="json"), indent=2, ensure_ascii=False))
        else:
            print_problems(problems)
        return EXIT_OK

    return _with_client(args, work)


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    return _action(args, lambda c: c.retry_outbox(args.ids or None, args.channel))


def cmd_explain(args: argparse.Namespace) -> int:
    async def work(client: ControlClient) -> int:
        result = await client.explain(args.channel, args.entity, args.sku)
        if args.json:
            _out(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        else:
            _print_tree(result)
        return EXIT_OK

    return _with_client(args, work)


def cmd_db_migrate(args: argparse.Namespace) -> int:
    state_dir, _ = daemon_dirs(config_path(args.config))
    path = state_dir / STATE_DB_NAME
    db = importlib.import_module("daemon.store.db")

    async def go() -> int:
        conn = await db.open_state_db(path)
        try:
            version = int(await db.user_version(conn))
        finally:
            await conn.close()
        return version

    try:
        version = asyncio.run(go())
    except Exception as exc:  # the store's errors say what is wrong with the file or folder
        _err(f"storesync: {exc}")
        return EXIT_FAILED
    _out(_t("cli.schema_version", path=path, version=version))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Settings loaded as the daemon loads them, then every chosen channel asked one question."""
    settings_module = importlib.import_module("daemon.settings")
    check = importlib.import_module("daemon.check")
    settings = settings_module.load_settings(Path(args.config) if args.config else None)
    try:
        results = asyncio.run(check.check_channels(settings, args.channel))
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    if args.json:
        _out(json.dumps([vars(r) for r in results], indent=2, ensure_ascii=False))
    elif not results:
        _out(_t("cli.no_channels"))
    else:
        rows = [
            [r.channel, r.kind, _t("cli.check_ok") if r.ok else _t("cli.check_failed"), r.detail]
            for r in results
        ]
        for line in _table([_t(f"cli.col.{c}") for c in ("channel", "kind", "state", "detail")], rows):
            _out(line)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def cmd_demo(args: argparse.Namespace) -> int:
    demo = importlib.import_module("daemon.demo")
    result: int = demo.run_demo(args)
    return result


def cmd_tui(args: argparse.Namespace) -> int:
    # Imported by name at run time: the daemon package must not depend on the TUI (or Textual).
    tui = importlib.import_module("tui.app")
    result: int = tui.run(args.socket, default_locale=configured_locale(config_path(args.config)))
    return result


# --- the parser --------------------------------------------------------------------------------------


def _int_list(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an outbox id: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"not an outbox id: {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _quantity(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of units: {text!r}") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storesync", description="Keeps the store's ERP and its sales channels in step."
    )
    parser.add_argument("--config", help=f"settings file (default: ${ENV_CONFIG} or ./settings.toml)")
    parser.add_argument("--socket", help="control socket (default: from the settings)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the daemon")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, parent: Any = sub
    ) -> Any:
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        # Also accepted after the command: `storesync logs --json`.
        p.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
        )
        return p

    p = command("run", cmd_run, "run the daemon in the foreground")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))

    command("status", cmd_status, "show the daemon's and every channel's state")

    p = command("sync", cmd_sync, "sync now (every channel, or one)")
    p.add_argument("--channel")
    p.add_argument("--flow")

    for name, handler, text in (
        ("pause", cmd_pause, "pause a channel"),
        ("resume", cmd_resume, "resume a channel"),
    ):
        p = command(name, handler, text)
        p.add_argument("channel", metavar="CHANNEL")
        p.add_argument("--flow", help="only this flow")

    command("reload", cmd_reload, "re-read the settings file")

    p = command("logs", cmd_logs, "show the sync log (newest last)")
    p.add_argument("--channel")
    p.add_argument("--flow")
    p.add_argument("--level", choices=LEVELS, help="this level and above")
    p.add_argument("--entity")
    p.add_argument("--entity-id")
    p.add_argument("--since", help="e.g. 30m, 2h, 1d or 2026-11-26T14:00")
    p.add_argument("--until")
    p.add_argument("--q", help="text to look for in the event and its data")
    p.add_argument("--limit", type=_positive, default=50)
    p.add_argument("--before", type=_positive, help="rows older than this id (paging)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new rows")

    stock = command("stock", _needs_subcommand, "ERP stock").add_subparsers(
        dest="stock_command", metavar="ACTION"
    )
    p = command("set", cmd_stock_set, "set the on-hand balance", stock)
    p.add_argument("sku", metavar="SKU")
    p.add_argument("quantity", metavar="QTY", type=_quantity)
    p.add_argument("--warehouse", help="warehouse code (default: the main one)")
    p = command("move", cmd_stock_move, "record a stock movement (+ in, - out)", stock)
    p.add_argument("sku", metavar="SKU")
    p.add_argument("delta", metavar="DELTA", type=_quantity)
    p.add_argument("--warehouse")
    p.add_argument("--reason", default="adjust", help="adjust | sale | return | transfer | count")
    p.add_argument("--ref", help="a reference kept with the movement")

    price = command("price", _needs_subcommand, "ERP prices").add_subparsers(
        dest="price_command", metavar="ACTION"
    )
    p = command("set", cmd_price_set, "set a product's prices", price)
    p.add_argument("sku", metavar="SKU")
    p.add_argument("list_price", metavar="LIST", help="list price, e.g. 119.90 or 119,90")
    p.add_argument("--sale", help="standing sale price")
    p.add_argument("--cost", help="cost price")
    p.add_argument("--promo", help="scheduled promotional price")
    p.add_argument("--promo-start")
    p.add_argument("--promo-end")

    product = command("product", _needs_subcommand, "ERP products").add_subparsers(
        dest="product_command", metavar="ACTION"
    )
    p = command("import", cmd_product_import, "import products from a CSV file", product)
    p.add_argument("file", metavar="FILE.csv")
    p = command("push-stock", cmd_product_push_stock, "push a product's stock to every channel now", product)
    p.add_argument("sku", metavar="SKU")
    p = command("link", cmd_product_link, "link a product to a given listing on a channel", product)
    p.add_argument("sku", metavar="SKU")
    p.add_argument("channel", metavar="CHANNEL")
    p.add_argument("remote_id", metavar="REMOTE_ID", help="the channel's product id")
    p = command(
        "unlink",
        cmd_product_unlink,
        "forget a product's link on a channel (nothing is deleted there)",
        product,
    )
    p.add_argument("sku", metavar="SKU")
    p.add_argument("channel", metavar="CHANNEL")

    invoice = command("invoice", _needs_subcommand, "NF-e invoices").add_subparsers(
        dest="invoice_command", metavar="ACTION"
    )
    p = command("add", cmd_invoice_add, "attach an NF-e to an order", invoice)
    p.add_argument("channel", metavar="CHANNEL")
    p.add_argument("order", metavar="ORDER", help="the channel's order number")
    p.add_argument("--number", required=True)
    p.add_argument("--series", required=True)
    p.add_argument("--key", required=True, help="the 44-digit access key (chave de acesso)")
    p.add_argument("--issued-at", required=True, help="e.g. 2026-11-26T14:00")
    p.add_argument("--danfe-url")
    p.add_argument("--xml-url")

    tracking = command("tracking", _needs_subcommand, "tracking codes").add_subparsers(
        dest="tracking_command", metavar="ACTION"
    )
    p = command("add", cmd_tracking_add, "attach a tracking code to an order", tracking)
    p.add_argument("channel", metavar="CHANNEL")
    p.add_argument("order", metavar="ORDER")
    p.add_argument("--code", required=True)
    p.add_argument("--carrier")
    p.add_argument("--url")
    p = command("show", cmd_tracking_show, "an order's parcels, as the carrier last described them", tracking)
    p.add_argument("channel", metavar="CHANNEL")
    p.add_argument("order", metavar="ORDER")

    outbox = command("outbox", _needs_subcommand, "changes waiting to go out").add_subparsers(
        dest="outbox_command", metavar="ACTION"
    )
    p = command("list", cmd_outbox_list, "list outbox items", outbox)
    p.add_argument("--state", choices=("pending", "sent", "failed", "parked"))
    p.add_argument("--channel")
    p.add_argument("--limit", type=_positive, default=200)
    p.add_argument("--after", type=int, help="items with a greater id (paging)")
    p = command("retry", cmd_outbox_retry, "send failed or parked items again", outbox)
    p.add_argument("--channel")
    p.add_argument("ids", metavar="IDS", nargs="*", type=_int_list)

    command(
        "problems",
        cmd_problems,
        "what needs a person: failed or parked items, unimported records, unlinked products, parcels",
    )

    p = command("explain", cmd_explain, "how the value last pushed to a channel was computed")
    p.add_argument("channel", metavar="CHANNEL")
    p.add_argument("sku", metavar="SKU")
    p.add_argument("--entity", choices=("stock", "price"), default="stock")

    p = command("check", cmd_check, "ask each channel one question with its credentials (no daemon needed)")
    p.add_argument("--channel", action="append", help="only this channel (repeatable)")

    db = command("db", _needs_subcommand, "the state database").add_subparsers(
        dest="db_command", metavar="ACTION"
    )
    command("migrate", cmd_db_migrate, "create or upgrade the state database", db)

    p = command("demo", cmd_demo, "run the daemon against the bundled simulators, with the TUI")
    p.add_argument("--no-tui", action="store_true", help="follow the log instead of opening the dashboard")
    p.add_argument("--duration", type=float, default=0, help="with --no-tui: stop after this many seconds")
    command("tui", cmd_tui, "open the dashboard")
    return parser


def _needs_subcommand(args: argparse.Namespace) -> int:
    raise UsageError(_t("cli.which_action", command=args.command))


# --- entry point -------------------------------------------------------------------------------------


def _settings_problems(exc: BaseException) -> list[str] | None:
    """The problem lines of a daemon.settings.SettingsError (imported lazily), else None."""
    try:
        settings = importlib.import_module("daemon.settings")
    except ImportError:
        return None
    if isinstance(exc, settings.SettingsError):
        return list(exc.problems)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    use_locale(cli_locale(config_path(args.config)))
    try:
        if args.socket is None:
            args.socket = str(default_socket_path(args.config))
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UsageError as exc:
        _err(f"storesync: {exc}")
        return EXIT_USAGE
    except PathsError as exc:
        for line in exc.problems:
            _err(line)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        problems = _settings_problems(exc)
        if problems is None:
            raise
        for line in problems:
            _err(line)
        return EXIT_USAGE
