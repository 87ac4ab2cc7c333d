"""The ERP actions' messages for people, in the daemon's locale; the facts for programs in ``details``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.clock import FakeClock
from daemon.erp import ErpService
from daemon.statedb import StateDB
from daemon.store import orders, stock
from tests.store.store_support import nfe_key, remote_order

NOW = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="erp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def db(short_dir: Path) -> AsyncIterator[StateDB]:
    opened = await StateDB.open(short_dir / "state.db")
    async with opened.write() as conn:
        await stock.ensure_warehouse(conn, "MAIN")
    yield opened
    await opened.close()


async def service(db: StateDB, locale: str) -> ErpService:
    erp = ErpService(db, FakeClock(), "MAIN", locale=locale)
    csv = "sku,name,list_price,sale_price,stock,warehouse\nA1,Caneca,1234.5,,3,MAIN\n"
    result = await erp.import_products_csv(csv)
    assert result.ok, result
    return erp


async def with_order(db: StateDB) -> None:
    async with db.write() as conn:
        await orders.import_order(
            conn, "loja", remote_order("1001"), local_status="paid", sale_warehouse="MAIN", now=NOW
        )


def test_the_default_locale_is_pt_br(db: StateDB) -> None:
    assert ErpService(db, FakeClock()).locale == "pt_BR"
    assert ErpService(db, FakeClock(), locale="en_US.UTF-8").locale == "en"
    assert ErpService(db, FakeClock(), locale="pt").locale == "pt_BR"


MESSAGES = {
    "pt_BR": {
        "import": "1 linha(s): 0 criado(s), 1 atualizado(s), 0 sem alteração, 0 com erro",
        "set": "A1: estoque em MAIN definido como 5 (+2)",
        "move": "A1: -2 em MAIN (venda)",
        "move_other": "A1: +1 em LOJA (quebra)",
        "price": "A1: preço alterado (cheio R$ 1.299,90, venda R$ 1.199,00, promocional R$ 999,99)",
        "same_price": "A1: preço sem alteração (cheio R$ 1.299,90, venda R$ 1.199,00, promocional R$ 999,99)",
        "push": "A1: estoque na fila para loja, ml",
        "push_none": "A1: estoque na fila para nenhum canal",
        "retry": "0 item(ns) na fila novamente",
        "nothing": "nada foi enviado ainda para A1 em loja",
        "invoice": "NF-e 123/1 vinculada ao pedido 1001 em loja",
        "tracking": "rastreio BR123 adicionado ao pedido 1001 em loja",
    },
    "en": {
        "import": "1 rows: 0 created, 1 updated, 0 unchanged, 0 with errors",
        "set": "A1: stock in MAIN set to 5 (+2)",
        "move": "A1: -2 in MAIN (sale)",
        "move_other": "A1: +1 in LOJA (quebra)",
        "price": "A1: price changed (list R$1,299.90, sale R$1,199.00, promotional R$999.99)",
        "same_price": "A1: price unchanged (list R$1,299.90, sale R$1,199.00, promotional R$999.99)",
        "push": "A1: stock queued for loja, ml",
        "push_none": "A1: stock queued for no channel",
        "retry": "0 item(s) queued again",
        "nothing": "nothing has been pushed yet for A1 on loja",
        "invoice": "NF-e 123/1 attached to order 1001 on loja",
        "tracking": "tracking BR123 added to order 1001 on loja",
    },
}


@pytest.mark.parametrize("locale", ["pt_BR", "en"])
async def test_action_messages(db: StateDB, locale: str) -> None:
    erp = await service(db, locale)
    said = MESSAGES[locale]
    csv = "sku,name,list_price,sale_price,stock,warehouse\nA1,Caneca grande,1234.5,,3,MAIN\n"
    assert (await erp.import_products_csv(csv)).message == said["import"]

    result = await erp.stock_set("A1", None, 5)
    assert result.message == said["set"]
    assert result.details == {"sku": "A1", "warehouse": "MAIN", "quantity": 5, "delta": 2}

    result = await erp.stock_move("A1", None, -2, "sale", "order:9")
    assert result.message == said["move"]
    assert result.details["reason"] == "sale" and result.details["reference"] == "order:9"
    assert (await erp.stock_move("A1", "LOJA", 1, "quebra", None)).message == said["move_other"]

    prices = (Decimal("1299.90"), Decimal("1199"), Decimal("800"), Decimal("999.99"), NOW, None)
    result = await erp.price_set("A1", *prices)
    assert result.message == said["price"]
    assert result.details == {
        "sku": "A1",
        "changed": True,
        "list_price": "1299.90",
        "sale_price": "1199",
        "cost_price": "800",
        "promo_price": "999.99",
        "promo_start": NOW.isoformat(),
        "promo_end": None,
    }
    assert (await erp.price_set("A1", *prices)).message == said["same_price"]

    result = await erp.push_stock("A1", ["loja", "ml"])
    assert result.message == said["push"]
    assert result.details["channels"] == ["loja", "ml"] and result.details["sku"] == "A1"
    assert (await erp.push_stock("A1", [])).message == said["push_none"]
    assert (await erp.retry_outbox([999], None)).message == said["retry"]
    assert (await erp.explain("loja", "stock", "A1"))["message"] == said["nothing"]

    await with_order(db)
    key = nfe_key()
    result = await erp.invoice_add("loja", "1001", "123", "1", key, NOW, None, None)
    assert result.message == said["invoice"]
    assert result.details["order"] == "1001" and result.details["number"] == "123"
    result = await erp.tracking_add("loja", "1001", "Correios", " BR123 ", None)
    assert result.message == said["tracking"]
    assert result.details["code"] == "BR123" and result.details["channel"] == "loja"


ERRORS = {
    "pt_BR": {
        "no_product": "nenhum produto com SKU 'ZZ'",
        "negative": "a quantidade do SKU 'A1' deve ser >= 0; recebi -1",
        "zero": "uma movimentação de estoque do SKU 'A1' precisa de quantidade diferente de zero",
        "no_order": "nenhum pedido '77' no canal 'loja'",
        "empty_code": "o código de rastreio não pode ficar vazio",
        "no_failure": "nenhuma falha de importação aberta com id 5",
        "entity": "a entidade deve ser 'stock' ou 'price'; recebi 'cor'",
    },
    "en": {
        "no_product": "no product with SKU 'ZZ'",
        "negative": "quantity for SKU 'A1' must be >= 0, got -1",
        "zero": "a stock movement for SKU 'A1' needs a non-zero quantity",
        "no_order": "no order '77' on channel 'loja'",
        "empty_code": "tracking code must not be empty",
        "no_failure": "no open import failure with id 5",
        "entity": "entity must be 'stock' or 'price', got 'cor'",
    },
}


@pytest.mark.parametrize("locale", ["pt_BR", "en"])
async def test_error_messages(db: StateDB, locale: str) -> None:
    erp = await service(db, locale)
    said = ERRORS[locale]

    def message(info: pytest.ExceptionInfo[BaseException]) -> str:
        return str(info.value.args[0])

    with pytest.raises(KeyError) as missing:
        await erp.stock_set("ZZ", None, 1)
    assert message(missing) == said["no_product"]
    with pytest.raises(ValueError) as bad:
        await erp.stock_set("A1", None, -1)
    assert message(bad) == said["negative"]
    with pytest.raises(ValueError) as bad:
        await erp.stock_move("A1", None, 0, "adjust", None)
    assert message(bad) == said["zero"]
    with pytest.raises(KeyError) as missing:
        await erp.invoice_add("loja", "77", "1", "1", nfe_key(), NOW, None, None)
    assert message(missing) == said["no_order"]
    with pytest.raises(KeyError) as missing:
        await erp.tracking_add("loja", "77", None, "BR1", None)
    assert message(missing) == said["no_order"]
    with pytest.raises(ValueError) as bad:
        await erp.tracking_add("loja", "77", None, "  ", None)
    assert message(bad) == said["empty_code"]
    with pytest.raises(KeyError) as missing:
        await erp.dismiss_import_failure(5)
    assert message(missing) == said["no_failure"]
    with pytest.raises(ValueError) as bad:
        await erp.explain("loja", "cor", "A1")
    assert message(bad) == said["entity"]
