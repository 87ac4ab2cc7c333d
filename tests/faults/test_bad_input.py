"""Bad input: what a channel (or an operator) sends that cannot be taken as it is.

One page of orders mixes good orders with an invalid CPF, an invalid CNPJ, an item whose SKU no
product has (``create_missing_products = false``), negative, non-numeric and fractional quantities,
a status nobody knows, and an order the page lists twice. The test asserts that

* every good order of that page is imported, once, with its items once (the repeated one too);
* every bad order is parked in ``import_failures`` with a message that names the field and the value;
* fixing the cause (the channel corrects the order, the ERP creates the product) lets each parked
  order in on a later run, with no operator action: no retry, no dismiss;

and that a settings file with wrong types exits 2 naming every key path, without a traceback and
without echoing the secrets written in it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.harness import (
    DaemonProc,
    Setup,
    erp_connect,
    eventually,
    query,
    running_setup,
    short_tmpdir,
)

pytestmark = [pytest.mark.e2e]

CHANNEL = "loja"
Edit = Callable[[dict[str, Any]], None]


def set_document(cpf: str | None, cnpj: str | None) -> Edit:
    def edit(detail: dict[str, Any]) -> None:
        for holder in (detail["cliente"], detail["endereco_entrega"]):
            holder["cpf"], holder["cnpj"] = cpf, cnpj

    return edit


def set_quantity(value: str) -> Edit:
    def edit(detail: dict[str, Any]) -> None:
        detail["itens"][0]["quantidade"] = value

    return edit


def set_unknown_sku(detail: dict[str, Any]) -> None:
    detail["itens"][0]["sku"] = "SKU-NOVO-77"
    detail["itens"][0]["produto"] = "/api/v1/produto/987654"  # no binding either


def set_unknown_status(detail: dict[str, Any]) -> None:
    detail["situacao"] = {**detail["situacao"], "id": 4242, "codigo": "pedido_teletransportado"}


BAD: dict[str, tuple[Edit, tuple[str, ...]]] = {
    "invalid CPF": (set_document("111.111.111-11", None), ("CPF", "111.111.111-11")),
    "invalid CNPJ": (set_document(None, "12.345.678/0001-00"), ("CNPJ", "12.345.678/0001-00")),
    "unknown SKU": (set_unknown_sku, ("SKU-NOVO-77", "create_missing_products")),
    "negative quantity": (set_quantity("-2.00"), ("itens[0].quantidade", "-2.00")),
    "non-numeric quantity": (set_quantity("dois"), ("itens[0].quantidade", "dois")),
    "fractional quantity": (set_quantity("1.50"), ("quantity 1.50", "whole")),
    "unknown status": (set_unknown_status, ("situacao", "pedido_teletransportado")),
}


def open_failures(setup: Setup) -> dict[str, str]:
    rows = query(
        setup.state_db,
        "SELECT remote_id, error FROM import_failures WHERE channel = ? AND state = 'open'",
        (CHANNEL,),
    )
    return {str(remote): str(error) for remote, error in rows}


def imported(setup: Setup) -> dict[str, int]:
    """remote id -> how many rows carry it (always 1 if the import is idempotent)."""
    rows = query(
        setup.state_db,
        "SELECT remote_id, COUNT(*) FROM orders WHERE channel = ? GROUP BY remote_id",
        (CHANNEL,),
    )
    return {str(remote): int(count) for remote, count in rows}


def items_of(setup: Setup, remote_id: str) -> list[tuple[str, int]]:
    rows = query(
        setup.state_db,
        "SELECT oi.sku, oi.quantity FROM order_items oi JOIN orders o ON o.id = oi.order_id "
        "WHERE o.channel = ? AND o.remote_id = ? ORDER BY oi.id",
        (CHANNEL, remote_id),
    )
    return [(str(sku), int(qty)) for sku, qty in rows]


def channel_items(setup: Setup, numero: int) -> list[tuple[str, int]]:
    order = setup.sims[CHANNEL].orders[numero]
    return [(str(i["sku"]), int(i["quantidade"])) for i in order["itens"]]


async def test_bad_orders_are_parked_with_clear_errors_and_get_in_once_fixed() -> None:
    async with running_setup(
        [CHANNEL],
        sim_options={CHANNEL: {"orders": 0}},
        flows={CHANNEL: {"orders": {"interval": "1s", "batch_size": 50}}},
    ) as setup:
        sim = setup.sims[CHANNEL]
        # All in one page, created with no await in between: the daemon sees them together.
        good = sim.create_orders(3, status="pedido_pago")
        bad = dict(zip(BAD, sim.create_orders(len(BAD), status="pedido_pago"), strict=True))
        for name, numero in bad.items():
            sim.tamper[numero] = BAD[name][0]
        sim.repeat_in_page.add(good[1])
        wanted_good = {str(n) for n in good}
        wanted_bad = {str(n) for n in bad.values()}

        await eventually(
            lambda: set(imported(setup)) == wanted_good and set(open_failures(setup)) == wanted_bad,
            timeout=30,
            what="the good orders imported and the bad ones parked",
        )
        assert all(count == 1 for count in imported(setup).values()), imported(setup)
        for numero in good:
            assert items_of(setup, str(numero)) == channel_items(setup, numero)
        failures = open_failures(setup)
        for name, numero in bad.items():
            message = failures[str(numero)]
            for word in BAD[name][1]:
                assert word in message, f"{name}: {word!r} not in {message!r}"

        # Fix every cause at its source; the daemon's own later runs do the rest.
        sim.tamper.clear()
        sim.repeat_in_page.clear()
        with contextlib.closing(erp_connect(setup.state_db)) as erp:
            erp.execute("INSERT INTO products (sku, name) VALUES ('SKU-NOVO-77', 'Produto novo')")
        sim.orders[bad["unknown SKU"]]["itens"][0]["sku"] = "SKU-NOVO-77"
        all_wanted = wanted_good | wanted_bad
        await eventually(
            lambda: set(imported(setup)) == all_wanted and not open_failures(setup),
            timeout=40,
            what="the parked orders to get in once their causes were fixed",
        )
        assert all(count == 1 for count in imported(setup).values())
        resolved = query(
            setup.state_db,
            "SELECT COUNT(*) FROM import_failures WHERE channel = ? AND state = 'resolved'",
            (CHANNEL,),
        )
        assert resolved[0][0] == len(BAD)
        for numero in [*good, *bad.values()]:
            assert items_of(setup, str(numero)) == channel_items(setup, numero)
        status = await setup.daemon.channel_status(CHANNEL)
        assert status.failing_since is None and not status.last_error and setup.daemon.running


async def test_settings_with_wrong_types_exit_2_naming_every_key_path() -> None:
    secret = "inline-secret-do-not-print-31337"
    text = f"""
[daemon]
state_dir = "var"
log_retention_days = "thirty"
watchdog = "maybe"

[defaults]
max_retries = -1

[channels.loja]
kind = "lojaintegrada"
base_url = "http://127.0.0.1:9"
api_key = "{secret}"
app_key = "{secret}"
rate_limit = true
stock_buffer = "lots"
order_statuses = 42

[channels.loja.flows.orders]
batch_size = "fifty"
interval = "soon"
"""
    with short_tmpdir() as workdir:
        config = workdir / "settings.toml"
        config.write_text(text, encoding="utf-8")
        proc = DaemonProc(config, {}, workdir)
        code = await proc.run_to_exit()
        out = proc.output()
    assert code == 2, out
    assert "Traceback" not in out
    assert secret not in out
    for path in (
        "daemon.log_retention_days",
        "daemon.watchdog",
        "defaults.max_retries",
        "channels.loja.rate_limit",
        "channels.loja.stock_buffer",
        "channels.loja.order_statuses",
        "channels.loja.flows.orders.batch_size",
        "channels.loja.flows.orders.interval",
    ):
        assert path in out, f"{path} not named in:\n{out}"
