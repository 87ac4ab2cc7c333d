"""Price adjustment, rounding, and scheduled promotion windows at a fixed ``now``."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import aiosqlite
import pytest

from daemon.store import prices
from daemon.store.errors import InvalidData
from tests.store.store_support import NOW, outbox_rows, product

START = NOW + timedelta(days=1)
END = NOW + timedelta(days=3)


def test_adjust_rounds_half_up_to_cents() -> None:
    assert prices.adjust(Decimal("19.99"), Decimal("10")) == Decimal("21.99")  # 21.989
    assert prices.adjust(Decimal("0.10"), Decimal("5")) == Decimal("0.11")  # 0.105 -> half up
    assert prices.adjust(Decimal("100.00"), Decimal("-12.5")) == Decimal("87.50")
    assert prices.adjust(Decimal("119.90"), Decimal("0")) == Decimal("119.90")


async def test_standing_sale_price_adjusted_with_explanation(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1")
    await prices.set_price(
        conn, "A1", Decimal("100.00"), sale_price=Decimal("89.90"), cost_price=Decimal("40")
    )
    figure = (await prices.effective_prices(conn, [pid], Decimal("12.5"), NOW))[pid]
    assert (figure.list_price, figure.sale_price, figure.cost_price) == (
        Decimal("112.50"),
        Decimal("101.14"),  # 89.90 * 1.125 = 101.1375
        Decimal("40.00"),
    )
    assert (figure.promo_start, figure.promo_end) == (None, None)
    steps = figure.explanation
    assert steps["list_price"] == "100.00" and steps["adjust_percent"] == "12.5"
    assert steps["sale_source"] == "standing sale_price" and steps["sale_price_adjusted"] == "101.14"
    assert steps["rounding"] == "half-up to cents"


async def test_scheduled_promotion_window(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1")
    await prices.set_price(
        conn,
        "A1",
        Decimal("100.00"),
        sale_price=Decimal("95.00"),
        promo_price=Decimal("79.90"),
        promo_start=START,
        promo_end=END,
    )

    async def at(moment: object) -> prices.PriceFigure:
        return (await prices.effective_prices(conn, [pid], Decimal("0"), moment))[pid]  # type: ignore[arg-type]

    before = await at(NOW)
    assert before.sale_price == Decimal("95.00") and before.explanation["promotion"]["in_force"] is False
    during = await at(START)
    assert during.sale_price == Decimal("79.90")
    assert (during.promo_start, during.promo_end) == (START, END)
    assert during.explanation["sale_source"] == "scheduled promotion"
    after = await at(END)  # the end is exclusive
    assert after.sale_price == Decimal("95.00") and after.promo_end is None

    assert await prices.next_price_boundary(conn, NOW) == START
    assert await prices.next_price_boundary(conn, START) == END
    assert await prices.next_price_boundary(conn, END) is None
    assert await prices.products_crossing(conn, NOW, START) == [pid]
    assert await prices.products_crossing(conn, START, END - timedelta(seconds=1)) == []


async def test_sale_not_below_list_after_adjustment_is_dropped(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1")
    await prices.set_price(conn, "A1", Decimal("10.00"), sale_price=Decimal("10.00"))
    figure = (await prices.effective_prices(conn, [pid], Decimal("3"), NOW))[pid]
    assert figure.sale_price is None and "sale_dropped" in figure.explanation


async def test_unchanged_price_queues_nothing(conn: aiosqlite.Connection) -> None:
    pid = await product(conn, "A1")
    assert await prices.set_price(conn, "A1", Decimal("10.00"))
    version = (await outbox_rows(conn, "price", pid))["loja"][1]
    assert not await prices.set_price(conn, "A1", Decimal("10"))
    assert (await outbox_rows(conn, "price", pid))["loja"][1] == version
    assert await prices.set_price(conn, "A1", Decimal("11.00"))
    assert (await outbox_rows(conn, "price", pid))["loja"][1] == version + 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"list_price": Decimal("-1")}, "list_price must be > 0"),
        ({"list_price": Decimal("1.999")}, "more than two decimal places"),
        ({"list_price": Decimal("10"), "sale_price": Decimal("12")}, "above list_price"),
        ({"list_price": Decimal("10"), "promo_start": START}, "without promo_price"),
        (
            {
                "list_price": Decimal("10"),
                "promo_price": Decimal("9"),
                "promo_start": END,
                "promo_end": START,
            },
            "not before promo_end",
        ),
    ],
)
async def test_bad_prices_are_refused(
    conn: aiosqlite.Connection, kwargs: dict[str, object], message: str
) -> None:
    await product(conn, "A1")
    with pytest.raises(InvalidData, match=message):
        await prices.set_price(conn, "A1", **kwargs)  # type: ignore[arg-type]
