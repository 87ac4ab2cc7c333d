"""Settings: one line per mistake, precedence, secrets resolved up front and never echoed."""

from __future__ import annotations

import io
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from channels.models import FlowName
from daemon.app import channel_config
from daemon.secrets import SecretRegistry
from daemon.settings import (
    FlowSettings,
    Settings,
    SettingsError,
    exit_on_error,
    format_problems,
    load_settings,
    parse_duration,
    parse_rate,
    resolve_config_path,
)

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"K1": "chave-api-123456", "K2": "chave-app-654321"}

CHANNEL = """
[channels.loja]
kind = "lojaintegrada"
base_url = "http://127.0.0.1:8765"
api_key = "env:K1"
app_key = "env:K2"
"""


@pytest.fixture
def registry() -> SecretRegistry:
    return SecretRegistry()


def write(folder: Path, text: str, name: str = "settings.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(path: Path, registry: SecretRegistry, env: dict[str, str] | None = None, **kw: object) -> Settings:
    environ = dict(KEYS) if env is None else env
    return load_settings(path, environ=environ, registry=registry, **kw)  # type: ignore[arg-type]


def problems_of(
    path: Path, registry: SecretRegistry, env: dict[str, str] | None = None, **kw: object
) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load(path, registry, env, **kw)
    return info.value.problems


# --- the shipped example --------------------------------------------------------------------------------


def test_root_settings_file_loads_with_its_two_secrets(registry: SecretRegistry) -> None:
    env = {"LOJA_CHAVE_API": "api-key-from-env", "LOJA_CHAVE_APLICACAO": "app-key-from-env"}
    settings = load_settings(ROOT / "settings.toml", environ=env, registry=registry)

    assert settings.config_path == ROOT / "settings.toml"
    assert settings.daemon.state_dir == ROOT / "var"
    assert settings.state_db_path == ROOT / "var" / "storesync.db"
    assert settings.log_db_path == ROOT / "var" / "storesync-log.db"
    assert settings.socket_path == ROOT / "var" / "control.sock"
    assert settings.daemon.locale == "pt_BR"
    assert settings.daemon.shutdown_timeout == 5.0
    assert settings.defaults.cursor_lookback == 600.0
    loja = settings.channels["loja"]
    assert loja.kind == "lojaintegrada"
    assert loja.rate_limit == 100.0
    assert loja.mappings["status"]["paid"] == "pedido_pago"
    assert loja.flow(FlowName.STOCK) == FlowSettings(enabled=True, interval=300.0, batch_size=100)
    assert loja.flow(FlowName.TICKETS).enabled is False  # the connector has no tickets flow
    context = settings.channel_context("loja")
    assert context.secret("api_key") == "api-key-from-env"
    assert context.secret("app_key") == "app-key-from-env"
    assert context.rate_limit_per_minute == 100.0
    assert context.timeout_seconds == 30.0
    assert context.options["order_statuses"] == list(loja.order_statuses)
    assert registry.values() == {"api-key-from-env", "app-key-from-env"}


def test_root_settings_file_without_its_secrets_names_both_variables(registry: SecretRegistry) -> None:
    problems = problems_of(ROOT / "settings.toml", registry, env={})
    assert problems == [
        "channels.loja.api_key: environment variable LOJA_CHAVE_API is not set",
        "channels.loja.app_key: environment variable LOJA_CHAVE_APLICACAO is not set",
    ]


# --- every problem, one line each -----------------------------------------------------------------------


def test_three_mistakes_give_three_lines(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(
        tmp_path,
        CHANNEL
        + """
        rate_limit = "fast"
        [channels.loja.flows.stock]
        batch_size = 0
        [channels.loja.flows.orders]
        interval = "5 minutes"
        """,
    )
    problems = problems_of(path, registry)
    assert sorted(problems) == sorted(
        [
            'channels.loja.rate_limit: expected like "100/min", "5/s" or "3000/h", got "fast"',
            "channels.loja.flows.stock.batch_size: must be >= 1",
            'channels.loja.flows.orders.interval: expected a duration like "500ms", "30s", "5m", "2h" '
            'or "1d", got "5 minutes"',
        ]
    )
    assert format_problems(SettingsError(problems)).count("\n") == 2


def test_problems_across_sections_are_all_reported(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(
        tmp_path,
        """
        [daemon]
        log_level = "loud"
        locale = "fr"
        log_retention_days = 0
        [defaults]
        max_retries = -1
        [channels.loja]
        kind = "nope"
        base_url = "ftp://example.invalid"
        link_by = "name"
        stock_warehouses = []
        price_adjust_percent = -100
        stock_buffer = -2
        [channels.loja.mappings.colour]
        red = "1"
        """,
    )
    problems = problems_of(path, registry)
    assert "daemon.log_level: must be 'debug', 'info', 'warning' or 'error'" in problems
    assert "daemon.locale: must be 'pt_BR' or 'en'" in problems
    assert "daemon.log_retention_days: must be >= 1" in problems
    assert "defaults.max_retries: must be >= 0" in problems
    assert 'channels.loja.kind: unknown channel kind "nope" (known: correios, lojaintegrada)' in problems
    assert "channels.loja.base_url: expected an http:// or https:// URL with a host" in problems
    assert "channels.loja.link_by: must be 'sku', 'ean' or 'code'" in problems
    assert "channels.loja.stock_warehouses: needs at least 1 item(s)" in problems
    assert "channels.loja.price_adjust_percent: must be > -100" in problems
    assert "channels.loja.stock_buffer: must be >= 0" in problems
    assert any(
        p.startswith("channels.loja.mappings.colour: unknown key; expected 'status'") for p in problems
    )
    assert len(problems) == 11


def test_unknown_flow_is_an_error_naming_the_key(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, CHANNEL + "[channels.loja.flows.stokc]\ninterval = '5m'\n")
    [problem] = problems_of(path, registry)
    assert problem.startswith("channels.loja.flows.stokc: unknown key; expected 'orders', 'tickets'")


def test_flow_the_connector_lacks_is_an_error_unless_disabled(
    tmp_path: Path, registry: SecretRegistry
) -> None:
    path = write(tmp_path, CHANNEL + "[channels.loja.flows.tickets]\ninterval = '5m'\n")
    [problem] = problems_of(path, registry)
    assert problem.startswith("channels.loja.flows: the lojaintegrada connector does not support tickets")

    write(tmp_path, CHANNEL + "[channels.loja.flows.tickets]\nenabled = false\n")
    assert load(path, registry).channels["loja"].flow("tickets").enabled is False


def test_missing_required_keys_and_unknown_sections(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, "[deamon]\nlog_level = 'info'\n[channels.loja]\nenabled = true\n")
    problems = problems_of(path, registry)
    assert sorted(problems) == [
        "channels.loja.base_url: is required",
        "channels.loja.kind: is required",
        "deamon: unknown key; did you mean daemon?",
    ]


def test_misspelt_channel_key_is_caught_other_keys_become_options(
    tmp_path: Path, registry: SecretRegistry
) -> None:
    path = write(tmp_path, CHANNEL + 'rate_limt = "10/min"\n')
    assert problems_of(path, registry) == ["channels.loja.rate_limt: unknown key; did you mean rate_limit?"]

    write(tmp_path, CHANNEL + 'auth_scheme = "personal_token"\nremote_timezone = "-03:00"\n')
    loja = load(path, registry).channels["loja"]
    assert loja.options == {"auth_scheme": "personal_token", "remote_timezone": "-03:00"}
    assert loja.context("loja", load(path, registry).defaults).options["auth_scheme"] == "personal_token"


def test_channel_names_are_lowercase_slugs(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, CHANNEL.replace("[channels.loja]", '[channels."Loja Principal"]'))
    assert problems_of(path, registry) == [
        "channels.Loja Principal: channel names may use only a-z, 0-9, '_' and '-'"
    ]


def test_toml_syntax_error_has_line_and_column(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, '[daemon]\nlog_level = "info"\nlog_retention_days = = 3\n')
    [problem] = problems_of(path, registry)
    assert problem.startswith(f"{path}: TOML syntax error:")
    assert problem.endswith("(at line 3, column 22)")


def test_missing_file_is_a_problem_not_a_traceback(tmp_path: Path, registry: SecretRegistry) -> None:
    path = tmp_path / "absent.toml"
    assert problems_of(path, registry) == [
        f"{path}: settings file not found (give --config or set STORESYNC_CONFIG)"
    ]


# --- precedence -----------------------------------------------------------------------------------------


def test_environment_beats_file_and_overrides_beat_environment(
    tmp_path: Path, registry: SecretRegistry
) -> None:
    path = write(tmp_path, '[daemon]\nlog_level = "info"\nlog_retention_days = 30\n' + CHANNEL)
    env = {
        **KEYS,
        "STORESYNC_DAEMON__LOG_LEVEL": "debug",
        "STORESYNC_DAEMON__LOG_RETENTION_DAYS": "7",
        "STORESYNC_CHANNELS__LOJA__RATE_LIMIT": "5/s",
        "STORESYNC_CHANNELS__LOJA__FLOWS__STOCK__BATCH_SIZE": "20",
        "STORESYNC_CHANNELS__LOJA__STOCK_WAREHOUSES": "MAIN, STORE2",
        "STORESYNC_UNRELATED_THING": "ignored",
    }
    settings = load(path, registry, env)
    assert settings.daemon.log_level == "debug"
    assert settings.daemon.log_retention_days == 7
    loja = settings.channels["loja"]
    assert loja.rate_limit == 300.0
    assert loja.flow("stock") == FlowSettings(enabled=True, interval=300.0, batch_size=20)
    assert loja.stock_warehouses == ["MAIN", "STORE2"]
    assert loja.base_url == "http://127.0.0.1:8765"  # untouched keys keep the file's value

    settings = load(
        path, registry, env, overrides={"daemon": {"log_level": "warning"}, "channels.loja.rate_limit": "1/s"}
    )
    assert settings.daemon.log_level == "warning"
    assert settings.daemon.log_retention_days == 7
    assert settings.channels["loja"].rate_limit == 60.0


def test_problem_from_the_environment_names_the_variable(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, CHANNEL)
    env = {**KEYS, "STORESYNC_CHANNELS__LOJA__RATE_LIMIT": "fast", "STORESYNC_DEFAULTS__TIMEOUT": "[1,"}
    problems = problems_of(path, registry, env)
    assert problems == [
        "environment STORESYNC_DEFAULTS__TIMEOUT: not valid JSON (Expecting value at column 4)"
    ]

    env = {**KEYS, "STORESYNC_CHANNELS__LOJA__RATE_LIMIT": "fast"}
    assert problems_of(path, registry, env) == [
        'channels.loja.rate_limit: expected like "100/min", "5/s" or "3000/h", got "fast" '
        "(set by environment STORESYNC_CHANNELS__LOJA__RATE_LIMIT)"
    ]


def test_config_path_argument_then_environment_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(None, {}) == tmp_path / "settings.toml"
    assert resolve_config_path(None, {"STORESYNC_CONFIG": "/etc/x.toml"}) == Path("/etc/x.toml")
    assert resolve_config_path(Path("a.toml"), {"STORESYNC_CONFIG": "/etc/x.toml"}) == Path("a.toml")


def test_config_from_environment_variable_is_loaded(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, '[daemon]\nlog_level = "error"\n', name="other.toml")
    settings = load_settings(environ={"STORESYNC_CONFIG": str(path)}, registry=registry)
    assert settings.daemon.log_level == "error"
    assert settings.config_path == path


# --- paths ----------------------------------------------------------------------------------------------


def test_relative_state_dir_is_relative_to_the_settings_file(
    tmp_path: Path, registry: SecretRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    path = write(conf, '[daemon]\nstate_dir = "data/state"\n')
    monkeypatch.chdir(tmp_path)
    settings = load(path, registry)
    assert settings.daemon.state_dir == conf / "data" / "state"
    assert settings.socket_path == conf / "data" / "state" / "control.sock"

    settings = load(path, registry, overrides={"daemon.runtime_dir": "/run/storesync"})
    assert settings.socket_path == Path("/run/storesync/control.sock")
    assert settings.state_db_path == conf / "data" / "state" / "storesync.db"


def test_default_state_dir_is_var_next_to_the_file(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, "")
    assert load(path, registry).daemon.state_dir == tmp_path / "var"


def test_socket_path_too_long_is_caught(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, f'[daemon]\nruntime_dir = "/{"r" * 120}"\n')
    [problem] = problems_of(path, registry)
    assert problem.startswith("daemon: the control socket path /rrr")
    assert "set daemon.runtime_dir to a shorter folder" in problem


# --- secrets --------------------------------------------------------------------------------------------


def test_file_and_env_secrets_resolve(tmp_path: Path, registry: SecretRegistry) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "key").write_text("from-a-file-1234\n", encoding="utf-8")
    path = write(
        tmp_path,
        CHANNEL.replace('api_key = "env:K1"', 'api_key = "file:creds/key"').replace(
            'app_key = "env:K2"', 'app_key = "env:K2"\ntoken = "inline-literal-token"'
        ),
    )
    loja = load(path, registry).channels["loja"]
    assert loja.api_key == SecretStr("from-a-file-1234")
    assert loja.app_key is not None and loja.app_key.get_secret_value() == KEYS["K2"]
    assert loja.secrets().keys() == {"api_key", "app_key", "token"}
    assert "from-a-file-1234" not in repr(loja) and "from-a-file-1234" not in str(loja.model_dump())
    assert registry.values() == {"from-a-file-1234", KEYS["K2"], "inline-literal-token"}


def test_credentials_directory_prefix(tmp_path: Path, registry: SecretRegistry) -> None:
    (tmp_path / "loja_api_key").write_text("credential-value", encoding="utf-8")
    path = write(tmp_path, CHANNEL.replace('"env:K1"', '"file:$CREDENTIALS_DIRECTORY/loja_api_key"'))
    env = {**KEYS, "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert load(path, registry, env).channel_context("loja").secret("api_key") == "credential-value"
    assert problems_of(path, registry, dict(KEYS)) == [
        "channels.loja.api_key: CREDENTIALS_DIRECTORY is not set"
        " (is there a LoadCredential= line in the unit?)"
    ]


def test_missing_env_secret_and_unreadable_secret_file(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, CHANNEL.replace('"env:K2"', '"file:/nonexistent/app_key"'))
    problems = problems_of(path, registry, env={})
    assert problems == [
        "channels.loja.api_key: environment variable K1 is not set",
        "channels.loja.app_key: cannot read secret file /nonexistent/app_key: No such file or directory",
    ]


def test_secret_values_never_appear_in_problems(tmp_path: Path, registry: SecretRegistry) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("file-secret-content", encoding="utf-8")
    path = write(
        tmp_path,
        CHANNEL.replace('"env:K1"', f'"file:{secret_file}"')
        + 'token = "inline-token-value"\n'
        + "client_secret = 12345678\n"
        + 'base_url_extra = "inline-token-value"\n'
        + 'rate_limit = "inline-token-value"\n',
    )
    problems = problems_of(path, registry)
    text = "\n".join(problems)
    for secret in ("file-secret-content", "inline-token-value", "12345678", KEYS["K2"]):
        assert secret not in text
    assert (
        'channels.loja.client_secret: expected text: "env:NAME", "file:PATH" or the secret itself' in problems
    )
    assert any(p.startswith("channels.loja.rate_limit: expected like") for p in problems)


def test_url_with_credentials_is_refused_without_echoing_them(
    tmp_path: Path, registry: SecretRegistry
) -> None:
    path = write(tmp_path, CHANNEL.replace("http://127.0.0.1:8765", "https://user:hunter2pass@api.example"))
    [problem] = problems_of(path, registry)
    assert problem.startswith("channels.loja.base_url: must not contain a user name or password")
    assert "hunter2pass" not in problem


# --- flows, defaults, coercions -----------------------------------------------------------------------


def test_flow_defaults_depend_on_the_flow_and_the_connector(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, CHANNEL + "[channels.loja.flows.stock]\nenabled = false\n")
    loja = load(path, registry).channels["loja"]
    assert loja.flow("stock") == FlowSettings(enabled=False, interval=300.0, batch_size=100)
    assert loja.flow("orders") == FlowSettings(enabled=True, interval=120.0, batch_size=50)
    assert loja.flow("prices") == FlowSettings(enabled=True, interval=600.0, batch_size=100)
    assert loja.flow("tracking") == FlowSettings(enabled=False, interval=1800.0, batch_size=50)
    assert loja.flow("tracking", supported=[FlowName.TRACKING]).enabled is True
    assert set(loja.active_flows()) == {
        FlowName.ORDERS,
        FlowName.PRODUCTS,
        FlowName.PRICES,
        FlowName.ORDER_UPDATES,
    }


def test_disabled_channel_has_no_active_flows(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, CHANNEL + "enabled = false\n")
    settings = load(path, registry)
    assert settings.channels["loja"].active_flows() == {}
    assert settings.enabled_channels() == {}


def test_channel_overrides_of_defaults(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, '[defaults]\ntimeout = "10s"\nmax_retries = 2\n' + CHANNEL + 'timeout = "1m"\n')
    settings = load(path, registry)
    effective = settings.channel_defaults("loja")
    assert effective.timeout == 60.0
    assert effective.max_retries == 2
    assert effective.circuit_breaker_cooldown == 120.0
    context = settings.channel_context("loja")
    assert context.timeout_seconds == 60.0
    assert context.max_retries == 2


def test_coercions(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(
        tmp_path,
        CHANNEL
        + """
        order_statuses = [2, "3", 9]
        price_adjust_percent = 12.5
        base_url_suffix_is_an_option = true
        [channels.loja.mappings.status]
        paid = 2
        """,
    )
    loja = load(path, registry).channels["loja"]
    assert loja.order_statuses == ["2", "3", "9"]
    assert loja.price_adjust_percent == Decimal("12.5")
    assert loja.mappings == {"status": {"paid": "2"}}
    path = write(tmp_path, CHANNEL + "order_statuses = [2, true]\n")
    assert problems_of(path, registry) == ["channels.loja.order_statuses[1]: must be text"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (" 10 S ", 10.0),
        ("45", 45.0),
        (12, 12.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "5 minutes", "-5s", "5x", "", True, None, "1m-2s"])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "per_minute"),
    [
        ("100/min", 100.0),
        ("5/s", 300.0),
        ("3000/h", 50.0),
        ("2 / second", 120.0),
        ("60/minute", 60.0),
        (30, 30.0),
    ],
)
def test_parse_rate(text: object, per_minute: float) -> None:
    assert parse_rate(text) == pytest.approx(per_minute)


@pytest.mark.parametrize("text", ["fast", "100", "100/day", "0/min", "/min", False])
def test_parse_rate_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_exit_on_error_prints_header_and_lines_and_exits_2() -> None:
    err = SettingsError(["a.b: must be >= 1", "c: is required"], path=Path("/etc/storesync/settings.toml"))
    out = io.StringIO()
    with pytest.raises(SystemExit) as info:
        exit_on_error(err, stream=out, locale="en")
    assert info.value.code == 2
    assert out.getvalue().splitlines() == [
        "/etc/storesync/settings.toml: 2 problem(s) in the settings:",
        "  a.b: must be >= 1",
        "  c: is required",
    ]
    out = io.StringIO()
    with pytest.raises(SystemExit):
        exit_on_error(err, stream=out, locale="pt_BR")
    assert out.getvalue().startswith("/etc/storesync/settings.toml: 2 problema(s) nas configurações:")


def test_a_flow_may_have_its_own_rate_limit(tmp_path: Path, registry: SecretRegistry) -> None:
    path = write(tmp_path, CHANNEL + '[channels.loja.flows.products]\nrate_limit = "20/min"\n')
    settings = load(path, registry)
    config = channel_config("loja", settings.channels["loja"], settings)
    assert config.flows[FlowName.PRODUCTS].rate_limit == 20.0
    assert config.flows[FlowName.ORDERS].rate_limit is None  # none unless asked for
    write(tmp_path, CHANNEL + '[channels.loja.flows.products]\nrate_limit = "fast"\n')
    assert problems_of(path, registry) == [
        'channels.loja.flows.products.rate_limit: expected like "100/min", "5/s" or "3000/h", got "fast"'
    ]


def test_channel_holds_stock_in_defaults_to_none_and_reaches_the_flows(
    tmp_path: Path, registry: SecretRegistry
) -> None:
    path = write(tmp_path, CHANNEL)
    settings = load(path, registry)
    assert channel_config("loja", settings.channels["loja"], settings).channel_holds_stock_in == frozenset()
    write(tmp_path, CHANNEL + 'channel_holds_stock_in = ["aguardando_pagamento", 3]\n')
    settings = load(path, registry)
    config = channel_config("loja", settings.channels["loja"], settings)
    assert config.channel_holds_stock_in == frozenset({"aguardando_pagamento", "3"})
    write(tmp_path, CHANNEL + 'channel_holds_stock_in = ["pago", ""]\n')
    assert problems_of(path, registry) == ["channels.loja.channel_holds_stock_in[1]: must not be empty"]


def test_order_audit_defaults_to_daily_and_a_channel_may_change_or_stop_it(
    tmp_path: Path, registry: SecretRegistry
) -> None:

    path = write(tmp_path, CHANNEL)
    settings = load(path, registry)
    config = channel_config("loja", settings.channels["loja"], settings)
    assert (config.order_audit_interval, config.order_audit_window) == (86400.0, 93600.0)

    write(tmp_path, '[defaults]\norder_audit_window = "50h"\n' + CHANNEL + 'order_audit_interval = "0"\n')
    settings = load(path, registry)
    config = channel_config("loja", settings.channels["loja"], settings)
    assert (config.order_audit_interval, config.order_audit_window) == (0.0, 180000.0)

    write(tmp_path, CHANNEL + 'order_audit_window = "0"\n')
    assert problems_of(path, registry) == ["channels.loja.order_audit_window: must be > 0"]


def test_a_carrier_channel_takes_no_pushes_and_runs_only_tracking(
    tmp_path: Path, registry: SecretRegistry
) -> None:
    carrier = """
    [channels.correios]
    kind = "correios"
    base_url = "http://127.0.0.1:8766"
    client_id = "env:K1"
    client_secret = "env:K2"
    cartao_postagem = "0067599079"
    carriers = ["correios_pac", "correios_sedex"]
    """
    path = write(tmp_path, CHANNEL + carrier)
    settings = load(path, registry)
    correios, loja = settings.channels["correios"], settings.channels["loja"]
    assert not correios.receives_pushes() and loja.receives_pushes()
    assert set(correios.active_flows()) == {FlowName.TRACKING}
    config = channel_config("correios", correios, settings)
    assert config.tracked_carriers == ("correios_pac", "correios_sedex")
    assert config.delivered_status == "delivered"
    assert settings.channel_context("correios").options["cartao_postagem"] == "0067599079"

    write(tmp_path, CHANNEL + carrier + "[channels.correios.flows.stock]\nenabled = true\n")
    [problem] = problems_of(path, registry)
    assert problem.startswith("channels.correios.flows: the correios connector does not support stock")
