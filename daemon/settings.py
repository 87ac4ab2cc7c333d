"""Settings: ``settings.toml`` + environment + command line, validated all at once.

Precedence is built-in defaults < the TOML file < ``STORESYNC_...`` environment variables (nested
with ``__``) < CLI overrides. Every mistake is reported, one line each, naming the key path, so an
operator fixes a file in one pass instead of one error per restart. Secrets are resolved while
validating, so a reload whose secret has gone missing is rejected before anything is applied.

Durations are float seconds everywhere (``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, or a plain
number of seconds); rate limits are requests per minute (``"100/min"``, ``"5/s"``, ``"3000/h"``, or a
plain number per minute).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TextIO
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from channels.models import ChannelContext, FlowName
from channels.registry import connector_class, connector_kinds
from channels.transport import Engine
from daemon import i18n
from daemon.secrets import SECRETS, SecretError, SecretRegistry, resolve_secret

ENV_PREFIX = "STORESYNC_"
ENV_CONFIG = "STORESYNC_CONFIG"
ENV_DELIMITER = "__"
DEFAULT_CONFIG_NAME = "settings.toml"
SOCKET_NAME = "control.sock"
STATE_DB_NAME = "storesync.db"
LOG_DB_NAME = "storesync-log.db"
MAX_SOCKET_PATH_BYTES = 107
EXIT_SETTINGS_ERROR = 2

SECRET_KEYS: tuple[str, ...] = ("api_key", "app_key", "token", "client_id", "client_secret", "refresh_token")
DEFAULT_KEYS: tuple[str, ...] = (
    "timeout",
    "max_retries",
    "circuit_breaker_failures",
    "circuit_breaker_cooldown",
    "outbox_max_attempts",
    "cursor_lookback",
    "order_audit_interval",
    "order_audit_window",
)
MAPPING_KINDS: tuple[str, ...] = ("status", "carrier", "payment", "category")


class SettingsError(Exception):
    """Settings that cannot be used; ``problems`` holds one line per mistake, never a secret."""

    def __init__(self, problems: list[str], *, path: Path | None = None) -> None:
        self.problems = list(problems)
        self.path = path
        super().__init__("\n".join(self.problems))


# --- value parsers -----------------------------------------------------------------------------------

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)")
_DURATION = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(rf"({_NUMBER})\s*/\s*([a-z]+)")
_RATE_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 60.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 1.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 1.0 / 60.0),
}


def _shown(value: object) -> str:
    """A short, quoted echo of a bad (non-secret) value for an error line."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return json.dumps(text, ensure_ascii=False) if isinstance(value, str) else text


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1h30m"`` or a number."""
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif _DURATION.fullmatch(text):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds is None or math.isnan(seconds):
        raise PydanticCustomError(
            "duration",
            'expected a duration like "500ms", "30s", "5m", "2h" or "1d", got {got}',
            {"got": _shown(value)},
        )
    if seconds < 0 or math.isinf(seconds):
        raise PydanticCustomError(
            "duration", "must be a duration of zero or more, got {got}", {"got": _shown(value)}
        )
    return seconds


def parse_rate(value: object) -> float:
    """Requests per minute from ``"100/min"``, ``"5/s"``, ``"3000/h"`` or a number (per minute)."""
    per_minute: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        per_minute = float(value)
    elif isinstance(value, str):
        match = _RATE.fullmatch(value.strip().lower())
        if match and match.group(2) in _RATE_UNITS:
            per_minute = float(match.group(1)) * _RATE_UNITS[match.group(2)]
    if per_minute is None or not math.isfinite(per_minute):
        raise PydanticCustomError(
            "rate", 'expected like "100/min", "5/s" or "3000/h", got {got}', {"got": _shown(value)}
        )
    if per_minute <= 0:
        raise PydanticCustomError(
            "rate", "must be more than zero requests, got {got}", {"got": _shown(value)}
        )
    return per_minute


def _split_list(value: object) -> object:
    """Lists may come from the environment as "A,B"."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _codes(value: object) -> object:
    """Channel status codes are text; TOML lets people write them as numbers."""
    value = _split_list(value)
    if isinstance(value, list | tuple):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
RatePerMinute = Annotated[float, BeforeValidator(parse_rate)]
ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]+$")]
NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
MappingKind = Literal["status", "carrier", "payment", "category"]


@dataclass(frozen=True)
class _LoadContext:
    """What validators need beyond the values: where relative paths start, where env: secrets live."""

    base_dir: Path
    environ: Mapping[str, str]
    registry: SecretRegistry
    tree: dict[str, Any]
    """The merged file < environment < CLI values being validated."""


# A context variable rather than pydantic's validation context: BaseSettings builds its values in
# __init__ from its sources and does not pass a validation context through.
_LOADING: ContextVar[_LoadContext | None] = ContextVar("storesync_settings_loading", default=None)


def _context(info: ValidationInfo) -> _LoadContext:
    active = _LOADING.get()
    if active is not None:
        return active
    return _LoadContext(base_dir=Path.cwd(), environ=os.environ, registry=SECRETS, tree={})


# --- models --------------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DaemonSettings(_Section):
    """``[daemon]``: where the process keeps its files and how it talks to people and systemd."""

    state_dir: Path = Path("var")
    runtime_dir: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_retention_days: int = Field(30, ge=1)
    log_retention_rows: int = Field(2_000_000, ge=1)
    log_items_to_stdout: bool = False
    """Every pushed item as its own line on stdout too (the log database always has one row per
    item); off, a batch prints one summary line, which keeps a bulk push under journald's limit."""
    locale: Literal["pt_BR", "en"] = "pt_BR"
    shutdown_timeout: PositiveDuration = 20.0
    watchdog: bool = True
    http_client: Engine = "builtin"
    """The engine every channel's requests go through: the daemon's own HTTP/1.1 client, or
    aiohttp's session (``"aiohttp"``: a fallback should a platform's server disagree with ours)."""

    @field_validator("state_dir", "runtime_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise PydanticCustomError("path", "must not be empty")
        return value

    @field_validator("state_dir", "runtime_dir", mode="after")
    @classmethod
    def _relative_to_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None or value.is_absolute():
            return value
        return _context(info).base_dir / value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            return "warning" if value == "warn" else value
        return value

    @field_validator("locale", mode="before")
    @classmethod
    def _locale(cls, value: object) -> object:
        if isinstance(value, str):
            tag = value.strip().split(".")[0].replace("-", "_").lower()
            if tag in ("pt_br", "pt"):
                return "pt_BR"
            if tag == "en" or tag.startswith("en_"):
                return "en"
        return value

    @model_validator(mode="after")
    def _socket_fits(self) -> DaemonSettings:
        socket = (self.runtime_dir or self.state_dir) / SOCKET_NAME
        size = len(os.fsencode(socket))
        if size > MAX_SOCKET_PATH_BYTES:
            raise PydanticCustomError(
                "socket_path",
                "the control socket path {path} is {size} bytes; Unix sockets allow {limit}: "
                "set daemon.runtime_dir to a shorter folder",
                {"path": str(socket), "size": size, "limit": MAX_SOCKET_PATH_BYTES},
            )
        return self


class ChannelDefaults(_Section):
    """``[defaults]``: what every channel uses unless it says otherwise."""

    timeout: PositiveDuration = 30.0
    max_retries: int = Field(4, ge=0)
    circuit_breaker_failures: int = Field(5, ge=1)
    circuit_breaker_cooldown: Duration = 120.0
    outbox_max_attempts: int = Field(8, ge=1)
    cursor_lookback: Duration = 600.0
    order_audit_interval: Duration = 86400.0
    """How often the orders flow compares the channel's recent order ids with the ERP's (0: never)."""
    order_audit_window: PositiveDuration = 93600.0
    """How far back that comparison reaches (a day, plus an hour of overlap)."""


class FlowSettings(_Section):
    """``[channels.<name>.flows.<flow>]``; missing keys take the flow's own defaults."""

    enabled: bool = True
    interval: PositiveDuration = 300.0
    batch_size: int = Field(50, ge=1)
    rate_limit: RatePerMinute | None = None
    """This flow's own cap ("20/min"), within the channel's ``rate_limit`` that all its flows share
    by priority; none by default."""

    @classmethod
    def default_for(cls, flow: FlowName, *, enabled: bool = True) -> FlowSettings:
        interval, batch_size = FLOW_DEFAULTS[flow]
        return cls(enabled=enabled, interval=interval, batch_size=batch_size)


FLOW_DEFAULTS: dict[FlowName, tuple[float, int]] = {
    FlowName.ORDERS: (120.0, 50),
    FlowName.TICKETS: (300.0, 50),
    FlowName.TRACKING: (1800.0, 50),
    FlowName.PRODUCTS: (1800.0, 50),
    FlowName.STOCK: (300.0, 100),
    FlowName.PRICES: (600.0, 100),
    FlowName.ORDER_UPDATES: (120.0, 50),
}
"""Per-flow (interval seconds, batch size) when the settings do not say."""


def supported_flows(kind: str) -> frozenset[FlowName] | None:
    """The flows the connector for ``kind`` implements, or None when it cannot be loaded.

    Connectors are imported lazily (registry): a broken one must not make the settings unreadable,
    it fails when its channel starts.
    """
    try:
        return frozenset(connector_class(kind).supported_flows)
    except Exception:  # a broken connector is reported when its channel starts, not here
        return None


class ChannelSettings(_Section):
    """``[channels.<name>]``: one store account on one platform.

    Keys this model does not know are kept in ``options`` for the connector (e.g. ``auth_scheme``,
    ``remote_timezone``), unless they look like a misspelt known key, which is an error.
    """

    kind: str
    enabled: bool = True
    base_url: str

    api_key: SecretStr | None = None
    app_key: SecretStr | None = None
    token: SecretStr | None = None
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None

    rate_limit: RatePerMinute = 60.0
    """Requests per minute."""
    rate_limit_burst: int = Field(0, ge=0)
    order_statuses: Annotated[list[NonEmptyStr], BeforeValidator(_codes)] = Field(default_factory=list)
    only_paid: bool = False
    link_by: Literal["sku", "ean", "code"] = "sku"
    create_missing_products: bool = True
    stock_warehouses: Annotated[list[NonEmptyStr], BeforeValidator(_split_list)] = Field(
        default_factory=lambda: ["MAIN"], min_length=1
    )
    sale_warehouse: NonEmptyStr = "MAIN"
    stock_buffer: int = Field(0, ge=0)
    channel_holds_stock_in: Annotated[list[NonEmptyStr], BeforeValidator(_codes)] = Field(
        default_factory=list
    )
    """Channel status codes in which the channel holds stock back for its own orders by itself
    (Loja Integrada: awaiting payment, payment under review). Those orders' reservations are then
    not subtracted again from the stock pushed to this channel. Empty (the default) subtracts every
    open order everywhere: never oversells, may undersell on such a channel while orders wait."""
    price_adjust_percent: Decimal = Field(Decimal(0), gt=-100)
    carriers: Annotated[list[NonEmptyStr], BeforeValidator(_split_list)] = Field(default_factory=list)
    """Carrier channels (kind correios): the local carrier codes whose shipments they track."""
    delivered_status: str = "delivered"
    """Carrier channels: the local order status once all of an order's parcels arrived ("": none)."""
    tracking_horizon_days: float = Field(60.0, gt=0)
    mappings: dict[MappingKind, dict[NonEmptyStr, NonEmptyStr]] = Field(default_factory=dict)
    flows: dict[FlowName, FlowSettings] = Field(default_factory=dict)

    timeout: PositiveDuration | None = None
    max_retries: int | None = Field(None, ge=0)
    circuit_breaker_failures: int | None = Field(None, ge=1)
    circuit_breaker_cooldown: Duration | None = None
    outbox_max_attempts: int | None = Field(None, ge=1)
    cursor_lookback: Duration | None = None
    order_audit_interval: Duration | None = None
    order_audit_window: PositiveDuration | None = None

    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_options(cls, data: object) -> object:
        if not isinstance(data, Mapping):
            return data
        known = set(cls.model_fields)
        raw_options = data.get("options", {})
        options = dict(raw_options) if isinstance(raw_options, Mapping) else None
        kept: dict[str, Any] = {}
        for key, value in data.items():
            if key in known or not isinstance(key, str) or _close_to(key, known):
                kept[key] = value  # a near-miss stays, so extra="forbid" reports it with a suggestion
            elif options is not None:
                options[key] = value
            else:
                kept[key] = value
        if options is not None:
            kept["options"] = options
        return kept

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        kind = value.strip().lower()
        kinds = connector_kinds()
        if kind not in kinds:
            raise PydanticCustomError(
                "kind",
                "unknown channel kind {got} (known: {known})",
                {"got": _shown(value), "known": ", ".join(sorted(kinds))},
            )
        return kind

    @field_validator("base_url", mode="after")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # The value is never echoed: a URL can carry credentials.
        value = value.strip()
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            host = None
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not host
            or any(c.isspace() for c in value)
        ):
            raise PydanticCustomError("url", "expected an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise PydanticCustomError(
                "url", "must not contain a user name or password; put credentials in api_key/token"
            )
        return value.rstrip("/")

    @field_validator(*SECRET_KEYS, mode="before")
    @classmethod
    def _resolve_secret(cls, value: object, info: ValidationInfo) -> object:
        if value is None or isinstance(value, SecretStr):
            return value
        if not isinstance(value, str):
            raise PydanticCustomError("secret", 'expected text: "env:NAME", "file:PATH" or the secret itself')
        ctx = _context(info)
        try:
            secret = resolve_secret(value.strip(), environ=ctx.environ, base_dir=ctx.base_dir)
        except SecretError as exc:
            raise PydanticCustomError("secret", "{reason}", {"reason": str(exc)}) from None
        ctx.registry.register(secret)
        return SecretStr(secret)

    @field_validator("mappings", mode="before")
    @classmethod
    def _mapping_codes(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            return value
        return {
            kind: (
                {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in table.items()}
                if isinstance(table, Mapping)
                else table
            )
            for kind, table in value.items()
        }

    @field_validator("flows", mode="before")
    @classmethod
    def _flow_defaults(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            return value
        filled: dict[Any, Any] = {}
        for key, body in value.items():
            flow = FlowName(key) if key in FlowName._value2member_map_ else None
            if flow is not None and isinstance(body, Mapping):
                interval, batch_size = FLOW_DEFAULTS[flow]
                filled[key] = {"interval": interval, "batch_size": batch_size, **body}
            else:
                filled[key] = body
        return filled

    @field_validator("flows", mode="after")
    @classmethod
    def _flows_supported(
        cls, value: dict[FlowName, FlowSettings], info: ValidationInfo
    ) -> dict[FlowName, FlowSettings]:
        kind = info.data.get("kind")
        supported = supported_flows(kind) if isinstance(kind, str) else None
        if supported is None:
            return value
        unsupported = sorted(f.value for f, s in value.items() if s.enabled and f not in supported)
        if unsupported:
            raise PydanticCustomError(
                "flow",
                "the {kind} connector does not support {flows} (it supports: {supported}); "
                "remove the section or set enabled = false",
                {
                    "kind": kind,
                    "flows": ", ".join(unsupported),
                    "supported": ", ".join(sorted(f.value for f in supported)) or "nothing",
                },
            )
        return value

    # --- use -------------------------------------------------------------------------------------------

    def supported_flows(self) -> frozenset[FlowName] | None:
        return supported_flows(self.kind)

    def flow(self, name: FlowName | str, *, supported: Iterable[FlowName] | None = None) -> FlowSettings:
        """How one flow runs: as configured, else on by default if the connector supports it.

        ``supported`` overrides the connector's declaration (tests, or a caller that holds the class).
        When neither says, an unconfigured flow is off: a connector that cannot be loaded runs nothing.
        """
        flow = FlowName(name)
        configured = self.flows.get(flow)
        if configured is not None:
            return configured
        known = frozenset(supported) if supported is not None else self.supported_flows()
        return FlowSettings.default_for(flow, enabled=known is not None and flow in known)

    def receives_pushes(self) -> bool:
        """The connector takes products, stock, prices or order updates (a carrier does not): only
        such channels get the changes the ERP's triggers fan out."""
        supported = self.supported_flows()
        return supported is None or any(not flow.is_pull for flow in supported)

    def active_flows(self, *, supported: Iterable[FlowName] | None = None) -> dict[FlowName, FlowSettings]:
        """Every flow that should run on this channel (empty when the channel is disabled)."""
        if not self.enabled:
            return {}
        known = list(supported) if supported is not None else None
        result = {f: self.flow(f, supported=known) for f in FlowName}
        return {f: s for f, s in result.items() if s.enabled}

    def effective(self, defaults: ChannelDefaults) -> ChannelDefaults:
        """``[defaults]`` with this channel's own overrides applied."""
        update = {k: getattr(self, k) for k in DEFAULT_KEYS if getattr(self, k) is not None}
        return defaults.model_copy(update=update)

    def secrets(self) -> dict[str, SecretStr]:
        return {k: v for k in SECRET_KEYS if (v := getattr(self, k)) is not None}

    def connector_options(self) -> dict[str, Any]:
        """``options`` plus the keys a connector needs to filter what it fetches."""
        options = dict(self.options)
        options.setdefault("order_statuses", list(self.order_statuses))
        options.setdefault("only_paid", self.only_paid)
        return options

    def context(self, name: str, defaults: ChannelDefaults) -> ChannelContext:
        effective = self.effective(defaults)
        return ChannelContext(
            name=name,
            kind=self.kind,
            base_url=self.base_url,
            secrets=self.secrets(),
            options=self.connector_options(),
            timeout_seconds=effective.timeout,
            max_retries=effective.max_retries,
            rate_limit_per_minute=self.rate_limit,
            rate_limit_burst=self.rate_limit_burst,
        )


def _close_to(key: str, known: Iterable[str]) -> bool:
    return bool(difflib.get_close_matches(key, list(known), n=1, cutoff=0.85))


class _LayeredSource(PydanticBaseSettingsSource):
    """Feeds BaseSettings the values load_settings merged (file < environment < CLI).

    Outside load_settings (``Settings()`` on its own) it reads just the ``STORESYNC_`` environment.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole tree

    def __call__(self) -> dict[str, Any]:
        active = _LOADING.get()
        if active is not None:
            return active.tree
        problems: list[str] = []
        tree = _env_tree(os.environ, problems, {})
        if problems:
            raise SettingsError(problems)
        return tree


class Settings(BaseSettings):
    """The whole file. Build it with :func:`load_settings`; ``Settings()`` alone reads only the env."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Our environment parser instead of pydantic-settings' own: it accepts "A,B" lists and its
        # errors name the variable; the TOML file and CLI layers are merged in load_settings.
        return (init_settings, _LayeredSource(settings_cls))

    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    defaults: ChannelDefaults = Field(default_factory=ChannelDefaults)
    channels: dict[ChannelName, ChannelSettings] = Field(default_factory=dict)

    _config_path: Path | None = PrivateAttr(default=None)

    @property
    def config_path(self) -> Path | None:
        """The file these settings came from (reloads read it again)."""
        return self._config_path

    @property
    def state_db_path(self) -> Path:
        return self.daemon.state_dir / STATE_DB_NAME

    @property
    def log_db_path(self) -> Path:
        return self.daemon.state_dir / LOG_DB_NAME

    @property
    def socket_path(self) -> Path:
        return (self.daemon.runtime_dir or self.daemon.state_dir) / SOCKET_NAME

    def channel_defaults(self, name: str) -> ChannelDefaults:
        return self.channels[name].effective(self.defaults)

    def channel_context(self, name: str) -> ChannelContext:
        return self.channels[name].context(name, self.defaults)

    def enabled_channels(self) -> dict[str, ChannelSettings]:
        return {name: channel for name, channel in self.channels.items() if channel.enabled}


# --- loading ----------------------------------------------------------------------------------------


def resolve_config_path(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``--config``, else ``$STORESYNC_CONFIG``, else ``./settings.toml``."""
    env = os.environ if environ is None else environ
    if path is not None:
        return Path(path)
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    return Path.cwd() / DEFAULT_CONFIG_NAME


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: SecretRegistry | None = None,
) -> Settings:
    """Read, merge and validate; raise :class:`SettingsError` listing every problem.

    ``overrides`` are CLI values, nested (``{"daemon": {"log_level": "debug"}}``) or dotted
    (``{"daemon.log_level": "debug"}``). Each resolved secret is registered with ``registry``
    (default: the process-wide :data:`daemon.secrets.SECRETS`) for log redaction.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    secrets = SECRETS if registry is None else registry
    config_path = resolve_config_path(path, env)
    problems: list[str] = []
    origins: dict[tuple[str, ...], str] = {}

    file_tree = _read_toml(config_path, problems)
    env_tree = _env_tree(env, problems, origins)
    cli_tree = _overrides_tree(overrides or {}, problems, origins)
    if problems:
        raise SettingsError(problems, path=config_path)

    tree = _deep_merge(_deep_merge(file_tree, env_tree), cli_tree)
    for section in ("daemon", "defaults"):
        tree.setdefault(section, {})  # validate the section's defaults too (relative paths)
    context = _LoadContext(base_dir=config_path.absolute().parent, environ=env, registry=secrets, tree=tree)
    token = _LOADING.set(context)
    try:
        settings = Settings()
    except ValidationError as exc:
        lines = [_problem(error, origins) for error in exc.errors(include_url=False, include_input=False)]
        raise SettingsError([secrets.redact(line) for line in lines], path=config_path) from None
    finally:
        _LOADING.reset(token)
    settings._config_path = config_path
    return settings


def format_problems(err: SettingsError) -> str:
    """The problems as printed by the CLI: one per line."""
    return "\n".join(err.problems)


def exit_on_error(err: SettingsError, *, stream: TextIO | None = None, locale: str | None = None) -> NoReturn:
    """Print a header and the problems to stderr and exit with status 2 (the CLI's settings error)."""
    out = sys.stderr if stream is None else stream
    header = i18n.translate(
        "settings.errors_header",
        i18n.resolve_locale(locale),
        path=str(err.path) if err.path else "settings",
        count=len(err.problems),
    )
    print(header, file=out)
    for line in err.problems:
        print(f"  {line}", file=out)
    raise SystemExit(EXIT_SETTINGS_ERROR)


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{path}: settings file not found (give --config or set {ENV_CONFIG})")
        return {}
    except IsADirectoryError:
        problems.append(f"{path}: is a folder, not a settings file")
        return {}
    except OSError as exc:
        problems.append(f"{path}: cannot read the settings file: {exc.strerror or type(exc).__name__}")
        return {}
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text (byte {exc.start})")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: TOML syntax error: {exc}")
    return {}


def _env_tree(
    environ: Mapping[str, str], problems: list[str], origins: dict[tuple[str, ...], str]
) -> dict[str, Any]:
    """``STORESYNC_A__B__C=v`` → ``{"a": {"b": {"c": v}}}``; JSON values for lists and tables.

    Our own parser rather than pydantic-settings' env source: it accepts ``A,B`` lists and names the
    variable in every error.
    """
    sections = set(Settings.model_fields)
    tree: dict[str, Any] = {}
    items = []
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == ENV_CONFIG:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_DELIMITER))
        if path[0] not in sections:
            continue  # other STORESYNC_ variables belong to someone else (tests, the CLI)
        if any(not part for part in path):
            problems.append(f"environment {name}: empty key between '{ENV_DELIMITER}'")
            continue
        items.append((path, name, value))
    for path, name, value in sorted(items, key=lambda item: len(item[0])):
        parsed: Any = value
        if value.lstrip().startswith(("[", "{")):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append(f"environment {name}: not valid JSON ({exc.msg} at column {exc.colno})")
                continue
        _set_path(tree, path, parsed)
        origins[path] = f"environment {name}"
    return tree


def _overrides_tree(
    overrides: Mapping[str, Any], problems: list[str], origins: dict[tuple[str, ...], str]
) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        path = tuple(str(key).split("."))
        if any(not part for part in path):
            problems.append(f"command line: bad setting name {key!r}")
            continue
        _set_path(tree, path, value)
        origins[path] = "command line"
    return tree


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    last = path[-1]
    if isinstance(value, Mapping) and isinstance(node.get(last), dict):
        node[last] = _deep_merge(node[last], value)
    else:
        node[last] = _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(base)
    for key, value in top.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = _plain(value)
    return merged


# --- problem lines -----------------------------------------------------------------------------------

_ALL_KEYS: frozenset[str] = frozenset(
    set(DaemonSettings.model_fields)
    | set(ChannelDefaults.model_fields)
    | set(FlowSettings.model_fields)
    | set(ChannelSettings.model_fields)
    | set(Settings.model_fields)
)

_PLAIN_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "decimal_type": "must be a number",
    "decimal_parsing": "must be a number",
    "string_type": "must be text",
    "string_too_short": "must not be empty",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "path_type": "must be a path",
}


def _problem(error: ErrorDetails, origins: Mapping[tuple[str, ...], str]) -> str:
    loc = tuple(error["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"
    parts = loc[:-1] if is_key else loc
    where = _loc_text(parts) or "settings"
    message = _message(error, parts, is_key)
    origin = _origin(parts, origins)
    return f"{where}: {message}" + (f" (set by {origin})" if origin else "")


def _message(error: ErrorDetails, parts: tuple[int | str, ...], is_key: bool) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if is_key:
        if kind == "string_pattern_mismatch" and parts[:1] == ("channels",):
            return "channel names may use only a-z, 0-9, '_' and '-'"
        if kind in ("enum", "literal_error"):
            return f"unknown key; expected {ctx.get('expected', '')}".rstrip()
        return "bad key: " + error["msg"]
    if kind == "extra_forbidden":
        name = str(parts[-1]) if parts else ""
        close = difflib.get_close_matches(name, sorted(_ALL_KEYS), n=1, cutoff=0.75)
        return "unknown key" + (f"; did you mean {close[0]}?" if close else "")
    if kind in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[kind]
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        symbol, key = bounds[kind]
        return f"must be {symbol} {ctx.get(key)}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind in ("literal_error", "enum"):
        return f"must be {ctx.get('expected')}"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _loc_text(parts: tuple[int | str, ...]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _origin(parts: tuple[int | str, ...], origins: Mapping[tuple[str, ...], str]) -> str | None:
    keys = tuple(str(p) for p in parts if not isinstance(p, int))
    for size in range(len(keys), 0, -1):
        origin = origins.get(keys[:size])
        if origin is not None:
            return origin
    return None


__all__ = [
    "FLOW_DEFAULTS",
    "SECRET_KEYS",
    "ChannelDefaults",
    "ChannelSettings",
    "DaemonSettings",
    "FlowSettings",
    "Settings",
    "SettingsError",
    "exit_on_error",
    "format_problems",
    "load_settings",
    "parse_duration",
    "parse_rate",
    "resolve_config_path",
    "supported_flows",
]
