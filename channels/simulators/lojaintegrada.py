"""A loopback Loja Integrada: a real aiohttp server speaking the API as shared/channels/lojaintegrada.md
describes it, so the connector, the demo and the end-to-end tests run without the real platform.

What it models: Tastypie lists (``meta`` + ``objects``) under ``/v1`` and ``/api/v1``; the auth header
(and the legacy query parameters); ``pedido/search`` with ``since_atualizado``; order details by
``numero``; decimal strings and naive Brasília (-03:00) datetimes; the status table; products, stock and
prices that store what is PUT; status, tracking and NF-e writes; the per-store limit (sliding 60 s
window, 429 with a code-633 body). Where the real platform is undocumented the simulator picks one
plausible behaviour (noted inline) - it is a test double, not a spec.

Test hooks, as Python methods and as HTTP endpoints under ``/__sim__/`` (no auth, no rate limit) so a
test in another process can drive it: fault injection, new orders, status changes, a state dump with
request counters, and a per-product history of received stock values for latency benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiDict

from channels.simulators._server import (
    ADMIN_PREFIX,
    SimulatorServer,
    serve_until_signal,
)
from channels.simulators._server import json_response as _json
from daemon.clock import SYSTEM_CLOCK, Clock

BRT = timezone(timedelta(hours=-3))
PREFIXES = ("/v1", "/api/v1")
CENTS = Decimal("0.01")

# codigo -> (id, nome, aprovado, cancelado, final), from the doc's table.
STATUS_TABLE: dict[str, tuple[int, str, bool, bool, bool]] = {
    "pedido_efetuado": (9, "Pedido Efetuado", False, False, False),
    "aguardando_pagamento": (2, "Aguardando pagamento", False, False, False),
    "pagamento_em_analise": (3, "Pagamento em análise", False, False, False),
    "pedido_pago": (4, "Pedido Pago", True, False, False),
    "pagamento_em_disputa": (6, "Pagamento em disputa", True, False, False),
    "pedido_chargeback": (16, "Pedido com chargeback", True, False, True),
    "pagamento_devolvido": (7, "Pagamento devolvido", False, True, True),
    "pedido_cancelado": (8, "Pedido Cancelado", False, True, True),
    "cancelamento_solicitado": (1019, "Cancelamento solicitado", False, True, False),
    "faturado": (1018, "Faturado", True, False, False),
    "em_producao": (17, "Em produção", True, False, False),
    "pedido_em_separacao": (15, "Pedido em separação", True, False, False),
    "pedido_enviado": (11, "Pedido Enviado", True, False, True),
    "pronto_para_retirada": (13, "Pronto para retirada", True, False, True),
    "pedido_entregue": (14, "Pedido entregue", True, False, True),
}
HOLDING_STATUSES = frozenset({"aguardando_pagamento", "pagamento_em_analise"})
"""Orders in these statuses hold stock on the platform's side (help 912137, [C-notes]). That the
storefront then sells ``quantidade - quantidade_reservada`` is inferred ([I]); the simulator does so,
which is what the daemon's ``channel_holds_stock_in`` setting exists for."""
_SEED_STATUSES = (
    ["pedido_pago"] * 5
    + ["aguardando_pagamento"] * 3
    + ["pedido_efetuado", "pedido_em_separacao", "pedido_enviado", "pedido_cancelado", "faturado"]
)

_FIRST = ["Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela", "João"]
_LAST = ["Silva", "Souza", "Oliveira", "Santos", "Pereira", "Costa", "Rodrigues", "Almeida", "Lima", "Gomes"]
_COMPANY = ["Comércio", "Distribuidora", "Mercado", "Papelaria", "Atacado"]
_PRODUCT = ["Camiseta", "Caneca", "Boné", "Mochila", "Caderno", "Garrafa", "Meia", "Chaveiro", "Agenda"]
_VARIANT = ["Azul", "Preta", "Branca", "Verde", "Vermelha", "Cinza"]
_CITIES = [("São Paulo", "SP"), ("Rio de Janeiro", "RJ"), ("Belo Horizonte", "MG"), ("Curitiba", "PR")]
_SHIPPING = [("PAC", "Correios PAC"), ("SEDEX", "Correios SEDEX")]
_PAYMENT = [("pix", "Pix"), ("boleto", "Boleto"), ("cartao_credito", "Cartão de crédito")]


# --- Brazilian check digits --------------------------------------------------------------------------


def _mod11_digit(digits: Sequence[int], weights: Sequence[int]) -> int:
    rest = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
    return 0 if rest < 2 else 11 - rest


def make_cpf(rng: random.Random) -> str:
    """A CPF with valid check digits (never the all-equal sequences the Receita rejects)."""
    while True:
        base = [rng.randrange(10) for _ in range(9)]
        if len(set(base)) > 1:
            break
    d1 = _mod11_digit(base, range(10, 1, -1))
    d2 = _mod11_digit([*base, d1], range(11, 1, -1))
    return "".join(map(str, [*base, d1, d2]))


def make_cnpj(rng: random.Random) -> str:
    base = [rng.randrange(10) for _ in range(8)] + [0, 0, 0, 1]
    d1 = _mod11_digit(base, [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2])
    d2 = _mod11_digit([*base, d1], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2])
    return "".join(map(str, [*base, d1, d2]))


def nfe_key_is_valid(key: str) -> bool:
    """44 digits whose last is the mod-11 check digit (weights 2..9 from the right)."""
    if not re.fullmatch(r"\d{44}", key):
        return False
    digits = [int(c) for c in key[:43]]
    total = sum(d * (2 + i % 8) for i, d in enumerate(reversed(digits)))
    check = 11 - total % 11
    return int(key[43]) == (0 if check >= 10 else check)


# --- rendering helpers ---------------------------------------------------------------------------------


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENTS))


def _naive_brt(moment: datetime) -> str:
    return moment.astimezone(BRT).replace(tzinfo=None).isoformat(timespec="microseconds")


def _bad_request(message: str) -> web.Response:
    return _json({"error_message": message}, status=400)


def _not_found(what: str) -> web.Response:
    return _json({"error_message": f"{what} não encontrado."}, status=404)


def _li_error(status: int, *, general: Sequence[str] = (), validation: Sequence[str] = ()) -> web.Response:
    """The ``error_response`` shape the ``integration/*`` endpoints answer with."""
    return _json(
        {
            "error_response": {
                "general_errors": [{"message": m} for m in general],
                "validation_errors": [{"message_complete": m} for m in validation],
            }
        },
        status=status,
    )


class _Invalid(Exception):
    pass


def _dec(value: Any, field: str, *, allow_none: bool = False) -> Decimal | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Invalid(f"{field}: valor inválido {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _Invalid(f"{field}: valor inválido {value!r}") from None
    if not number.is_finite() or number < 0:
        raise _Invalid(f"{field}: valor inválido {value!r}")
    return number


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{field}: deve ser um número inteiro, recebido {value!r}")
    return value


def _canonical(path: str) -> str:
    """/api/v1/x and /v1/x are the same resource."""
    return path[4:] if path.startswith("/api/v1") else path


class LojaIntegradaSimulator(SimulatorServer):
    input_errors = (_Invalid, ValueError, TypeError)
    malformed_json = '{"meta": {"limit": 20, "offset": 0'

    def __init__(
        self,
        api_key: str,
        app_key: str,
        *,
        rate_limit_per_minute: int = 100,
        seed: int = 1,
        orders: int = 20,
        products: int = 30,
        clock: Clock | None = None,
        personal_token: str | None = None,
        send_retry_after: bool = False,
        latency_ms: float = 0.0,
        cliente_as_uri: bool = False,
        return_data_on_create: bool = True,
        timeout_fault_seconds: float = 30.0,
        huge_body_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if products < 1 and orders > 0:
            raise ValueError("orders need products to sell")
        self.api_key = api_key
        self.app_key = app_key
        self.personal_token = personal_token
        self.rate_limit_per_minute = rate_limit_per_minute
        self.send_retry_after = send_retry_after
        self.latency_ms = latency_ms
        self.cliente_as_uri = cliente_as_uri
        self.return_data_on_create = return_data_on_create
        super().__init__(timeout_fault_seconds=timeout_fault_seconds, huge_body_bytes=huge_body_bytes)
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._rng = random.Random(seed)
        self._window: deque[float] = deque()
        self.rate_limited = 0
        self.products: dict[int, dict[str, Any]] = {}
        self._by_sku: dict[str, set[int]] = {}
        """SKU -> product ids (a hint, checked against the product): lookups stay O(1) with 100k products."""
        self.customers: dict[int, dict[str, Any]] = {}
        self.orders: dict[int, dict[str, Any]] = {}
        self._holding: set[int] = set()
        """Numbers of the orders in a holding status."""
        self.stock_log: dict[int, list[dict[str, Any]]] = {}
        self._next_product = 1001
        self._next_customer = 501
        self._next_order = 1001
        self._next_envio = 3001
        self._next_payment = 4001
        self._next_item = 9001
        self._seed(products, orders)

    # --- seed data -----------------------------------------------------------------------------------

    def _seed(self, products: int, orders: int) -> None:
        now = self.clock.now()
        for i in range(products):
            self._add_product(
                sku=f"SKU-{i + 1:04d}",
                nome=f"{self._rng.choice(_PRODUCT)} {self._rng.choice(_VARIANT)} {i + 1}",
                cheio=Decimal(self._rng.randrange(1990, 49990, 100)) / 100,
                quantidade=self._rng.randrange(0, 60),
                created=now - timedelta(days=30),
            )
        for product in self.products.values():
            if self._rng.random() < 0.3:
                product["preco"]["promocional"] = (product["preco"]["cheio"] * Decimal("0.9")).quantize(CENTS)
        spread = sorted(self._rng.uniform(60, 7 * 24 * 3600) for _ in range(orders))
        for seconds_ago in reversed(spread):
            created = now - timedelta(seconds=seconds_ago)
            modified = min(now, created + timedelta(seconds=self._rng.uniform(0, 3600)))
            self._add_order(None, self._rng.choice(_SEED_STATUSES), created, modified)

    def _add_product(
        self, *, sku: str, nome: str | None, cheio: Decimal, quantidade: int, created: datetime
    ) -> dict[str, Any]:
        ident = self._next_product
        self._next_product += 1
        product: dict[str, Any] = {
            "id": ident,
            "fields": {
                "id_externo": None,
                "sku": sku,
                "nome": nome,
                "descricao_completa": "",
                "ativo": True,
                "removido": False,
                "destaque": False,
                "usado": False,
                "tipo": "normal",
                "peso": Decimal("0.300"),
                "altura": 2,
                "largura": 20,
                "profundidade": 30,
                "gtin": None,
                "ncm": "61091000",
                "mpn": "",
                "categorias": ["/api/v1/categoria/15/"],
                "marca": "/api/v1/marca/3/",
            },
            "data_criacao": created,
            "data_modificacao": created,
            "estoque": {
                "gerenciado": True,
                "quantidade": quantidade,
                "situacao_em_estoque": 0,
                "situacao_sem_estoque": -1,
            },
            "preco": {
                "cheio": cheio,
                "custo": (cheio * Decimal("0.4")).quantize(CENTS),
                "promocional": None,
                "sob_consulta": False,
            },
        }
        self.products[ident] = product
        self._index_sku(product)
        return product

    def _index_sku(self, product: dict[str, Any]) -> None:
        self._by_sku.setdefault(product["fields"]["sku"], set()).add(product["id"])

    def _with_sku(self, sku: str) -> list[dict[str, Any]]:
        """The products whose SKU is ``sku`` now, by id."""
        found = (self.products.get(i) for i in sorted(self._by_sku.get(sku, ())))
        return [p for p in found if p is not None and p["fields"]["sku"] == sku]

    def _new_customer(self) -> dict[str, Any]:
        ident = self._next_customer
        self._next_customer += 1
        first, last = self._rng.choice(_FIRST), self._rng.choice(_LAST)
        company = self._rng.random() < 0.2
        customer: dict[str, Any] = {
            "id": ident,
            "nome": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{ident}@example.com".replace("ã", "a").replace("é", "e"),
            "cpf": None if company else make_cpf(self._rng),
            "cnpj": make_cnpj(self._rng) if company else None,
            "razao_social": f"{self._rng.choice(_COMPANY)} {last} Ltda" if company else None,
            "data_nascimento": None,
            "sexo": None,
            "telefone_celular": f"11{self._rng.randrange(900000000, 999999999)}",
            "telefone_principal": None,
            "resource_uri": f"/api/v1/cliente/{ident}",
        }
        self.customers[ident] = customer
        return customer

    def _add_order(
        self,
        items: Sequence[tuple[str, Decimal]] | None,
        status: str,
        created: datetime,
        modified: datetime,
    ) -> dict[str, Any]:
        numero = self._next_order
        self._next_order += 1
        by_sku = {p["fields"]["sku"]: p for p in self.products.values()}
        if items is None:
            chosen = self._rng.sample(list(by_sku), k=min(len(by_sku), self._rng.randint(1, 3)))
            items = [(sku, Decimal(self._rng.randint(1, 3))) for sku in chosen]
        customer = self._new_customer()
        city, uf = self._rng.choice(_CITIES)
        lines: list[dict[str, Any]] = []
        subtotal = Decimal("0")
        for line, (sku, qty) in enumerate(items, start=1):
            product = by_sku[sku]
            price = product["preco"]["promocional"] or product["preco"]["cheio"]
            lines.append(
                {
                    "id": self._next_item,
                    "linha": line,
                    "nome": product["fields"]["nome"],
                    "sku": sku,
                    "tipo": "normal",
                    "quantidade": qty,
                    "preco_cheio": product["preco"]["cheio"],
                    "preco_custo": product["preco"]["custo"],
                    "preco_promocional": product["preco"]["promocional"],
                    "preco_venda": price,
                    "preco_subtotal": price * qty,
                    "peso": product["fields"]["peso"],
                    "produto_id": product["id"],
                }
            )
            self._next_item += 1
            subtotal += price * qty
        code, carrier = self._rng.choice(_SHIPPING)
        shipping = Decimal(self._rng.randrange(1500, 4000, 50)) / 100
        total = subtotal + shipping
        pay_code, pay_name = self._rng.choice(_PAYMENT)
        order: dict[str, Any] = {
            "numero": numero,
            "id_externo": None,
            "cliente_id": customer["id"],
            "cliente_obs": None,
            "cupom_desconto": None,
            "data_criacao": created,
            "data_modificacao": modified,
            "situacao": status,
            "itens": lines,
            "endereco_entrega": {
                "tipo": "PJ" if customer["cnpj"] else "PF",
                "nome": customer["nome"],
                "razao_social": customer["razao_social"],
                "cpf": customer["cpf"],
                "cnpj": customer["cnpj"],
                "ie": None,
                "rg": None,
                "endereco": "Rua Exemplo",
                "numero": str(self._rng.randint(1, 2000)),
                "complemento": None,
                "referencia": None,
                "bairro": "Centro",
                "cidade": city,
                "estado": uf,
                "cep": f"{self._rng.randrange(1000000, 99999999):08d}",
                "pais": "Brasil",
            },
            "envios": [
                {
                    "id": self._next_envio,
                    "objeto": None,
                    "prazo": self._rng.randint(2, 10),
                    "valor": shipping,
                    "data_criacao": created,
                    "data_modificacao": created,
                    "forma_envio": {"id": 12, "code": code, "nome": carrier, "tipo": code},
                }
            ],
            "pagamentos": [
                {
                    "id": self._next_payment,
                    "pagamento_tipo": pay_code,
                    "valor": total,
                    "valor_pago": total,
                    "transacao_id": f"TX{numero}",
                    "forma_pagamento": {"id": 7, "codigo": pay_code, "nome": pay_name},
                    "parcelamento": {"numero_parcelas": 1, "valor_parcela": float(total)},
                }
            ],
            "valor_subtotal": subtotal,
            "valor_envio": shipping,
            "valor_desconto": Decimal("0"),
            "valor_total": total,
            "peso_real": Decimal("0.300") * len(lines),
            "nf": None,
            "historico": [],
        }
        self._next_envio += 1
        self._next_payment += 1
        self.orders[numero] = order
        self._note_hold(order)
        return order

    # --- rendering --------------------------------------------------------------------------------------

    @staticmethod
    def _situacao(code: str) -> dict[str, Any]:
        ident, nome, aprovado, cancelado, final = STATUS_TABLE[code]
        return {
            "id": ident,
            "codigo": code,
            "nome": nome,
            "aprovado": aprovado,
            "cancelado": cancelado,
            "final": final,
            "padrao": code == "pedido_efetuado",
            "notificar_comprador": True,
            "resource_uri": f"/api/v1/situacao/{ident}",
        }

    def _order_summary(self, order: dict[str, Any]) -> dict[str, Any]:
        numero = order["numero"]
        return {
            "numero": numero,
            "resource_uri": f"/api/v1/pedido/{numero}",
            "cliente": f"/api/v1/cliente/{order['cliente_id']}",
            "id_externo": order["id_externo"],
            "id_anymarket": None,
            "utm_campaign": None,
            "data_criacao": _naive_brt(order["data_criacao"]),
            "data_modificacao": _naive_brt(order["data_modificacao"]),
            "data_expiracao": _naive_brt(order["data_criacao"] + timedelta(days=7)),
            "situacao": self._situacao(order["situacao"]),
            "valor_total": _money(order["valor_total"]),
            "valor_subtotal": _money(order["valor_subtotal"]),
            "valor_envio": _money(order["valor_envio"]),
            "valor_desconto": _money(order["valor_desconto"]),
            "peso_real": str(order["peso_real"].quantize(Decimal("0.001"))),
        }

    def _order_detail(self, order: dict[str, Any]) -> dict[str, Any]:
        numero = order["numero"]
        detail = self._order_summary(order)
        customer = self.customers[order["cliente_id"]]
        detail.update(
            {
                "cliente": customer["resource_uri"] if self.cliente_as_uri else dict(customer),
                "cliente_obs": order["cliente_obs"],
                "cupom_desconto": order["cupom_desconto"],
                "endereco_entrega": dict(order["endereco_entrega"]),
                "itens": [
                    {
                        "id": item["id"],
                        "linha": item["linha"],
                        "nome": item["nome"],
                        "sku": item["sku"],
                        "tipo": item["tipo"],
                        "quantidade": str(item["quantidade"].quantize(CENTS)),
                        "preco_cheio": _money(item["preco_cheio"]),
                        "preco_custo": _money(item["preco_custo"]),
                        "preco_promocional": _money(item["preco_promocional"]),
                        "preco_venda": _money(item["preco_venda"]),
                        "preco_subtotal": _money(item["preco_subtotal"]),
                        "peso": str(item["peso"]),
                        "pedido": f"/api/v1/pedido/{numero}",
                        "produto": f"/api/v1/produto/{item['produto_id']}",
                        "produto_pai": None,
                    }
                    for item in order["itens"]
                ],
                "envios": [
                    {
                        "id": envio["id"],
                        "objeto": envio["objeto"],
                        "prazo": envio["prazo"],
                        "valor": _money(envio["valor"]),
                        "data_criacao": _naive_brt(envio["data_criacao"]),
                        "data_modificacao": _naive_brt(envio["data_modificacao"]),
                        "forma_envio": dict(envio["forma_envio"]),
                    }
                    for envio in order["envios"]
                ],
                "pagamentos": [
                    {**pay, "valor": _money(pay["valor"]), "valor_pago": _money(pay["valor_pago"])}
                    for pay in order["pagamentos"]
                ],
            }
        )
        return detail

    def _product_json(self, product: dict[str, Any]) -> dict[str, Any]:
        ident = product["id"]
        fields = dict(product["fields"])
        peso = fields.get("peso")
        fields["peso"] = None if peso is None else str(peso)
        stock, price = product["estoque"], product["preco"]
        return {
            "id": ident,
            "resource_uri": f"/api/v1/produto/{ident}",
            "url": f"https://loja.example/produto-{ident}",
            "seo": f"/api/v1/seo/{ident}",
            "bloqueado": False,
            "data_criacao": _naive_brt(product["data_criacao"]),
            "data_modificacao": _naive_brt(product["data_modificacao"]),
            "filhos": [],
            "imagem_principal": None,
            "imagens": [],
            **fields,
            "preco_cheio": _money(price["cheio"]),
            "preco_custo": _money(price["custo"]),
            "preco_promocional": _money(price["promocional"]),
            "preco_sob_consulta": price["sob_consulta"],
            "estoque_gerenciado": stock["gerenciado"],
            "estoque_quantidade": stock["quantidade"],
            "estoque_situacao_em_estoque": stock["situacao_em_estoque"],
            "estoque_situacao_sem_estoque": stock["situacao_sem_estoque"],
        }

    def _stock_json(self, product: dict[str, Any]) -> dict[str, Any]:
        ident, stock = product["id"], product["estoque"]
        reserved = self.reserved_quantity(ident) if self._holding else 0
        return {
            "id": 50000 + ident,
            "produto": f"/api/v1/produto/{ident}",
            "gerenciado": stock["gerenciado"],
            "quantidade": stock["quantidade"],
            "quantidade_disponivel": stock["quantidade"] - reserved,
            "quantidade_reservada": reserved,
            "situacao_em_estoque": stock["situacao_em_estoque"],
            "situacao_sem_estoque": stock["situacao_sem_estoque"],
            "resource_uri": f"/api/v1/produto_estoque/{ident}",
        }

    @staticmethod
    def _price_json(product: dict[str, Any]) -> dict[str, Any]:
        ident, price = product["id"], product["preco"]
        return {
            "id": 70000 + ident,
            "produto": f"/api/v1/produto/{ident}",
            "cheio": _money(price["cheio"]),
            "custo": _money(price["custo"]),
            "promocional": _money(price["promocional"]),
            "sob_consulta": price["sob_consulta"],
            "resource_uri": f"/api/v1/produto_preco/{ident}",
        }

    # --- lifecycle ---------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/pedido/search", self._h_order_search),
            ("GET", "/pedido", self._h_order_search),
            ("GET", "/pedido/{numero}", self._h_order_detail),
            ("PUT", "/pedido/{numero}", self._h_order_put),
            ("GET", "/situacao", self._h_status_list),
            ("GET", "/situacao/pedido/{numero}", self._h_status_get),
            ("PUT", "/situacao/pedido/{numero}", self._h_status_put),
            ("PUT", "/pedido_envio/{envio}", self._h_envio_put),
            ("POST", "/integration/pedido/nf", self._h_nf),
            ("PUT", "/integration/pedido/nf", self._h_nf),
            ("GET", "/cliente/{ident}", self._h_customer),
            ("GET", "/produto", self._h_product_list),
            ("POST", "/produto", self._h_product_create),
            ("GET", "/produto/{ident}", self._h_product_get),
            ("PUT", "/produto/{ident}", self._h_product_put),
            ("GET", "/produto_estoque", self._h_stock_list),
            ("GET", "/produto_estoque/{ident}", self._h_stock_get),
            ("PUT", "/produto_estoque/{ident}", self._h_stock_put),
            ("GET", "/produto_preco", self._h_price_list),
            ("GET", "/produto_preco/{ident}", self._h_price_get),
            ("PUT", "/produto_preco/{ident}", self._h_price_put),
        ]
        for prefix in PREFIXES:
            for method, path, handler in routes:
                app.router.add_route(method, prefix + path, handler)
                app.router.add_route(method, prefix + path + "/", handler)
        self.add_fault_routes(app)
        app.router.add_post(ADMIN_PREFIX + "/orders", self._a_orders)
        app.router.add_post(ADMIN_PREFIX + "/orders/{numero}/status", self._a_order_status)
        app.router.add_get(ADMIN_PREFIX + "/state", self._a_state)
        app.router.add_post(ADMIN_PREFIX + "/config", self._a_config)
        return app

    # --- the gate every API request passes ------------------------------------------------------------

    def canonical_path(self, path: str) -> str:
        return _canonical(path)

    def bad_request(self, message: str) -> web.Response:
        return _bad_request(message)

    def fault_429(self, retry_after: float | None) -> web.Response:
        return self._response_429({"Retry-After": f"{retry_after:g}"} if retry_after is not None else None)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        match = re.fullmatch(r"\s*chave_api\s+(\S+)\s+aplicacao\s+(\S+)\s*", header)
        if match and match.group(1) == self.api_key and match.group(2) == self.app_key:
            return True
        if self.personal_token and header.strip() == f"Basic {self.personal_token}":
            return True
        query = request.query
        return query.get("chave_api") == self.api_key and query.get("chave_aplicacao") == self.app_key

    def _throttle(self) -> web.Response | None:
        """Sliding 60 s window per store key; rejected requests do not count against the window."""
        now = self.clock.monotonic()
        while self._window and self._window[0] <= now - 60.0:
            self._window.popleft()
        if len(self._window) < self.rate_limit_per_minute:
            self._window.append(now)
            return None
        wait = math.ceil(self._window[0] + 60.0 - now) if self._window else 60
        headers = {"Retry-After": str(max(1, wait))} if self.send_retry_after else None
        return self._response_429(headers)

    def _response_429(self, headers: Mapping[str, str] | None) -> web.Response:
        self.rate_limited += 1
        body = {
            "code": 633,
            "error_message": (
                f"Limite de {self.rate_limit_per_minute} requisições por minuto por loja excedido."
            ),
        }
        return _json(body, status=429, headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        self.count(request)
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)
        if not self._authorized(request):
            return web.Response(status=401, body=b"")
        throttled = self._throttle()
        if throttled is not None:
            return throttled
        fault = await self.injected_fault(request)
        if fault is not None:
            return fault
        try:
            return await handler(request)
        except _Invalid as exc:
            return _bad_request(str(exc))

    # --- helpers ---------------------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise _Invalid("Corpo da requisição não é um JSON válido.") from None
        if not isinstance(data, dict):
            raise _Invalid("Corpo da requisição deve ser um objeto JSON.")
        return data

    @staticmethod
    def _page(
        request: web.Request,
        objects: Sequence[Any],
        *,
        default: int = 20,
        maximum: int = 100,
        render: Callable[[Any], dict[str, Any]] | None = None,
    ) -> web.Response:
        """A Tastypie page of ``objects``; ``render`` (when given) turns only the page's objects into JSON."""
        query = request.query
        try:
            limit = int(query.get("limit", default))
            offset = int(query.get("offset", 0))
        except ValueError:
            raise _Invalid("limit/offset devem ser números inteiros.") from None
        limit = max(1, min(limit, maximum))
        offset = max(0, offset)
        total = len(objects)
        path = request.path if request.path.startswith("/api/") else "/api" + request.path

        def link(new_offset: int) -> str:
            params = MultiDict(
                (k, v)
                for k, v in query.items()
                if k not in ("offset", "limit", "chave_api", "chave_aplicacao")
            )
            params["limit"] = str(limit)
            params["offset"] = str(new_offset)
            return f"{path}?" + "&".join(f"{k}={v}" for k, v in params.items())

        meta = {
            "limit": limit,
            "offset": offset,
            "total_count": total,
            "next": link(offset + limit) if offset + limit < total else None,
            "previous": link(max(0, offset - limit)) if offset > 0 else None,
        }
        page = objects[offset : offset + limit]
        return _json({"meta": meta, "objects": [render(o) for o in page] if render else list(page)})

    def _parse_moment(self, query: Mapping[str, str], name: str) -> datetime:
        text = query[name]
        try:
            moment = datetime.fromisoformat(text.strip().replace(" ", "T"))
        except ValueError:
            raise _Invalid(f"{name}: data inválida {text!r} (use AAAA-MM-DDTHH:MM:SS)") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=BRT)

    def _product_or_none(self, ident: str) -> dict[str, Any] | None:
        return self.products.get(int(ident)) if ident.isdigit() else None

    def _order_or_none(self, numero: str) -> dict[str, Any] | None:
        return self.orders.get(int(numero)) if numero.isdigit() else None

    def _sku_taken(self, sku: str, exclude: int | None = None) -> bool:
        return any(not p["fields"]["removido"] and p["id"] != exclude for p in self._with_sku(sku))

    # --- orders ------------------------------------------------------------------------------------------

    async def _h_order_search(self, request: web.Request) -> web.Response:
        query = request.query
        orders = list(self.orders.values())
        if "since_atualizado" in query:
            since = self._parse_moment(query, "since_atualizado")
            orders = [o for o in orders if o["data_modificacao"] >= since]
        if "since_criado" in query:
            since = self._parse_moment(query, "since_criado")
            orders = [o for o in orders if o["data_criacao"] >= since]
        if "until_criado" in query:
            until = self._parse_moment(query, "until_criado")
            orders = [o for o in orders if o["data_criacao"] <= until]
        if "situacao_id" in query:
            wanted = query["situacao_id"]
            orders = [o for o in orders if str(STATUS_TABLE[o["situacao"]][0]) == wanted]
        if "since_numero" in query and query["since_numero"].isdigit():
            orders = [o for o in orders if o["numero"] >= int(query["since_numero"])]
        orders.sort(key=lambda o: (o["data_modificacao"], o["numero"]))
        return self._page(request, orders, maximum=50, render=self._order_summary)

    async def _h_order_detail(self, request: web.Request) -> web.Response:
        order = self._order_or_none(request.match_info["numero"])
        if order is None:
            return _not_found("Pedido")
        return _json(self._order_detail(order))

    async def _h_order_put(self, request: web.Request) -> web.Response:
        order = self._order_or_none(request.match_info["numero"])
        if order is None:
            return _not_found("Pedido")
        body = await self._body(request)
        if "id_externo" in body:
            order["id_externo"] = _int(body["id_externo"], "id_externo")
        return _json(self._order_detail(order))

    async def _h_status_list(self, request: web.Request) -> web.Response:
        return self._page(request, [self._situacao(code) for code in STATUS_TABLE])

    async def _h_status_get(self, request: web.Request) -> web.Response:
        order = self._order_or_none(request.match_info["numero"])
        if order is None:
            return _not_found("Pedido")
        return _json(self._situacao(order["situacao"]))

    async def _h_status_put(self, request: web.Request) -> web.Response:
        order = self._order_or_none(request.match_info["numero"])
        if order is None:
            return _not_found("Pedido")
        body = await self._body(request)
        code = body.get("codigo")
        if not isinstance(code, str) or code not in STATUS_TABLE:
            return _bad_request(f"Situação {code!r} não encontrada.")
        self.set_order_status(order["numero"], code, by="api")
        return _json(self._situacao(code))

    async def _h_envio_put(self, request: web.Request) -> web.Response:
        ident = request.match_info["envio"]
        for order in self.orders.values():
            for envio in order["envios"]:
                if str(envio["id"]) == ident:
                    body = await self._body(request)
                    code = body.get("objeto")
                    if code is not None and not isinstance(code, str):
                        return _bad_request("objeto: deve ser texto.")
                    envio["objeto"] = code
                    envio["data_modificacao"] = self.clock.now()
                    return _json(
                        {"id": envio["id"], "objeto": code, "pedido": f"/api/v1/pedido/{order['numero']}"}
                    )
        return _not_found("Envio")

    async def _h_nf(self, request: web.Request) -> web.Response:
        """NF-e links: multipart (current spec) or JSON (what one SDK sends); both accepted."""
        if request.content_type == "application/json":
            raw: Mapping[str, Any] = await self._body(request)
        else:
            raw = await request.post()
        fields = {k: str(v) for k, v in raw.items() if isinstance(v, (str, int))}
        if fields.get("account_key") != self.api_key:
            return _li_error(400, general=["account_key inválida para esta loja."])
        numero = fields.get("sale_number", "")
        order = self._order_or_none(numero)
        if order is None:
            return _li_error(400, general=[f"Pedido {numero!r} não encontrado."])
        problems = [
            f"{name}: campo obrigatório"
            for name in ("invoice_number", "serie", "date")
            if not fields.get(name)
        ]
        if not nfe_key_is_valid(fields.get("access_key", "")):
            problems.append("access_key: chave de acesso inválida (44 dígitos com dígito verificador)")
        try:
            datetime.strptime(fields.get("date", ""), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            problems.append("date: use AAAA-MM-DD HH:MM:SS")
        if problems:
            return _li_error(400, validation=sorted(set(problems)))
        inserting = request.method == "POST"
        if inserting and order["nf"] is not None:
            return _li_error(
                400, general=[f"Já existe nota fiscal para o pedido {numero}; use PUT para alterar."]
            )
        if not inserting and order["nf"] is None:
            return _li_error(400, general=[f"Não há nota fiscal para o pedido {numero}."])
        order["nf"] = {
            k: fields.get(k, "") for k in ("invoice_number", "serie", "access_key", "date", "url", "url_xml")
        }
        verb = "inserted" if inserting else "updated"
        return _json({"status": 200, "msg": f"Invoice successfully {verb}."})

    async def _h_customer(self, request: web.Request) -> web.Response:
        ident = request.match_info["ident"]
        customer = self.customers.get(int(ident)) if ident.isdigit() else None
        if customer is None:
            return _not_found("Cliente")
        return _json(customer)

    # --- products, stock, prices -------------------------------------------------------------------------

    async def _h_product_list(self, request: web.Request) -> web.Response:
        if "sku" in request.query:
            products = self._with_sku(request.query["sku"])
        else:
            products = sorted(self.products.values(), key=lambda p: p["id"])
        return self._page(request, products, render=self._product_json)

    async def _h_product_get(self, request: web.Request) -> web.Response:
        product = self._product_or_none(request.match_info["ident"])
        if product is None:
            return _not_found("Produto")
        return _json(self._product_json(product))

    def _writable(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The writable product fields of a POST/PUT body, validated; missing ones get defaults."""
        sku = body.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            raise _Invalid("sku: campo obrigatório.")
        tipo = body.get("tipo", "normal")
        if tipo not in ("normal", "atributo", "atributo_opcao"):
            raise _Invalid(f"tipo: valor inválido {tipo!r}.")
        nome = body.get("nome")
        if tipo != "atributo_opcao" and (not isinstance(nome, str) or not nome.strip()):
            raise _Invalid("nome: campo obrigatório.")
        ativo = body.get("ativo", False)
        if not isinstance(ativo, bool):
            raise _Invalid("ativo: deve ser verdadeiro ou falso.")
        id_externo = body.get("id_externo")
        if id_externo is not None:
            _int(id_externo, "id_externo")
        peso = _dec(body.get("peso"), "peso", allow_none=True)
        return {
            "id_externo": id_externo,
            "sku": sku.strip(),
            "nome": nome,
            "descricao_completa": body.get("descricao_completa") or "",
            "ativo": ativo,
            "removido": bool(body.get("removido", False)),
            "destaque": bool(body.get("destaque", False)),
            "usado": bool(body.get("usado", False)),
            "tipo": tipo,
            "peso": peso,
            "altura": body.get("altura"),
            "largura": body.get("largura"),
            "profundidade": body.get("profundidade"),
            "gtin": body.get("gtin"),
            "ncm": body.get("ncm"),
            "mpn": body.get("mpn"),
            "categorias": list(body.get("categorias") or []),
            "marca": body.get("marca"),
        }

    async def _h_product_create(self, request: web.Request) -> web.Response:
        fields = self._writable(await self._body(request))
        if self._sku_taken(fields["sku"]):
            # The doc reports a 400 with a Portuguese "integrity error"; the exact text is ours.
            return _bad_request(
                f"Erro de integridade: já existe um produto com o SKU {fields['sku']!r} nesta loja."
            )
        product = self._add_product(
            sku=fields["sku"], nome=fields["nome"], cheio=Decimal("0"), quantidade=0, created=self.clock.now()
        )
        product["fields"] = fields
        self._index_sku(product)
        product["preco"]["custo"] = Decimal("0")
        location = {"Location": f"/api/v1/produto/{product['id']}"}
        if self.return_data_on_create:
            return _json(self._product_json(product), status=201, headers=location)
        return web.Response(status=201, headers=location)

    async def _h_product_put(self, request: web.Request) -> web.Response:
        """PUT is a full replacement: fields left out fall back to their defaults."""
        product = self._product_or_none(request.match_info["ident"])
        if product is None:
            return _not_found("Produto")
        fields = self._writable(await self._body(request))
        if self._sku_taken(fields["sku"], exclude=product["id"]):
            return _bad_request(
                f"Erro de integridade: já existe um produto com o SKU {fields['sku']!r} nesta loja."
            )
        product["fields"] = fields
        self._index_sku(product)
        product["data_modificacao"] = self.clock.now()
        return _json(self._product_json(product))

    async def _h_stock_list(self, request: web.Request) -> web.Response:
        return self._page(
            request, sorted(self.products.values(), key=lambda p: p["id"]), render=self._stock_json
        )

    async def _h_stock_get(self, request: web.Request) -> web.Response:
        product = self._product_or_none(request.match_info["ident"])
        if product is None:
            return _not_found("Produto")
        return _json(self._stock_json(product))

    async def _h_stock_put(self, request: web.Request) -> web.Response:
        product = self._product_or_none(request.match_info["ident"])
        if product is None:
            return _not_found("Produto")
        body = await self._body(request)
        stock = dict(product["estoque"])
        if "quantidade" not in body:
            return _bad_request("quantidade: campo obrigatório.")
        stock["quantidade"] = _int(body["quantidade"], "quantidade")
        if "gerenciado" in body:
            if not isinstance(body["gerenciado"], bool):
                return _bad_request("gerenciado: deve ser verdadeiro ou falso.")
            stock["gerenciado"] = body["gerenciado"]
        for name in ("situacao_em_estoque", "situacao_sem_estoque"):
            if name in body:
                stock[name] = _int(body[name], name)
        product["estoque"] = stock
        self.stock_log.setdefault(product["id"], []).append(
            {
                "quantidade": stock["quantidade"],
                "received_at": self.clock.now().isoformat(),
                "monotonic": self.clock.monotonic(),
            }
        )
        return _json(self._stock_json(product))

    async def _h_price_list(self, request: web.Request) -> web.Response:
        return self._page(
            request, sorted(self.products.values(), key=lambda p: p["id"]), render=self._price_json
        )

    async def _h_price_get(self, request: web.Request) -> web.Response:
        product = self._product_or_none(request.match_info["ident"])
        if product is None:
            return _not_found("Produto")
        return _json(self._price_json(product))

    async def _h_price_put(self, request: web.Request) -> web.Response:
        product = self._product_or_none(request.match_info["ident"])
        if product is None:
            return _not_found("Produto")
        body = await self._body(request)
        price = dict(product["preco"])
        if "cheio" not in body:
            return _bad_request("cheio: campo obrigatório.")
        price["cheio"] = _dec(body["cheio"], "cheio")
        if "custo" in body:
            price["custo"] = _dec(body["custo"], "custo", allow_none=True)
        if "promocional" in body:
            promo = _dec(body["promocional"], "promocional", allow_none=True)
            price["promocional"] = promo or None  # the simulator treats 0 and null alike: no promotion
        if "sob_consulta" in body:
            price["sob_consulta"] = bool(body["sob_consulta"])
        product["preco"] = price
        return _json(self._price_json(product))

    # --- test hooks (Python) -----------------------------------------------------------------------------

    def create_orders(
        self,
        count: int = 1,
        *,
        items: Sequence[tuple[str, Decimal | int | str]] | None = None,
        status: str | None = None,
        modified_at: datetime | None = None,
    ) -> list[int]:
        """New orders, created now. ``modified_at`` in the past models a platform that stamps an
        order late: "changed since" pulls never see it, only the completeness audit does."""
        code = status or "pedido_pago"
        if code not in STATUS_TABLE:
            raise ValueError(f"unknown status {code!r}")
        known = {p["fields"]["sku"] for p in self.products.values()}
        parsed: list[tuple[str, Decimal]] | None = None
        if items is not None:
            parsed = []
            for sku, qty in items:
                if sku not in known:
                    raise ValueError(f"SKU {sku!r} is not a product of the simulator")
                parsed.append((sku, Decimal(str(qty))))
            if not parsed:
                raise ValueError("an order needs at least one item")
        now = self.clock.now()
        return [self._add_order(parsed, code, now, modified_at or now)["numero"] for _ in range(count)]

    def set_order_status(self, numero: int, code: str, *, by: str = "sim") -> None:
        if code not in STATUS_TABLE:
            raise ValueError(f"unknown status {code!r}")
        order = self.orders[numero]
        order["historico"].append({"de": order["situacao"], "para": code, "por": by})
        order["situacao"] = code
        order["data_modificacao"] = self.clock.now()
        self._note_hold(order)

    def _note_hold(self, order: dict[str, Any]) -> None:
        if order["situacao"] in HOLDING_STATUSES:
            self._holding.add(order["numero"])
        else:
            self._holding.discard(order["numero"])

    def reserved_quantity(self, product_id: int) -> int:
        """Units of the product held by orders in a holding status (only those orders are scanned)."""
        return sum(
            int(item["quantidade"])
            for numero in self._holding
            for item in self.orders[numero]["itens"]
            if item["produto_id"] == product_id
        )

    def product_by_sku(self, sku: str) -> dict[str, Any] | None:
        for product in self.products.values():
            if product["fields"]["sku"] == sku:
                return self._product_json(product)
        return None

    def stock_history(self, sku: str) -> list[dict[str, Any]]:
        for product in self.products.values():
            if product["fields"]["sku"] == sku:
                return list(self.stock_log.get(product["id"], []))
        return []

    def state(self) -> dict[str, Any]:
        products = []
        for product in sorted(self.products.values(), key=lambda p: p["id"]):
            fields = product["fields"]
            products.append(
                {
                    "id": product["id"],
                    "sku": fields["sku"],
                    "nome": fields["nome"],
                    "ativo": fields["ativo"],
                    "id_externo": fields["id_externo"],
                    "estoque": self._stock_json(product),
                    "preco": self._price_json(product),
                    "stock_history": list(self.stock_log.get(product["id"], [])),
                }
            )
        orders = [
            {
                "numero": o["numero"],
                "situacao": o["situacao"],
                "data_modificacao": _naive_brt(o["data_modificacao"]),
                "envios": [{"id": e["id"], "objeto": e["objeto"]} for e in o["envios"]],
                "nf": o["nf"],
                "id_externo": o["id_externo"],
                "historico": list(o["historico"]),
            }
            for o in sorted(self.orders.values(), key=lambda o: o["numero"])
        ]
        return {
            "products": products,
            "orders": orders,
            "counters": {
                "requests": self.requests,
                "rate_limited": self.rate_limited,
                "faults_served": self.faults_served,
                "by_route": dict(self.by_route),
            },
            "faults": self.faults(),
            "config": {
                "rate_limit_per_minute": self.rate_limit_per_minute,
                "send_retry_after": self.send_retry_after,
                "latency_ms": self.latency_ms,
            },
        }

    # --- test hooks (HTTP) --------------------------------------------------------------------------------

    async def admin_body(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        return await self._body(request)

    async def _a_orders(self, request: web.Request) -> web.Response:
        try:
            body = await self.admin_body(request)
            items = body.get("items")
            parsed = None if items is None else [(str(i["sku"]), str(i.get("quantidade", 1))) for i in items]
            numeros = self.create_orders(int(body.get("count", 1)), items=parsed, status=body.get("status"))
        except (_Invalid, ValueError, TypeError, KeyError, InvalidOperation) as exc:
            return _bad_request(f"bad order request: {exc}")
        return _json({"numeros": numeros}, status=201)

    async def _a_order_status(self, request: web.Request) -> web.Response:
        numero = request.match_info["numero"]
        if self._order_or_none(numero) is None:
            return _not_found("Pedido")
        try:
            body = await self.admin_body(request)
            self.set_order_status(int(numero), str(body.get("codigo")))
        except (_Invalid, ValueError) as exc:
            return _bad_request(str(exc))
        return _json({"ok": True})

    async def _a_state(self, request: web.Request) -> web.Response:
        return _json(self.state())

    async def _a_config(self, request: web.Request) -> web.Response:
        try:
            body = await self.admin_body(request)
            if "latency_ms" in body:
                self.latency_ms = max(0.0, float(body["latency_ms"]))
            if "rate_limit_per_minute" in body:
                self.rate_limit_per_minute = max(1, int(body["rate_limit_per_minute"]))
            if "send_retry_after" in body:
                self.send_retry_after = bool(body["send_retry_after"])
        except (_Invalid, ValueError, TypeError) as exc:
            return _bad_request(str(exc))
        return _json({"ok": True, "config": self.state()["config"]})


# --- command line -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m channels.simulators.lojaintegrada", description="A loopback Loja Integrada API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--products", type=int, default=30)
    parser.add_argument("--api-key", default="demo-api-key")
    parser.add_argument("--app-key", default="demo-app-key")
    parser.add_argument("--personal-token", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate-limit", type=int, default=100, help="requests per minute per store")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--send-retry-after", action="store_true")
    return parser


async def serve(args: argparse.Namespace) -> None:
    sim = LojaIntegradaSimulator(
        args.api_key,
        args.app_key,
        rate_limit_per_minute=args.rate_limit,
        seed=args.seed,
        orders=args.orders,
        products=args.products,
        personal_token=args.personal_token,
        send_retry_after=args.send_retry_after,
        latency_ms=args.latency_ms,
    )
    await serve_until_signal(
        sim, args.host, args.port, lambda url: f"lojaintegrada simulator listening on {url}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(serve(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
