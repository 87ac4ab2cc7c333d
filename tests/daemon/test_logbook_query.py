"""Log queries: keyset paging newest first, every filter, index use, rows after an id."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.clock import FakeClock, utc_iso
from daemon.controlapi.wire import LogRow
from daemon.logbook import LogBook, LogSink, event_to_row
from daemon.logquery import LEVELS, page_query, query_logs, rows_after

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CHANNELS = ["loja", "ml", None]
FLOWS = ["orders", "stock", "prices", None]
ENTITIES = [("product", "7"), ("product", "8"), ("order", "7"), (None, None)]
WORDS = ["pedido importado", "Estoque enviado", "preço 100% off", "a_b literal", "nada"]


@dataclass
class Spec:
    id: int
    ts: datetime
    level: str
    event: str
    channel: str | None
    flow: str | None
    entity: str | None
    entity_id: str | None
    note: str


def make_specs(n: int = 600, seed: int = 7) -> list[Spec]:
    rnd = random.Random(seed)
    specs = []
    for i in range(n):
        # Roughly a minute apart, with some rows stamped a little before the previous ones (events
        # queued from threads or slow batches): ids follow commit order, not ts order.
        ts = T0 + timedelta(minutes=i) - timedelta(seconds=rnd.choice([0, 0, 0, 90, 150]))
        entity, entity_id = rnd.choice(ENTITIES)
        specs.append(
            Spec(
                id=i + 1,
                ts=ts,
                level=rnd.choice(["debug", "info", "info", "info", "warning", "error", "critical"]),
                event=rnd.choice(["flow_run", "item_pushed", "order_imported"]),
                channel=rnd.choice(CHANNELS),
                flow=rnd.choice(FLOWS),
                entity=entity,
                entity_id=entity_id,
                note=rnd.choice(WORDS),
            )
        )
    return specs


SPECS = make_specs()


@pytest.fixture
async def book(tmp_path: Path) -> AsyncIterator[LogBook]:
    opened = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    for s in SPECS:
        fields: dict[str, Any] = {
            "event": s.event,
            "ts": utc_iso(s.ts),
            "level": s.level,
            "note": s.note,
            "channel": s.channel,
            "flow": s.flow,
            "entity": s.entity,
            "entity_id": s.entity_id,
        }
        opened.sink.offer(event_to_row({k: v for k, v in fields.items() if v is not None}))
    await opened.flush()
    yield opened
    await opened.aclose()


def expected(
    *,
    channel: str | None = None,
    flow: str | None = None,
    level: str | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str | None = None,
    cursor: int | None = None,
) -> list[int]:
    out = []
    for s in SPECS:
        if channel is not None and s.channel != channel:
            continue
        if flow is not None and s.flow != flow:
            continue
        if level is not None and LEVELS.index(s.level) < LEVELS.index(level):
            continue
        if entity is not None and s.entity != entity:
            continue
        if entity_id is not None and s.entity_id != entity_id:
            continue
        if since is not None and s.ts < since:
            continue
        if until is not None and s.ts >= until:
            continue
        if q and q.lower() not in (s.event + " " + s.note).lower():
            continue
        if cursor is not None and s.id >= cursor:
            continue
        out.append(s.id)
    return sorted(out, reverse=True)


async def collect(book: LogBook, *, limit: int, **kw: Any) -> tuple[list[int], int]:
    """Follow next_cursor to the end; return every id seen and the number of pages."""
    ids: list[int] = []
    cursor = kw.pop("cursor", None)
    pages = 0
    while True:
        page = await query_logs(book.reader, cursor=cursor, limit=limit, **kw)
        pages += 1
        assert len(page.rows) <= limit
        ids.extend(r.id for r in page.rows)
        if page.next_cursor is None:
            return ids, pages
        assert all(r.id >= page.next_cursor for r in page.rows)
        cursor = page.next_cursor
        assert pages < 10_000


FILTERS: list[dict[str, Any]] = [
    {},
    {"channel": "loja"},
    {"flow": "stock"},
    {"channel": "ml", "flow": "orders"},
    {"level": "warning"},
    {"level": "error"},
    {"level": "info"},
    {"level": "critical", "channel": "loja"},
    {"entity": "product"},
    {"entity": "product", "entity_id": "7"},
    {"entity_id": "7"},
    {"since": T0 + timedelta(minutes=100)},
    {"until": T0 + timedelta(minutes=100)},
    {"since": T0 + timedelta(minutes=200), "until": T0 + timedelta(minutes=260)},
    {"q": "PEDIDO"},
    {"q": "100%"},
    {"q": "a_b"},
    {"q": "imported", "channel": "ml", "level": "warning"},
    {"cursor": 300},
    {"cursor": 300, "channel": "loja", "since": T0 + timedelta(minutes=100)},
    {"channel": "nowhere"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(sorted(f)) or "none")
async def test_every_filter_pages_exactly_newest_first(book: LogBook, filters: dict[str, Any]) -> None:
    want = expected(**filters)
    # Small windows and pages: many windows per page, many pages.
    ids, _ = await collect(book, limit=37, first_window=16, max_window=64, **filters)
    assert ids == want


@pytest.mark.parametrize("filters", [{}, {"q": "literal"}, {"level": "critical"}], ids=["none", "q", "crit"])
async def test_a_spent_time_budget_returns_a_partial_page_that_resumes_exactly(
    book: LogBook, filters: dict[str, Any]
) -> None:
    ids, pages = await collect(book, limit=50, first_window=20, max_window=20, time_budget=0.0, **filters)
    assert ids == expected(**filters)
    assert pages >= len(SPECS) // 20  # one window per call


async def test_page_rows_are_complete(book: LogBook) -> None:
    page = await book.query(entity="product", entity_id="8", limit=1)
    row = page.rows[0]
    spec = SPECS[row.id - 1]
    assert isinstance(row, LogRow)
    assert (row.event, row.level, row.channel, row.flow, row.entity, row.entity_id) == (
        spec.event,
        spec.level,
        spec.channel,
        spec.flow,
        "product",
        "8",
    )
    assert row.ts == spec.ts
    assert row.data == {"note": spec.note}
    assert page.next_cursor == row.id


async def test_bad_arguments_say_what_is_wrong(book: LogBook) -> None:
    with pytest.raises(ValueError, match="unknown level 'loud'"):
        await book.query(level="loud")
    with pytest.raises(ValueError, match="limit must be between 1 and"):
        await book.query(limit=0)


async def test_empty_log(tmp_path: Path) -> None:
    book = await LogBook.open(tmp_path / "log.db", sink=LogSink(clock=FakeClock()))
    try:
        page = await book.query(channel="loja")
        assert page.rows == [] and page.next_cursor is None
        assert await book.rows_after(0) == []
    finally:
        await book.aclose()


async def test_rows_after_is_oldest_first_and_limited(book: LogBook) -> None:
    rows = await rows_after(book.reader, 595, limit=3)
    assert [r.id for r in rows] == [596, 597, 598]
    assert [r.id for r in await book.rows_after(598)] == [599, 600]


COMBOS = [
    dict(zip(("channel", "flow", "level", "entity", "entity_id", "q"), values, strict=True))
    for values in itertools.product(
        [None, "loja"],
        [None, "stock"],
        [None, "info", "warning", "error"],
        [None, "product"],
        [None, "7"],
        [None, "x"],
    )
]


@pytest.mark.parametrize("filters", COMBOS)
async def test_every_filter_combination_uses_an_index_without_sorting(
    book: LogBook, filters: dict[str, Any]
) -> None:
    sql, params = page_query(since=T0, until=T0 + timedelta(hours=1), **filters)
    async with book.reader.execute("EXPLAIN QUERY PLAN " + sql, [*params, 0, 1000, 200]) as cur:
        plan = [str(r[3]) for r in await cur.fetchall()]
    assert all(step.startswith("SEARCH") for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
