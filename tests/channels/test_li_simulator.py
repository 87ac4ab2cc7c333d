"""The Loja Integrada simulator on loopback, alone and with the real connector against it."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from channels.lojaintegrada import LojaIntegradaChannel
from channels.models import (
    InvoiceData,
    OrderUpdatePush,
    PricePush,
    ProductPush,
    RemoteOrder,
    StockPush,
    TrackingData,
)
from channels.simulators.lojaintegrada import LojaIntegradaSimulator, make_cnpj, make_cpf, nfe_key_is_valid
from daemon.clock import FakeClock
from tests.channels.channel_support import API_KEY, APP_KEY, AUTH_OK, ClientPool, make_context, running_sim


def cpf_ok(doc: str) -> bool:
    """Independent CPF check (not the simulator's code)."""
    if not re.fullmatch(r"\d{11}", doc) or len(set(doc)) == 1:
        return False
    nums = [int(c) for c in doc]
    for size in (9, 10):
        total = sum(n * w for n, w in zip(nums[:size], range(size + 1, 1, -1), strict=True))
        if nums[size] != (total * 10 % 11) % 10:
            return False
    return True


def cnpj_ok(doc: str) -> bool:
    if not re.fullmatch(r"\d{14}", doc):
        return False
    nums = [int(c) for c in doc]
    weights = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    for size in (12, 13):
        total = sum(n * w for n, w in zip(nums[:size], weights[13 - size :], strict=True))
        digit = 0 if total % 11 < 2 else 11 - total % 11
        if nums[size] != digit:
            return False
    return True


BRT = timezone(timedelta(hours=-3))


def brasilia(moment: datetime) -> str:
    return moment.astimezone(BRT).strftime("%Y-%m-%dT%H:%M:%S")


def nfe_key(seed: int) -> str:
    rng = random.Random(seed)
    body = "35" + "".join(str(rng.randrange(10)) for _ in range(41))
    total = sum(int(d) * (2 + i % 8) for i, d in enumerate(reversed(body)))
    check = 11 - total % 11
    return body + str(0 if check >= 10 else check)


@pytest.fixture
async def sim() -> AsyncIterator[LojaIntegradaSimulator]:
    async with running_sim() as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@pytest.fixture
async def pool() -> AsyncIterator[ClientPool]:
    clients = ClientPool()
    yield clients
    await clients.aclose()


def connector(sim: LojaIntegradaSimulator, pool: ClientPool, **options: Any) -> LojaIntegradaChannel:
    context = make_context(sim.url, options=options)
    return LojaIntegradaChannel(context, pool(context))


async def get(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.get(url, **kwargs) as resp:
        raw = await resp.read()
        is_json = raw and resp.content_type == "application/json"
        return resp.status, (json.loads(raw) if is_json else raw)


# --- the simulator on its own -------------------------------------------------------------------------


def test_generated_documents_have_valid_check_digits() -> None:
    rng = random.Random(5)
    assert all(cpf_ok(make_cpf(rng)) for _ in range(300))
    assert all(cnpj_ok(make_cnpj(rng)) for _ in range(300))
    assert cpf_ok("52998224725") and not cpf_ok("52998224726")
    assert nfe_key_is_valid(nfe_key(1)) and not nfe_key_is_valid(nfe_key(1)[:-1] + "x")


def test_seeded_data_is_deterministic_and_consistent() -> None:
    clock = FakeClock()
    one = LojaIntegradaSimulator("k", "a", seed=3, orders=15, products=6, clock=clock)
    two = LojaIntegradaSimulator("k", "a", seed=3, orders=15, products=6, clock=clock)
    assert one.state() == two.state()
    skus = {p["sku"] for p in one.state()["products"]}
    for numero in one.orders:
        detail = one._order_detail(one.orders[numero])
        cliente = detail["cliente"]
        assert cpf_ok(cliente["cpf"]) if cliente["cpf"] else cnpj_ok(cliente["cnpj"])
        assert {item["sku"] for item in detail["itens"]} <= skus
        assert re.fullmatch(r"\d+\.\d{2}", detail["valor_total"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", detail["data_modificacao"])
        assert detail["situacao"]["codigo"] in {
            "pedido_pago",
            "aguardando_pagamento",
            "pedido_efetuado",
            "pedido_em_separacao",
            "pedido_enviado",
            "pedido_cancelado",
            "faturado",
        }


async def test_auth_header_legacy_params_and_personal_token(http: aiohttp.ClientSession) -> None:
    async with running_sim(personal_token="ptok") as sim:
        assert (await get(http, f"{sim.url}/v1/produto"))[0] == 401
        bad = {"Authorization": f"chave_api {API_KEY} aplicacao wrong"}
        assert (await get(http, f"{sim.url}/v1/produto", headers=bad))[0] == 401
        assert (await get(http, f"{sim.url}/v1/produto", headers=AUTH_OK))[0] == 200
        legacy = {"chave_api": API_KEY, "chave_aplicacao": APP_KEY, "format": "json"}
        status, body = await get(http, f"{sim.url}/api/v1/produto", params=legacy)
        assert status == 200 and "chave_api" not in (body["meta"]["next"] or "")
        assert (await get(http, f"{sim.url}/v1/produto", headers={"Authorization": "Basic ptok"}))[0] == 200
        assert (await get(http, f"{sim.url}/__sim__/state"))[0] == 200  # admin: no auth


async def test_tastypie_paging_on_both_prefixes(
    sim: LojaIntegradaSimulator, http: aiohttp.ClientSession
) -> None:
    status, body = await get(http, f"{sim.url}/v1/pedido/search/", headers=AUTH_OK, params={"limit": 5})
    assert status == 200
    assert body["meta"] == {
        "limit": 5,
        "offset": 0,
        "total_count": 12,
        "next": "/api/v1/pedido/search/?limit=5&offset=5",
        "previous": None,
    }
    seen = [o["numero"] for o in body["objects"]]
    nxt = body["meta"]["next"]
    while nxt:
        status, body = await get(http, sim.url + nxt, headers=AUTH_OK)
        seen += [o["numero"] for o in body["objects"]]
        nxt = body["meta"]["next"]
    assert sorted(seen) == sorted(sim.orders) and len(seen) == 12
    assert isinstance(body["objects"][0]["cliente"], str)  # summaries carry the URI only
    status, body = await get(http, f"{sim.url}/v1/pedido/search", headers=AUTH_OK, params={"limit": 500})
    assert body["meta"]["limit"] == 50  # the spec's maximum


async def test_since_atualizado_filter_and_admin_orders(http: aiohttp.ClientSession) -> None:
    clock = FakeClock(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    async with running_sim(clock=clock) as sim:
        clock.advance(3600)
        async with http.post(
            f"{sim.url}/__sim__/orders",
            json={
                "count": 2,
                "items": [{"sku": "SKU-0001", "quantidade": 3}],
                "status": "aguardando_pagamento",
            },
        ) as resp:
            assert resp.status == 201
            numeros = (await resp.json())["numeros"]
        params = {"since_atualizado": brasilia(clock.now() - timedelta(minutes=30))}
        _, body = await get(http, f"{sim.url}/v1/pedido/search", headers=AUTH_OK, params=params)
        assert [o["numero"] for o in body["objects"]] == numeros
        assert body["objects"][0]["situacao"]["codigo"] == "aguardando_pagamento"
        _, detail = await get(http, f"{sim.url}/v1/pedido/{numeros[0]}", headers=AUTH_OK)
        assert detail["itens"][0]["sku"] == "SKU-0001" and detail["itens"][0]["quantidade"] == "3.00"
        # A status change moves the order into a later window.
        clock.advance(600)
        async with http.post(
            f"{sim.url}/__sim__/orders/{numeros[0]}/status", json={"codigo": "pedido_pago"}
        ) as r:
            assert r.status == 200
        params = {"since_atualizado": brasilia(clock.now() - timedelta(minutes=5))}
        _, body = await get(http, f"{sim.url}/v1/pedido/search", headers=AUTH_OK, params=params)
        assert [(o["numero"], o["situacao"]["codigo"]) for o in body["objects"]] == [
            (numeros[0], "pedido_pago")
        ]
        async with http.post(f"{sim.url}/__sim__/orders", json={"items": [{"sku": "NOPE"}]}) as r:
            assert r.status == 400 and "NOPE" in (await r.json())["error_message"]


async def test_rate_limit_sliding_window(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with running_sim(clock=clock, rate_limit_per_minute=5, send_retry_after=True) as sim:
        for _ in range(5):
            assert (await get(http, f"{sim.url}/v1/produto", headers=AUTH_OK))[0] == 200
            clock.advance(10)
        async with http.get(f"{sim.url}/v1/produto", headers=AUTH_OK) as resp:
            assert resp.status == 429
            assert (await resp.json())["code"] == 633
            assert resp.headers["Retry-After"] == "10"  # the first request leaves the window at t=60
        assert (await get(http, f"{sim.url}/__sim__/state"))[0] == 200  # admin is never limited
        clock.advance(10)
        assert (await get(http, f"{sim.url}/v1/produto", headers=AUTH_OK))[0] == 200
        assert sim.state()["counters"]["rate_limited"] == 1
        assert sim.state()["counters"]["requests"] == 7


async def test_faults_over_http_respect_path_prefix(
    sim: LojaIntegradaSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{sim.url}/__sim__/faults", json={"kind": "5xx", "count": 1, "paths": "/v1/produto"}
    ) as r:
        assert r.status == 201
    assert (await get(http, f"{sim.url}/v1/pedido/search", headers=AUTH_OK))[0] == 200
    assert (await get(http, f"{sim.url}/api/v1/produto/1001", headers=AUTH_OK))[0] == 503
    assert (await get(http, f"{sim.url}/v1/produto/1001", headers=AUTH_OK))[0] == 200
    async with http.post(f"{sim.url}/__sim__/faults", json={"kind": "429", "retry_after": 3}) as r:
        assert r.status == 201
    async with http.get(f"{sim.url}/v1/produto", headers=AUTH_OK) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "3"
    async with http.post(f"{sim.url}/__sim__/faults", json={"kind": "meteor"}) as r:
        assert r.status == 400
    async with http.post(f"{sim.url}/__sim__/faults", json={"kind": "401", "count": 3}) as r:
        assert r.status == 201
    async with http.delete(f"{sim.url}/__sim__/faults") as r:
        assert r.status == 200
    assert (await get(http, f"{sim.url}/v1/produto", headers=AUTH_OK))[0] == 200


async def test_latency_option(http: aiohttp.ClientSession) -> None:
    async with running_sim(latency_ms=150) as sim:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await get(http, f"{sim.url}/v1/produto", headers=AUTH_OK)
        assert loop.time() - started >= 0.14


# --- the connector against the simulator ------------------------------------------------------------------


async def test_connector_reads_every_order_page_by_page(
    sim: LojaIntegradaSimulator, pool: ClientPool
) -> None:
    li = connector(sim, pool)
    orders: list[RemoteOrder] = []
    token: str | None = None
    pages = 0
    while True:
        page = await li.fetch_orders(since=None, page=token, limit=5)
        orders += page.orders
        assert page.rejected == ()
        pages += 1
        token = page.next_page
        if token is None:
            break
    assert pages == 3
    assert sorted(int(o.remote_id) for o in orders) == sorted(sim.orders)
    for order in orders:
        assert order.customer.document and (
            cpf_ok(order.customer.document) or cnpj_ok(order.customer.document)
        )
        assert order.total == sum(i.quantity * i.unit_price for i in order.items) + order.shipping_cost
        assert order.paid == (
            order.status in {"pedido_pago", "pedido_em_separacao", "pedido_enviado", "faturado"}
        )
        assert order.shipments[0].remote_id is not None
    counts = sim.state()["counters"]["by_route"]
    assert counts["GET /v1/pedido/search"] == 3 and counts["GET /v1/pedido/{numero}"] == 12  # 1 + N


async def test_connector_follows_cliente_uris(pool: ClientPool) -> None:
    async with running_sim(cliente_as_uri=True, orders=2) as sim:
        page = await connector(sim, pool).fetch_orders(since=None, page=None, limit=50)
        assert len(page.orders) == 2 and all(o.customer.name for o in page.orders)
        assert sim.state()["counters"]["by_route"]["GET /v1/cliente/{ident}"] == 2


async def test_connector_pushes_stock_prices_and_products(
    sim: LojaIntegradaSimulator, pool: ClientPool
) -> None:
    li = connector(sim, pool)
    stock = await li.push_stock(
        [
            StockPush(local_id=1, sku="SKU-0001", quantity=42),
            StockPush(local_id=2, sku="SKU-0002", remote_id="1002", quantity=0, manage_stock=True),
            StockPush(local_id=3, sku="MISSING", quantity=1),
        ]
    )
    assert [(r.ok, r.remote_id, r.retryable) for r in stock] == [
        (True, "1001", True),
        (True, "1002", True),
        (
            False,
            None,
            False,
        ),
    ]
    history = sim.stock_history("SKU-0001")
    assert [h["quantidade"] for h in history] == [42] and history[0]["received_at"]
    prices = await li.push_prices(
        [PricePush(local_id=1, sku="SKU-0003", list_price=Decimal("129.90"), sale_price=Decimal("99.90"))]
    )
    assert prices[0].ok
    product = sim.product_by_sku("SKU-0003")
    assert product is not None
    assert (product["preco_cheio"], product["preco_promocional"]) == ("129.90", "99.90")
    created = await li.push_products(
        [
            ProductPush(local_id=70, sku="NOVO-1", name="Produto novo", weight_kg=Decimal("1.5")),
            ProductPush(local_id=71, sku="SKU-0004", name="Já existe"),  # duplicate: linked, not duplicated
        ]
    )
    assert created[0].ok and created[1].ok and created[1].remote_id == "1004"
    assert sum(1 for p in sim.state()["products"] if p["sku"] == "SKU-0004") == 1
    new = sim.product_by_sku("NOVO-1")
    assert new is not None and new["id_externo"] == 70 and new["peso"] == "1.5"
    updated = await li.push_products(
        [ProductPush(local_id=72, sku="SKU-0005", name="Renomeado", remote_id="1005", active=False)]
    )
    assert updated[0].ok
    after = sim.product_by_sku("SKU-0005")
    assert after is not None
    assert (after["nome"], after["ativo"], after["ncm"]) == ("Renomeado", False, "61091000")  # merge kept ncm
    assert await li.lookup_product_ids(["SKU-0006", "NOPE"]) == {"SKU-0006": "1006"}


async def test_connector_pushes_order_updates(sim: LojaIntegradaSimulator, pool: ClientPool) -> None:
    li = connector(sim, pool)
    numero = min(sim.orders)
    invoice = InvoiceData(
        number="123",
        series="1",
        access_key=nfe_key(9),
        issued_at=datetime(2026, 11, 20, 15, 0, tzinfo=UTC),
        danfe_url="https://example.com/danfe.pdf",
    )
    update = OrderUpdatePush(
        local_id=5,
        remote_id=str(numero),
        status="pedido_enviado",
        invoice=invoice,
        tracking=(TrackingData(tracking_code="BR123456789BR"),),
    )
    [result] = await li.push_order_updates([update])
    assert result.ok, result.error
    order = next(o for o in sim.state()["orders"] if o["numero"] == numero)
    assert order["situacao"] == "pedido_enviado"
    assert order["envios"][0]["objeto"] == "BR123456789BR"
    assert order["nf"]["access_key"] == invoice.access_key and order["nf"]["date"] == "2026-11-20 12:00:00"
    # Sending the same update again (a retry after a crash) succeeds: the NF POST falls back to PUT.
    [again] = await li.push_order_updates([update])
    assert again.ok, again.error
    bad = update.model_copy(update={"invoice": invoice.model_copy(update={"access_key": "1" * 44})})
    [refused] = await li.push_order_updates([bad])
    assert not refused.ok and not refused.retryable and "access_key" in (refused.error or "")
    [unknown] = await li.push_order_updates(
        [OrderUpdatePush(local_id=6, remote_id=str(numero), status="nope")]
    )
    assert not unknown.ok and not unknown.retryable and "nope" in (unknown.error or "")


async def test_connector_survives_faults_and_rate_limit(pool: ClientPool) -> None:
    async with running_sim(rate_limit_per_minute=5, send_retry_after=True, orders=2) as sim:
        li = connector(sim, pool, max_retry_after_seconds=0.5)
        sim.inject_fault("5xx", count=1)
        sim.inject_fault("malformed_json", count=1)
        page = await li.fetch_orders(since=None, page=None, limit=50)
        assert len(page.orders) == 2  # 1 + 2 calls and 2 retried faults use up the 5-a-minute budget
        results = await li.push_stock([StockPush(local_id=1, sku="SKU-0001", remote_id="1001", quantity=1)])
        assert not results[0].ok and results[0].retryable and "429" in (results[0].error or "")
        assert API_KEY not in (results[0].error or "")


async def test_simulator_command_line(tmp_path: Any) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "channels.simulators.lojaintegrada",
        "--port",
        "0",
        "--orders",
        "3",
        "--products",
        "4",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url is not None, line
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            status, state = await get(http, f"{url.group(0)}/__sim__/state")
            assert status == 200 and len(state["orders"]) == 3 and len(state["products"]) == 4
            headers = {"Authorization": "chave_api demo-api-key aplicacao demo-app-key"}
            assert (await get(http, f"{url.group(0)}/v1/pedido/search", headers=headers))[0] == 200
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
