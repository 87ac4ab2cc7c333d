"""Products and kits: lookups by SKU/EAN/code, upserts that write only real changes, CSV import.

Writes compare before they write: an UPDATE that changes nothing would still fire the change-capture
triggers and push an identical product to every channel.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import aiosqlite

from daemon.store import prices as prices_repo
from daemon.store import stock as stock_repo
from daemon.store._products import PRODUCT_COLUMNS, Product, ProductRef, product_from_row
from daemon.store._sql import IN_JSON, decimal_text, json_list, money_text
from daemon.store.db import transaction
from daemon.store.errors import AmbiguousProduct, InvalidData, NotFoundError

__all__ = [
    "CSV_COLUMNS",
    "ImportReport",
    "LinkKey",
    "Product",
    "RowError",
    "UpsertResult",
    "check_gtin",
    "find_product",
    "find_products",
    "get_product",
    "get_product_by_code",
    "get_product_by_ean",
    "get_product_by_sku",
    "get_products",
    "import_products_csv",
    "kit_components",
    "set_kit_components",
    "set_sync_enabled",
    "upsert_product",
]

LinkKey = Literal["sku", "ean", "code"]
LINK_KEYS: frozenset[str] = frozenset({"sku", "ean", "code"})


@dataclass(frozen=True)
class UpsertResult:
    product_id: int
    created: bool
    changed: bool


# --- lookups ---------------------------------------------------------------------------------------


async def get_product(conn: aiosqlite.Connection, product_id: int) -> Product | None:
    return (await get_products(conn, [product_id])).get(product_id)


async def get_products(conn: aiosqlite.Connection, product_ids: Iterable[int]) -> dict[int, Product]:
    rows = await conn.execute_fetchall(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id IN {IN_JSON}", (json_list(product_ids),)
    )
    return {int(r["id"]): product_from_row(r) for r in rows}


async def product_refs(conn: aiosqlite.Connection, product_ids: Iterable[int]) -> dict[int, ProductRef]:
    """What a stock or price push needs of each product, without building whole products."""
    rows = await conn.execute_fetchall(
        f"SELECT id, sku, manage_stock, sync_enabled FROM products WHERE id IN {IN_JSON}",
        (json_list(product_ids),),
    )
    return {int(r[0]): ProductRef(int(r[0]), str(r[1]), bool(r[2]), bool(r[3])) for r in rows}


async def find_products(
    conn: aiosqlite.Connection, key: LinkKey, values: Iterable[str]
) -> dict[str, Product]:
    """Products by SKU, EAN or code, many at once. An EAN or code shared by two products cannot
    link anything, so it raises AmbiguousProduct naming both SKUs."""
    if key not in LINK_KEYS:
        raise InvalidData(f"products are found by one of {sorted(LINK_KEYS)}, not {key!r}")
    wanted = sorted({v for v in values if v})
    if not wanted:
        return {}
    rows = await conn.execute_fetchall(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE {key} IN {IN_JSON} ORDER BY id",
        (json_list(wanted),),
    )
    found: dict[str, Product] = {}
    for r in rows:
        product = product_from_row(r)
        value = str(r[key])
        if value in found:
            raise AmbiguousProduct(
                f"{key} {value!r} matches more than one product "
                f"({found[value].sku!r}, {product.sku!r}); make it unique to link by it"
            )
        found[value] = product
    return found


async def find_product(conn: aiosqlite.Connection, key: LinkKey, value: str) -> Product | None:
    return (await find_products(conn, key, [value])).get(value)


async def get_product_by_sku(conn: aiosqlite.Connection, sku: str) -> Product | None:
    return await find_product(conn, "sku", sku)


async def get_product_by_ean(conn: aiosqlite.Connection, ean: str) -> Product | None:
    return await find_product(conn, "ean", ean)


async def get_product_by_code(conn: aiosqlite.Connection, code: str) -> Product | None:
    return await find_product(conn, "code", code)


# --- writes ----------------------------------------------------------------------------------------

_EDITABLE = ("name", "ean", "code", "description", "weight_kg", "active", "manage_stock", "sync_enabled")


def _upsert_sql(columns: Sequence[str]) -> str:
    cols = ["sku", *columns]
    changed = " OR ".join(f"{c} IS NOT excluded.{c}" for c in columns) or "0"
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns)
    return (
        f"INSERT INTO products ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
        f"ON CONFLICT (sku) DO UPDATE SET {sets}, "
        f"updated_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now') WHERE {changed}"
    )


async def upsert_product(
    conn: aiosqlite.Connection,
    sku: str,
    name: str,
    *,
    ean: str | None = None,
    code: str | None = None,
    description: str = "",
    weight_kg: Decimal | None = None,
    active: bool = True,
    manage_stock: bool = True,
    sync_enabled: bool = True,
) -> UpsertResult:
    """Create or replace the product with this SKU (every field is set as given)."""
    sku = sku.strip()
    if not sku:
        raise InvalidData("sku must not be empty")
    if not name.strip():
        raise InvalidData(f"{sku}: name must not be empty")
    if ean:
        ean = check_gtin(ean.strip())
    if weight_kg is not None and (not Decimal(weight_kg).is_finite() or weight_kg < 0):
        raise InvalidData(f"{sku}: weight_kg must be >= 0, got {weight_kg}")
    values: dict[str, Any] = {
        "name": name.strip(),
        "ean": ean or None,
        "code": (code or "").strip() or None,
        "description": description,
        "weight_kg": None if weight_kg is None else decimal_text(Decimal(weight_kg)),
        "active": int(active),
        "manage_stock": int(manage_stock),
        "sync_enabled": int(sync_enabled),
    }
    async with transaction(conn):
        before = await conn.execute_fetchall("SELECT id FROM products WHERE sku = ?", (sku,))
        existed = bool(list(before))
        cursor = await conn.execute(_upsert_sql(_EDITABLE), (sku, *(values[c] for c in _EDITABLE)))
        changed = cursor.rowcount > 0
        rows = list(await conn.execute_fetchall("SELECT id FROM products WHERE sku = ?", (sku,)))
    return UpsertResult(int(rows[0]["id"]), created=not existed, changed=changed)


async def set_sync_enabled(conn: aiosqlite.Connection, product_ids: Iterable[int], enabled: bool) -> int:
    """Choose which products go to the channels ("push selected products")."""
    async with transaction(conn):
        cursor = await conn.execute(
            f"UPDATE products SET sync_enabled = ? WHERE id IN {IN_JSON} AND sync_enabled IS NOT ?",
            (int(enabled), json_list(product_ids), int(enabled)),
        )
    return max(cursor.rowcount, 0)


# --- kits ------------------------------------------------------------------------------------------


async def kit_components(
    conn: aiosqlite.Connection, kit_ids: Iterable[int]
) -> dict[int, list[tuple[int, int]]]:
    """``{kit_id: [(component_id, quantity per kit)]}``."""
    rows = await conn.execute_fetchall(
        f"SELECT kit_id, component_id, quantity FROM kit_components WHERE kit_id IN {IN_JSON} "
        "ORDER BY kit_id, component_id",
        (json_list(kit_ids),),
    )
    result: dict[int, list[tuple[int, int]]] = {}
    for r in rows:
        result.setdefault(int(r["kit_id"]), []).append((int(r["component_id"]), int(r["quantity"])))
    return result


async def set_kit_components(
    conn: aiosqlite.Connection, kit_id: int, components: Sequence[tuple[int, int]]
) -> bool:
    """Make ``kit_id`` a kit of exactly these ``(component_id, quantity)`` (empty: no longer a kit).

    Kits do not nest: a component cannot itself be a kit, and a kit cannot be a component.
    Returns True when anything changed.
    """
    wanted: dict[int, int] = {}
    for component_id, quantity in components:
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise InvalidData(
                f"kit {kit_id}: quantity of component {component_id} must be a whole number > 0"
            )
        if component_id == kit_id:
            raise InvalidData(f"kit {kit_id} cannot contain itself")
        if component_id in wanted:
            raise InvalidData(f"kit {kit_id}: component {component_id} is listed twice")
        wanted[component_id] = quantity
    async with transaction(conn):
        products = await get_products(conn, [kit_id, *wanted])
        if kit_id not in products:
            raise NotFoundError(f"no product with id {kit_id}")
        missing = [c for c in wanted if c not in products]
        if missing:
            raise NotFoundError(f"kit {products[kit_id].sku!r}: no product with id {missing}")
        nested = await kit_components(conn, list(wanted))
        kits_among = [products[c].sku for c in wanted if products[c].is_kit or c in nested]
        if kits_among:
            raise InvalidData(f"kit {products[kit_id].sku!r}: components {kits_among} are kits themselves")
        if wanted:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT p.sku FROM kit_components kc JOIN products p ON p.id = kc.kit_id "
                    "WHERE kc.component_id = ? LIMIT 1",
                    (kit_id,),
                )
            )
            if rows:
                raise InvalidData(
                    f"{products[kit_id].sku!r} is a component of kit {rows[0]['sku']!r}, "
                    "so it cannot be a kit itself"
                )
        current = dict((await kit_components(conn, [kit_id])).get(kit_id, []))
        flag_changed = products[kit_id].is_kit != bool(wanted)
        if current == wanted and not flag_changed:
            return False
        if current != wanted:
            await conn.execute("DELETE FROM kit_components WHERE kit_id = ?", (kit_id,))
            await conn.executemany(
                "INSERT INTO kit_components (kit_id, component_id, quantity) VALUES (?, ?, ?)",
                [(kit_id, c, q) for c, q in sorted(wanted.items())],
            )
        if flag_changed:
            await conn.execute("UPDATE products SET is_kit = ? WHERE id = ?", (int(bool(wanted)), kit_id))
    return True


# --- CSV import ------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "sku",
    "name",
    "ean",
    "code",
    "description",
    "weight_kg",
    "active",
    "list_price",
    "sale_price",
    "cost_price",
    "stock",
    "warehouse",
)
_PRODUCT_CSV = ("name", "ean", "code", "description", "weight_kg", "active")
_PRICE_CSV = ("list_price", "sale_price", "cost_price")
_TRUE = {"1", "true", "t", "yes", "y", "sim", "s", "x"}
_FALSE = {"0", "false", "f", "no", "n", "nao", "não"}


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    message: str
    sku: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    prices_changed: int = 0
    stock_changed: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Row:
    line: int
    sku: str
    product: dict[str, Any]
    price: dict[str, Decimal | None]
    stock: int | None
    warehouse: str | None


class _CellError(ValueError):
    pass


async def import_products_csv(
    conn: aiosqlite.Connection,
    text: str,
    *,
    default_warehouse: str | None = None,
    stock_reason: str = "import",
) -> ImportReport:
    """Import products, prices and stock counts from CSV text (',' or ';' separated).

    Every row is validated; a bad row is reported with its line number and column and skipped,
    and the good rows are imported in one transaction. Columns missing from the header leave
    those fields of existing products alone; an empty price cell leaves that price alone. A
    header problem (unknown or duplicate column, no ``sku``) imports nothing.
    """
    report = ImportReport()
    text = text.removeprefix("\ufeff")
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        report.errors.append(RowError(1, None, "the file is empty"))
        return report
    header_errors = _check_header(header)
    if header_errors:
        report.errors.extend(header_errors)
        return report

    parsed: list[_Row] = []
    seen: dict[str, int] = {}
    line = reader.line_num + 1
    for cells in reader:
        start, line = line, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        report.rows += 1
        row = _parse_row(start, header, cells, default_warehouse, report.errors)
        if row is None:
            continue
        if row.sku in seen:
            report.errors.append(
                RowError(start, "sku", f"{row.sku!r} already appears on line {seen[row.sku]}", row.sku)
            )
            continue
        seen[row.sku] = start
        parsed.append(row)

    product_cols = [c for c in _PRODUCT_CSV if c in header]
    async with transaction(conn):
        existing = await find_products(conn, "sku", [r.sku for r in parsed])
        warehouses = {w.code: w.id for w in await stock_repo.list_warehouses(conn)}
        current_prices = await prices_repo.get_prices(conn, [p.id for p in existing.values()])
        parsed = _cross_check(parsed, existing, current_prices, warehouses, report.errors)

        writes = []
        for row in parsed:
            before = existing.get(row.sku)
            if before is None:
                report.created += 1
                writes.append(row)
            elif any(_stored(getattr(before, c)) != row.product[c] for c in product_cols):
                report.updated += 1
                writes.append(row)
            else:
                report.unchanged += 1
        if writes:
            await conn.executemany(
                _upsert_sql(product_cols), [(r.sku, *(r.product[c] for c in product_cols)) for r in writes]
            )
        ids = {p.sku: p.id for p in (await find_products(conn, "sku", [r.sku for r in parsed])).values()}

        price_rows = []
        for row in parsed:
            merged = _merged_price(row, current_prices.get(ids[row.sku]))
            if merged is not None:
                price_rows.append((ids[row.sku], *merged))
        if price_rows:
            cursor = await conn.executemany(
                "INSERT INTO prices (product_id, list_price, sale_price, cost_price) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (product_id) DO UPDATE SET list_price = excluded.list_price, "
                "sale_price = excluded.sale_price, cost_price = excluded.cost_price, "
                "updated_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now') "
                "WHERE list_price IS NOT excluded.list_price OR sale_price IS NOT excluded.sale_price "
                "OR cost_price IS NOT excluded.cost_price",
                price_rows,
            )
            report.prices_changed = max(cursor.rowcount, 0)

        counts = [(ids[r.sku], r.stock, r.warehouse) for r in parsed if r.stock is not None and r.warehouse]
        on_hand = await stock_repo.levels(conn, [pid for pid, _, _ in counts])
        movements = []
        for pid, quantity, warehouse in counts:
            delta = quantity - on_hand.get(pid, {}).get(warehouse, 0)
            if delta:
                movements.append((pid, warehouses[warehouse], delta, stock_reason, "csv import"))
        await stock_repo.insert_movements(conn, movements)
        report.stock_changed = len(movements)
    return report


def _check_header(header: list[str]) -> list[RowError]:
    errors: list[RowError] = []
    for name in header:
        if name not in CSV_COLUMNS:
            errors.append(RowError(1, name, f"unknown column {name!r}; expected some of {list(CSV_COLUMNS)}"))
        elif header.count(name) > 1:
            errors.append(RowError(1, name, f"column {name!r} appears more than once"))
    if "sku" not in header:
        errors.append(RowError(1, "sku", "the header has no 'sku' column"))
    if "warehouse" in header and "stock" not in header:
        errors.append(RowError(1, "warehouse", "a 'warehouse' column needs a 'stock' column"))
    return errors


def _parse_row(
    line: int, header: list[str], cells: list[str], default_warehouse: str | None, errors: list[RowError]
) -> _Row | None:
    if len(cells) > len(header):
        errors.append(RowError(line, None, f"{len(cells)} fields but the header has {len(header)}"))
        return None
    values = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}
    sku = values["sku"]
    if not sku:
        errors.append(RowError(line, "sku", "sku is empty"))
        return None
    row = _Row(line, sku, {}, {}, None, None)
    before = len(errors)

    def cell(column: str, convert: Any) -> None:
        if column not in values:
            return
        try:
            converted = convert(values[column])
        except _CellError as exc:
            errors.append(RowError(line, column, str(exc), sku))
            return
        if column in _PRICE_CSV:
            row.price[column] = converted
        elif column == "stock":
            row.stock = converted
        elif column == "warehouse":
            row.warehouse = converted
        else:
            row.product[column] = converted

    cell("name", lambda v: v)
    cell("ean", _ean_cell)
    cell("code", lambda v: v or None)
    cell("description", lambda v: v)
    cell("weight_kg", lambda v: None if not v else decimal_text(_number(v, places=3)))
    cell("active", _bool_cell)
    cell("list_price", lambda v: None if not v else _number(v, places=2, positive=True))
    cell("sale_price", lambda v: None if not v else _number(v, places=2, positive=True))
    cell("cost_price", lambda v: None if not v else _number(v, places=2))
    cell("stock", _stock_cell)
    cell("warehouse", lambda v: v or None)
    if row.stock is not None and row.warehouse is None:
        if default_warehouse is None:
            errors.append(RowError(line, "warehouse", "stock given without a warehouse", sku))
        row.warehouse = default_warehouse
    return None if len(errors) > before else row


def _cross_check(
    rows: list[_Row],
    existing: dict[str, Product],
    current_prices: dict[int, prices_repo.PriceRow],
    warehouses: dict[str, int],
    errors: list[RowError],
) -> list[_Row]:
    """Checks that need the database: names of new products, prices, warehouses."""
    good: list[_Row] = []
    for row in rows:
        before = existing.get(row.sku)
        problems: list[RowError] = []
        if before is None and not row.product.get("name"):
            problems.append(RowError(row.line, "name", "a new product needs a name", row.sku))
        elif "name" in row.product and not row.product["name"]:
            problems.append(RowError(row.line, "name", "name is empty", row.sku))
        current = current_prices.get(before.id) if before else None
        list_price = row.price.get("list_price") or (current.list_price if current else None)
        if list_price is None and (row.price.get("sale_price") or row.price.get("cost_price")):
            problems.append(RowError(row.line, "list_price", "a price needs a list_price", row.sku))
        sale = row.price.get("sale_price")
        if sale is not None and list_price is not None and sale > list_price:
            problems.append(
                RowError(
                    row.line, "sale_price", f"sale_price {sale} is above list_price {list_price}", row.sku
                )
            )
        if row.warehouse is not None and row.warehouse not in warehouses:
            problems.append(
                RowError(
                    row.line,
                    "warehouse",
                    f"unknown warehouse {row.warehouse!r} (known: {sorted(warehouses)})",
                    row.sku,
                )
            )
        if problems:
            errors.extend(problems)
        else:
            good.append(row)
    errors.sort(key=lambda e: e.line)
    return good


def _merged_price(
    row: _Row, current: prices_repo.PriceRow | None
) -> tuple[str, str | None, str | None] | None:
    """The prices row after this CSV row (empty cells keep what is there), or None to leave it."""
    if not any(v is not None for v in row.price.values()):
        return None
    list_price = row.price.get("list_price") or (current.list_price if current else None)
    if list_price is None:
        return None
    sale = row.price.get("sale_price", None) or (current.sale_price if current else None)
    cost = row.price.get("cost_price", None) or (current.cost_price if current else None)
    return (
        money_text(list_price),
        None if sale is None else money_text(sale),
        None if cost is None else money_text(cost),
    )


def _stored(value: object) -> object:
    """A Product attribute in the form the CSV parser produces, for comparison."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return decimal_text(value)
    return value


def _number(text: str, *, places: int, positive: bool = False) -> Decimal:
    """Accepts 119.90, 119,90, 1.234,56 and 'R$ 10'; refuses negatives and extra decimals."""
    cleaned = text.replace("R$", "").replace(" ", "")
    if "," in cleaned and "." in cleaned:
        if cleaned.rfind(",") > cleaned.rfind("."):
            cleaned = cleaned.replace(".", "").replace(",", ".")
        else:
            cleaned = cleaned.replace(",", "")
    elif cleaned.count(",") == 1:
        cleaned = cleaned.replace(",", ".")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise _CellError(f"{text!r} is not a number") from None
    if not number.is_finite():
        raise _CellError(f"{text!r} is not a number")
    if number < 0 or (positive and number == 0):
        raise _CellError(f"{text!r} must be {'greater than zero' if positive else 'zero or more'}")
    if number != round(number, places):
        if places == 0:
            raise _CellError(f"{text!r} is not a whole number")
        raise _CellError(f"{text!r} has more than {places} decimal places")
    return number.quantize(Decimal(1).scaleb(-places)) if places == 2 else number


def _bool_cell(text: str) -> int:
    lowered = text.lower()
    if lowered == "" or lowered in _TRUE:
        return 1
    if lowered in _FALSE:
        return 0
    raise _CellError(f"{text!r} is not yes/no (use 1/0, true/false or sim/não)")


def _stock_cell(text: str) -> int | None:
    if not text:
        return None
    number = _number(text, places=0)
    return int(number)


def _ean_cell(text: str) -> str | None:
    if not text or text.upper() in {"SEM GTIN", "SEM EAN"}:
        return None
    try:
        return check_gtin(text)
    except InvalidData as exc:
        raise _CellError(str(exc)) from None


def check_gtin(text: str) -> str:
    """EAN-8/UPC-12/EAN-13/GTIN-14 with a correct check digit."""
    digits = text.strip()
    if not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
        raise InvalidData(f"EAN {text!r} must be 8, 12, 13 or 14 digits")
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    if (10 - total % 10) % 10 != check:
        raise InvalidData(f"EAN {text!r} has a wrong check digit")
    return digits
