"""LojaIntegradaChannel against aioresponses: parsing, per-item failures, linking, rejects."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aioresponses import aioresponses
from pydantic import SecretStr

from channels.base import AuthError
from channels.lojaintegrada import DEFAULT_PAID_STATUSES, LojaIntegradaChannel
from channels.models import PricePush, ProductPush, StockPush
from tests.channels.channel_support import API_KEY, APP_KEY, MOCK, ClientPool, make_context

DETAIL: dict[str, Any] = {
    "numero": 1234,
    "resource_uri": "/api/v1/pedido/1234",
    "id_externo": None,
    "data_criacao": "2026-11-20T10:15:00.123456",
    "data_modificacao": "2026-11-20T11:02:41.654321",
    "valor_subtotal": "199.80",
    "valor_envio": "25.00",
    "valor_desconto": "0.00",
    "valor_total": "224.80",
    "situacao": {"id": 4, "codigo": "pedido_pago", "aprovado": True, "cancelado": False},
    "cliente": {
        "id": 555,
        "nome": "Maria Teste",
        "email": "maria@example.com",
        "cpf": "52998224725",
        "cnpj": None,
        "telefone_celular": "11999990000",
        "resource_uri": "/api/v1/cliente/555",
    },
    "endereco_entrega": {
        "tipo": "PF",
        "nome": "Maria Teste",
        "endereco": "Rua Exemplo",
        "numero": "100",
        "complemento": "Apto 1",
        "bairro": "Centro",
        "cidade": "São Paulo",
        "estado": "SP",
        "cep": "01001000",
        "pais": "Brasil",
    },
    "itens": [
        {
            "id": 9001,
            "nome": "Camiseta Azul M",
            "sku": "CAM-AZ-M",
            "quantidade": "2.00",
            "preco_cheio": "119.90",
            "preco_venda": "99.90",
            "produto": "/api/v1/produto/777",
        }
    ],
    "envios": [
        {
            "id": 3001,
            "objeto": None,
            "valor": "25.00",
            "forma_envio": {"id": 12, "code": "PAC", "nome": "Correios"},
        }
    ],
    "pagamentos": [
        {
            "id": 4001,
            "pagamento_tipo": "pix",
            "valor": "224.80",
            "valor_pago": "224.80",
            "forma_pagamento": {"id": 7, "codigo": "pix", "nome": "Pix"},
            "parcelamento": {"numero_parcelas": 1, "valor_parcela": 224.8},
        }
    ],
}


def page(
    objects: list[dict[str, Any]], *, next_uri: str | None = None, total: int | None = None
) -> dict[str, Any]:
    meta = {
        "limit": 50,
        "offset": 0,
        "total_count": total or len(objects),
        "next": next_uri,
        "previous": None,
    }
    return {"meta": meta, "objects": objects}


def json_body(call: Any) -> Any:
    """The JSON a call sent: the HTTP client encodes it once per request and sends the bytes."""
    assert call.kwargs["headers"]["Content-Type"] == "application/json"
    return json.loads(call.kwargs["data"])


def sent(mocked: aioresponses, method: str, path: str) -> list[Any]:
    """The RequestCalls made to ``method`` + a URL whose path is ``path``."""
    return [
        call
        for (m, url), calls in mocked.requests.items()
        if m == method and url.path == path
        for call in calls
    ]


def queries(mocked: aioresponses, method: str, path: str) -> list[dict[str, str]]:
    """The query strings sent to ``method`` + ``path``, one per call (the client puts ``params`` into
    the URL before the engine sees it)."""
    return [
        dict(url.query)
        for (m, url), calls in mocked.requests.items()
        if m == method and url.path == path
        for _ in calls
    ]


def url_of(path: str) -> re.Pattern[str]:
    return re.compile(re.escape(MOCK + path) + r"(\?.*)?$")


@pytest.fixture
async def pool() -> AsyncIterator[ClientPool]:
    clients = ClientPool()
    yield clients
    await clients.aclose()


def channel(pool: ClientPool, **options: Any) -> LojaIntegradaChannel:
    context = make_context(MOCK, options=options, max_retries=1)
    return LojaIntegradaChannel(context, pool(context))


async def test_fetch_orders_parses_details_and_rejects_a_malformed_one(pool: ClientPool) -> None:
    li = channel(pool)
    broken = copy.deepcopy(DETAIL) | {"numero": 1235}
    broken["itens"][0]["quantidade"] = "dois"
    with aioresponses() as mocked:
        mocked.get(url_of("/v1/pedido/search"), payload=page([{"numero": 1234}, {"numero": 1235}]))
        mocked.get(url_of("/v1/pedido/1234"), payload=DETAIL)
        mocked.get(url_of("/v1/pedido/1235"), payload=broken)
        result = await li.fetch_orders(since=datetime(2026, 11, 20, 13, 0, tzinfo=UTC), page=None, limit=200)
        search = sent(mocked, "GET", "/v1/pedido/search")[0]
        [query] = queries(mocked, "GET", "/v1/pedido/search")
        headers = search.kwargs["headers"]
    assert query == {"limit": "50", "offset": "0", "since_atualizado": "2026-11-20T10:00:00"}
    assert headers["Authorization"] == f"chave_api {API_KEY} aplicacao {APP_KEY}"
    assert result.next_page is None
    [order] = result.orders
    assert (order.remote_id, order.number, order.status, order.paid) == ("1234", "1234", "pedido_pago", True)
    assert order.created_at == datetime(2026, 11, 20, 13, 15, 0, 123456, tzinfo=UTC)
    assert order.customer.document == "52998224725" and order.customer.remote_id == "555"
    assert order.customer.phone == "11999990000"
    [item] = order.items
    assert (item.sku, item.quantity, item.unit_price, item.remote_product_id) == (
        "CAM-AZ-M",
        Decimal("2.00"),
        Decimal("99.90"),
        "777",
    )
    assert order.shipments[0].remote_id == "3001" and order.shipments[0].carrier == "PAC"
    assert order.payments[0].method == "pix" and order.payments[0].amount == Decimal("224.80")
    assert (order.total, order.shipping_cost) == (Decimal("224.80"), Decimal("25.00"))
    assert order.shipping_address is not None and order.shipping_address.zip_code == "01001000"
    [rejected] = result.rejected
    assert rejected.remote_id == "1235"
    assert "itens[0].quantidade" in rejected.error and "dois" in rejected.error
    assert rejected.raw == broken


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("valor_total"), "valor_total"),
        (lambda d: d.update(data_criacao="ontem"), "data_criacao"),
        (lambda d: d.update(itens=[]), "itens"),
        (lambda d: d.update(cliente=None), "cliente"),
        (lambda d: d["situacao"].update(codigo=None, id=999), "situacao"),
        (lambda d: d["pagamentos"][0].update(valor_pago="x", valor="x"), "pagamentos[0].valor"),
    ],
)
async def test_malformed_fields_are_named(pool: ClientPool, mutate: Any, field: str) -> None:
    li = channel(pool)
    detail = copy.deepcopy(DETAIL)
    mutate(detail)
    with aioresponses() as mocked:
        mocked.get(url_of("/v1/pedido/search"), payload=page([{"numero": 1234}]))
        mocked.get(url_of("/v1/pedido/1234"), payload=detail)
        result = await li.fetch_orders(since=None, page=None, limit=10)
    assert result.orders == ()
    assert field in result.rejected[0].error


async def test_cliente_uri_is_followed_and_next_page_comes_from_meta(pool: ClientPool) -> None:
    li = channel(pool, paid_statuses=["faturado"])
    detail = copy.deepcopy(DETAIL)
    cliente = detail["cliente"]
    detail["cliente"] = "/api/v1/cliente/555"
    with aioresponses() as mocked:
        mocked.get(
            url_of("/v1/pedido/search"),
            payload=page([{"numero": 1234}], next_uri="/api/v1/pedido/search?limit=1&offset=1", total=3),
        )
        mocked.get(url_of("/v1/pedido/1234"), payload=detail)
        mocked.get(url_of("/api/v1/cliente/555"), payload=cliente)
        result = await li.fetch_orders(since=None, page=None, limit=1)
    assert result.next_page == "1"
    assert result.orders[0].customer.name == "Maria Teste"
    assert result.orders[0].paid is False  # the configured paid set wins


async def test_list_orders_asks_for_a_creation_window_and_reads_summaries_only(pool: ClientPool) -> None:
    li = channel(pool)
    situacao = {"codigo": "pedido_pago", "aprovado": True}
    objects: list[dict[str, Any]] = [
        {"numero": 1234, "data_criacao": "2026-11-20T10:15:00.123456", "situacao": situacao},
        {"numero": 1235, "data_criacao": "2026-11-19T08:00:00", "situacao": {"codigo": "pedido_cancelado"}},
        {"numero": 1236, "data_criacao": "2026-11-21T10:00:00", "situacao": situacao},  # after the window
        {"resource_uri": "/api/v1/pedido/"},  # no numero: counted, not fatal
    ]
    with aioresponses() as mocked:
        mocked.get(
            url_of("/v1/pedido/search"), payload=page(objects, next_uri="/api/v1/pedido/search?offset=50")
        )
        listed = await li.list_orders(
            created_from=datetime(2026, 11, 19, 3, 0, tzinfo=UTC),
            created_to=datetime(2026, 11, 21, 3, 0, tzinfo=UTC),
            page=None,
            limit=500,
        )
        [query] = queries(mocked, "GET", "/v1/pedido/search")
        details = [
            call for (m, url), calls in mocked.requests.items() if "/pedido/1" in url.path for call in calls
        ]
    assert query == {
        "limit": "50",
        "offset": "0",
        "since_criado": "2026-11-19T00:00:00",  # the platform's local time
        "until_criado": "2026-11-21T00:00:00",
    }
    assert not details  # one request a page: no detail reads
    assert [(s.remote_id, s.status, s.paid) for s in listed.summaries] == [
        ("1234", "pedido_pago", True),
        ("1235", "pedido_cancelado", False),
    ]
    assert listed.summaries[0].created_at == datetime(2026, 11, 20, 13, 15, 0, 123456, tzinfo=UTC)
    assert listed.unreadable == 1 and listed.next_page == "50"


def test_audit_window_params_must_be_two_names(pool: ClientPool) -> None:
    with pytest.raises(ValueError, match="audit_window_params"):
        channel(pool, audit_window_params=["since_criado"])


async def test_a_missing_order_detail_is_rejected_not_fatal(pool: ClientPool) -> None:
    li = channel(pool)
    with aioresponses() as mocked:
        mocked.get(url_of("/v1/pedido/search"), payload=page([{"numero": 1}, {"numero": 1234}]))
        mocked.get(url_of("/v1/pedido/1"), status=404, payload={"error_message": "Pedido não encontrado."})
        mocked.get(url_of("/v1/pedido/1234"), payload=DETAIL)
        result = await li.fetch_orders(since=None, page="0", limit=10)
    assert [o.remote_id for o in result.orders] == ["1234"]
    assert result.rejected[0].remote_id == "1" and "HTTP 404" in result.rejected[0].error


def test_default_paid_statuses_follow_the_table() -> None:
    assert "pedido_pago" in DEFAULT_PAID_STATUSES and "pedido_entregue" in DEFAULT_PAID_STATUSES
    assert "aguardando_pagamento" not in DEFAULT_PAID_STATUSES
    assert "pedido_cancelado" not in DEFAULT_PAID_STATUSES


async def test_personal_token_scheme(pool: ClientPool) -> None:
    context = make_context(
        MOCK, options={"auth_scheme": "personal_token"}, secrets={"token": SecretStr("tok-1")}
    )
    li = LojaIntegradaChannel(context, pool(context))
    with aioresponses() as mocked:
        mocked.get(url_of("/v1/produto"), payload=page([]))
        assert await li.lookup_product_ids(["A"]) == {}
        [call] = sent(mocked, "GET", "/v1/produto")
    assert call.kwargs["headers"]["Authorization"] == "Basic tok-1"


def test_bad_options_are_refused(pool: ClientPool) -> None:
    with pytest.raises(ValueError, match="auth_scheme"):
        channel(pool, auth_scheme="oauth")
    with pytest.raises(ValueError, match="remote_timezone"):
        channel(pool, remote_timezone="Brasília")


async def test_push_stock_is_per_item(pool: ClientPool) -> None:
    li = channel(pool)
    batch = [
        StockPush(local_id=1, sku="A", remote_id="10", quantity=5),
        StockPush(local_id=2, sku="B", quantity=0),  # unbound: looked up by SKU
        StockPush(local_id=3, sku="GHOST", quantity=1),  # not on the channel
        StockPush(local_id=4, sku="D", remote_id="40", quantity=-2),  # the platform refuses it
        StockPush(local_id=5, sku="E", remote_id="50", quantity=3),  # platform down for this one
    ]
    with aioresponses() as mocked:
        mocked.put(url_of("/v1/produto_estoque/10"), payload={"id": 1})
        mocked.get(url_of("/v1/produto"), payload=page([{"id": 20, "sku": "B"}]))
        mocked.get(url_of("/v1/produto"), payload=page([{"id": 99, "sku": "GHOST-2"}]))
        mocked.put(url_of("/v1/produto_estoque/20"), payload={"id": 2})
        mocked.put(
            url_of("/v1/produto_estoque/40"), status=400, payload={"error_message": "quantidade inválida"}
        )
        mocked.put(url_of("/v1/produto_estoque/50"), status=502, body="bad gateway", repeat=True)
        results = await channel_batch(li, batch)
        body = json_body(sent(mocked, "PUT", "/v1/produto_estoque/10")[0])
    assert body == {"gerenciado": True, "quantidade": 5, "situacao_em_estoque": 0, "situacao_sem_estoque": -1}
    by_id = {r.local_id: r for r in results}
    assert [r.local_id for r in results] == [1, 2, 3, 4, 5]
    assert by_id[1].ok and by_id[1].remote_id == "10"
    assert by_id[2].ok and by_id[2].remote_id == "20"
    assert not by_id[3].ok and not by_id[3].retryable and by_id[3].error == "SKU GHOST is not on the channel"
    assert not by_id[4].ok and not by_id[4].retryable and "quantidade inválida" in (by_id[4].error or "")
    assert not by_id[5].ok and by_id[5].retryable and "HTTP 502" in (by_id[5].error or "")


async def channel_batch(li: LojaIntegradaChannel, batch: list[StockPush]) -> list[Any]:
    li.concurrency = 1  # deterministic order of mocked lookups
    return await li.push_stock(batch)


async def test_auth_error_stops_the_batch(pool: ClientPool) -> None:
    li = channel(pool)
    with aioresponses() as mocked:
        mocked.put(url_of("/v1/produto_estoque/10"), status=401, body="")
        with pytest.raises(AuthError):
            await li.push_stock([StockPush(local_id=1, sku="A", remote_id="10", quantity=5)])


async def test_rate_limited_item_fails_fast_for_the_rest(pool: ClientPool) -> None:
    li = channel(pool, max_retry_after_seconds=1)
    li.concurrency = 1
    with aioresponses() as mocked:
        mocked.put(url_of("/v1/produto_estoque/10"), status=429, headers={"Retry-After": "120"}, payload={})
        results = await li.push_stock(
            [StockPush(local_id=i, sku=f"S{i}", remote_id="10", quantity=1) for i in range(3)]
        )
        assert len(sent(mocked, "PUT", "/v1/produto_estoque/10")) == 1
    assert all(not r.ok and r.retryable for r in results)
    assert results[1].error is not None and results[1].error.startswith("not attempted")


async def test_push_products_create_link_and_update(pool: ClientPool) -> None:
    li = channel(pool)
    li.concurrency = 1
    current = {
        "id": 30,
        "resource_uri": "/api/v1/produto/30",
        "sku": "OLD",
        "nome": "Old",
        "ncm": "61091000",
        "marca": "/api/v1/marca/3/",
        "id_externo": None,
        "preco_cheio": "10.00",
        "estoque_quantidade": 3,
        "data_modificacao": "2026-01-01T00:00:00",
    }
    batch = [
        ProductPush(local_id=1, sku="NEW", name="Novo", weight_kg=Decimal("0.250")),
        ProductPush(local_id=2, sku="DUP", name="Duplicado"),
        ProductPush(local_id=3, sku="UPD", name="Atualizado", description="<p>x</p>", remote_id="30"),
        ProductPush(local_id=4, sku="BAD", name=""),
    ]
    with aioresponses() as mocked:
        mocked.post(url_of("/v1/produto"), status=201, payload={"id": 11, "sku": "NEW"})
        mocked.post(url_of("/v1/produto"), status=400, payload={"error_message": "Erro de integridade: sku"})
        mocked.get(url_of("/v1/produto"), payload=page([{"id": 12, "sku": "DUP"}]))
        mocked.get(url_of("/v1/produto/30"), payload=current)
        mocked.put(url_of("/v1/produto/30"), payload={})
        mocked.post(url_of("/v1/produto"), status=400, payload={"error_message": "nome: obrigatório"})
        mocked.get(url_of("/v1/produto"), payload=page([]))
        results = await li.push_products(batch)
        create_body = json_body(sent(mocked, "POST", "/v1/produto")[0])
        put_body = json_body(sent(mocked, "PUT", "/v1/produto/30")[0])
    assert create_body == {
        "sku": "NEW",
        "nome": "Novo",
        "descricao_completa": "",
        "ativo": True,
        "peso": 0.25,
        "tipo": "normal",
        "id_externo": 1,
    }
    assert [(r.ok, r.remote_id) for r in results[:3]] == [(True, "11"), (True, "12"), (True, "30")]
    assert not results[3].ok and not results[3].retryable and "nome: obrigatório" in (results[3].error or "")
    # GET-merge-PUT: our fields win, the rest of the product is kept, read-only mirrors are dropped.
    assert put_body["sku"] == "UPD" and put_body["nome"] == "Atualizado"
    assert put_body["ncm"] == "61091000" and put_body["marca"] == "/api/v1/marca/3/"
    assert put_body["id_externo"] == 3
    assert not {"id", "resource_uri", "preco_cheio", "estoque_quantidade", "data_modificacao"} & set(put_body)


async def test_created_product_id_from_location_header(pool: ClientPool) -> None:
    li = channel(pool)
    with aioresponses() as mocked:
        mocked.post(url_of("/v1/produto"), status=201, body="", headers={"Location": "/api/v1/produto/77/"})
        [result] = await li.push_products([ProductPush(local_id=1, sku="N", name="N")])
    assert result.ok and result.remote_id == "77"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"cheio": 119.9, "custo": 40.0, "promocional": None}),
        (
            {"prices_as_strings": True, "promo_clear": "zero"},
            {"cheio": "119.90", "custo": "40.00", "promocional": "0"},
        ),
    ],
)
async def test_push_prices_body(pool: ClientPool, options: dict[str, Any], expected: dict[str, Any]) -> None:
    li = channel(pool, **options)
    item = PricePush(
        local_id=1, sku="A", remote_id="7", list_price=Decimal("119.90"), cost_price=Decimal("40.00")
    )
    with aioresponses() as mocked:
        mocked.put(url_of("/v1/produto_preco/7"), payload={})
        [result] = await li.push_prices([item])
        body = json_body(sent(mocked, "PUT", "/v1/produto_preco/7")[0])
    assert result.ok and body == expected


async def test_order_update_finds_the_envio_when_not_given(pool: ClientPool) -> None:
    from channels.models import OrderUpdatePush, TrackingData

    li = channel(pool)
    update = OrderUpdatePush(
        local_id=9, remote_id="1234", status="pedido_enviado", tracking=(TrackingData(tracking_code="BR123"),)
    )
    with aioresponses() as mocked:
        mocked.get(url_of("/v1/pedido/1234"), payload=DETAIL)
        mocked.put(url_of("/v1/pedido_envio/3001"), payload={})
        mocked.put(url_of("/v1/situacao/pedido/1234"), payload={})
        [result] = await li.push_order_updates([update])
        assert json_body(sent(mocked, "PUT", "/v1/pedido_envio/3001")[0]) == {"objeto": "BR123"}
        assert json_body(sent(mocked, "PUT", "/v1/situacao/pedido/1234")[0]) == {"codigo": "pedido_enviado"}
    assert result.ok and result.remote_id == "1234"
