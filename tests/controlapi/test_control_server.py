"""The control API over a real Unix socket: every route, errors, permissions, socket life cycle."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest

from daemon.clock import FakeClock
from daemon.controlapi.client import ControlClient, ControlError, ControlTimeout, DaemonNotRunning
from daemon.controlapi.runtime import FieldError
from daemon.controlapi.server import (
    AnotherDaemonRunning,
    ControlServer,
    ControlSocketError,
    PeerCred,
    default_authorizer,
)
from daemon.controlapi.wire import (
    ActionResult,
    ChannelStatus,
    DaemonStatus,
    FlowStatus,
    ImportFailure,
    LogPage,
    LogRow,
    OutboxItem,
    OutboxState,
    Parcel,
    Problems,
)
from daemon.events import EventBus
from daemon.logbook import LogBook, LogSink, event_to_row
from daemon.secrets import SecretRegistry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "sk-live-SECRET-4711"


class FakeRuntime:
    """Records every call; a real LogBook behind the log routes."""

    def __init__(self, book: LogBook) -> None:
        self.book = book
        self.calls: list[tuple[str, Any]] = []
        self.flows = {"loja": ["orders", "stock"], "ml": ["orders"]}
        self.last_error: str | None = None
        self.status_calls = 0

    @property
    def erp(self) -> Self:
        """One fake plays both the runtime and its ERP operations."""
        return self

    @property
    def bus(self) -> EventBus:
        return self.book.bus

    def _ok(self, name: str, *args: Any) -> ActionResult:
        self.calls.append((name, args))
        return ActionResult(ok=True, message=f"{name} done", details={"args": [str(a) for a in args]})

    def _check(self, channel: str | None, flow: str | None) -> None:
        if channel is not None and channel not in self.flows:
            raise KeyError(f"unknown channel {channel!r}")
        if channel is not None and flow is not None and flow not in self.flows[channel]:
            raise KeyError(f"channel {channel!r} has no flow {flow!r}")

    async def status(self) -> DaemonStatus:
        self.status_calls += 1
        channels = [
            ChannelStatus(
                name=name,
                kind="lojaintegrada",
                enabled=True,
                state="idle",
                last_error=self.last_error,
                flows=[FlowStatus(flow=f, state="idle", interval_seconds=60, batch_size=50) for f in flows],
            )
            for name, flows in self.flows.items()
        ]
        return DaemonStatus(
            version="0.1.0", pid=os.getpid(), started_at=T0, channels=channels, log_queue_dropped=2
        )

    async def query_logs(
        self,
        *,
        channel: str | None,
        flow: str | None,
        level: str | None,
        entity: str | None,
        entity_id: str | None,
        since: datetime | None,
        until: datetime | None,
        q: str | None,
        cursor: int | None,
        limit: int,
    ) -> LogPage:
        kwargs = dict(
            channel=channel,
            flow=flow,
            level=level,
            entity=entity,
            entity_id=entity_id,
            since=since,
            until=until,
            q=q,
            cursor=cursor,
            limit=limit,
        )
        self.calls.append(("query_logs", kwargs))
        return await self.book.query(**kwargs)

    async def log_rows_after(self, after_id: int, limit: int) -> list[LogRow]:
        return await self.book.rows_after(after_id, limit)

    async def sync_now(self, channel: str | None, flow: str | None) -> ActionResult:
        self._check(channel, flow)
        return self._ok("sync_now", channel, flow)

    async def pause(self, channel: str, flow: str | None) -> ActionResult:
        self._check(channel, flow)
        return self._ok("pause", channel, flow)

    async def resume(self, channel: str, flow: str | None) -> ActionResult:
        self._check(channel, flow)
        return self._ok("resume", channel, flow)

    async def reload(self) -> ActionResult:
        self.calls.append(("reload", ()))
        return ActionResult(ok=False, message="settings not reloaded", details={"problems": ["a: bad"]})

    async def push_stock(self, sku: str) -> ActionResult:
        if sku == "NOPE":
            raise KeyError(f"unknown SKU {sku!r}")
        return self._ok("push_stock", sku)

    async def link_product(self, sku: str, channel: str, remote_id: str) -> ActionResult:
        self._check(channel, None)
        if remote_id == "TAKEN":
            raise ValueError("'TAKEN' is already bound to local id 9")
        return self._ok("link_product", sku, channel, remote_id)

    async def unlink_product(self, sku: str, channel: str) -> ActionResult:
        self._check(channel, None)
        return self._ok("unlink_product", sku, channel)

    async def retry_outbox(self, ids: list[int] | None, channel: str | None) -> ActionResult:
        self._check(channel, None)
        return self._ok("retry_outbox", ids, channel)

    async def dismiss_import_failure(self, failure_id: int) -> ActionResult:
        if failure_id != 1:
            raise KeyError(f"no import failure {failure_id}")
        return self._ok("dismiss_import_failure", failure_id)

    async def outbox(
        self, state: OutboxState | None, channel: str | None, limit: int, after_id: int | None
    ) -> list[OutboxItem]:
        self.calls.append(("outbox", (state, channel, limit, after_id)))
        items = [
            OutboxItem(
                id=i, channel="loja", entity="stock", entity_id=i, sku=f"SKU{i}", state="failed", attempts=2
            )
            for i in range(1, 6)
        ]
        return [i for i in items if after_id is None or i.id > after_id][:limit]

    async def problems(self) -> Problems:
        failure = ImportFailure(
            id=1,
            channel="ml",
            entity="order",
            remote_id="2000",
            error="unknown SKU X",
            attempts=3,
            state="open",
            first_seen_at=T0,
            last_seen_at=T0,
        )
        return Problems(import_failures=[failure])

    async def explain(self, channel: str, entity: str, sku: str) -> dict[str, Any]:
        self._check(channel, None)
        return {"channel": channel, "entity": entity, "sku": sku, "value": 3, "on_hand": {"MAIN": 5}}

    async def stock_set(self, sku: str, warehouse: str | None, quantity: int) -> ActionResult:
        if sku == "NOPE":
            raise KeyError(f"unknown SKU {sku!r}")
        if quantity > 1_000_000:
            raise FieldError("quantity is larger than any shelf", "quantity")
        return self._ok("stock_set", sku, warehouse, quantity)

    async def stock_move(
        self, sku: str, warehouse: str | None, delta: int, reason: str, reference: str | None
    ) -> ActionResult:
        if reason not in ("adjust", "sale", "return"):
            raise ValueError(f"reason must be adjust, sale or return, not {reason!r}")
        return self._ok("stock_move", sku, warehouse, delta, reason, reference)

    async def price_set(
        self,
        sku: str,
        list_price: Decimal,
        sale_price: Decimal | None,
        cost_price: Decimal | None,
        promo_price: Decimal | None,
        promo_start: datetime | None,
        promo_end: datetime | None,
    ) -> ActionResult:
        return self._ok(
            "price_set", sku, list_price, sale_price, cost_price, promo_price, promo_start, promo_end
        )

    async def import_products_csv(self, text: str) -> ActionResult:
        lines = text.strip().splitlines()
        errors = [
            {"line": n, "field": "sku", "error": "is empty"}
            for n, line in enumerate(lines[1:], start=2)
            if not line.split(",")[0].strip()
        ]
        self.calls.append(("import_products_csv", text))
        return ActionResult(
            ok=not errors, message=f"{len(lines) - 1 - len(errors)} imported", details={"errors": errors}
        )

    async def invoice_add(
        self,
        channel: str,
        order_number: str,
        number: str,
        series: str,
        access_key: str,
        issued_at: datetime,
        danfe_url: str | None,
        xml_url: str | None,
    ) -> ActionResult:
        if len(access_key) != 44:
            raise FieldError(f"access_key must have 44 digits, got {len(access_key)}", "access_key")
        if SECRET in order_number:
            raise ValueError(f"order {order_number} is not known")
        return self._ok("invoice_add", channel, order_number, number, series, access_key, issued_at)

    async def tracking_add(
        self, channel: str, order_number: str, carrier: str | None, code: str, url: str | None
    ) -> ActionResult:
        self._check(channel, None)
        return self._ok("tracking_add", channel, order_number, carrier, code, url)

    async def order_parcels(self, channel: str, order_number: str) -> list[Parcel]:
        self._check(channel, None)
        if order_number != "1077":
            raise KeyError(f"no order {order_number!r} on {channel!r}")
        return [
            Parcel(
                shipment_id=3, channel=channel, order_id=77, order_number=order_number,
                carrier="correios_pac", tracking_code="QP123456785BR", status="in_transit",
                event="Objeto em transferência", since=T0, checked_at=T0,
            )
        ]  # fmt: skip


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ssc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def book(sock_dir: Path) -> AsyncIterator[LogBook]:
    opened = await LogBook.open(sock_dir / "log.db", sink=LogSink(clock=FakeClock()))
    yield opened
    await opened.aclose()


@pytest.fixture
def runtime(book: LogBook) -> FakeRuntime:
    return FakeRuntime(book)


@pytest.fixture
def registry() -> SecretRegistry:
    reg = SecretRegistry()
    reg.register(SECRET)
    return reg


@pytest.fixture
async def server(
    runtime: FakeRuntime, sock_dir: Path, registry: SecretRegistry
) -> AsyncIterator[ControlServer]:
    srv = ControlServer(runtime, sock_dir / "control.sock", heartbeat_interval=0.05, redactor=registry)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def client(server: ControlServer) -> AsyncIterator[ControlClient]:
    async with ControlClient(server.socket_path, timeout=5) as c:
        yield c


async def raw(
    server: ControlServer,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    connector = aiohttp.UnixConnector(path=str(server.socket_path))
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.request(
            method, "http://x" + path, data=body, headers={"Content-Type": content_type}
        ) as response,
    ):
        text = await response.text()
        return response.status, json.loads(text)


async def write_logs(book: LogBook, count: int, **fields: Any) -> None:
    for i in range(count):
        book.sink.offer(event_to_row({"event": f"e{i}", "level": "info", **fields}))
    await book.flush()


# --- the socket ------------------------------------------------------------------------------------


async def test_socket_is_0660_and_removed_on_stop(runtime: FakeRuntime, sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    srv = ControlServer(runtime, path)
    await srv.start()
    info = path.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    await srv.stop()
    assert not path.exists()


async def test_a_stale_socket_is_replaced(runtime: FakeRuntime, sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()  # the file stays, nobody listens: what a crash leaves behind
    async with ControlClient(path, timeout=2) as c:
        with pytest.raises(DaemonNotRunning):
            await c.status()
    srv = ControlServer(runtime, path)
    await srv.start()
    try:
        async with ControlClient(path, timeout=2) as c:
            assert (await c.status()).version == "0.1.0"
    finally:
        await srv.stop()


async def test_a_live_daemon_is_not_displaced(server: ControlServer, runtime: FakeRuntime) -> None:
    second = ControlServer(runtime, server.socket_path)
    with pytest.raises(AnotherDaemonRunning, match=r"another storesync daemon is running on .*control\.sock"):
        await second.start()
    async with ControlClient(server.socket_path, timeout=2) as c:  # the first one still answers
        assert (await c.status()).pid == os.getpid()


async def test_a_listener_without_our_lock_is_not_displaced_either(
    runtime: FakeRuntime, sock_dir: Path
) -> None:
    path = sock_dir / "control.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    other.listen(1)
    try:
        with pytest.raises(AnotherDaemonRunning):
            await ControlServer(runtime, path).start()
        assert path.exists()
    finally:
        other.close()


async def test_a_regular_file_in_the_way_is_reported(runtime: FakeRuntime, sock_dir: Path) -> None:
    path = sock_dir / "control.sock"
    path.write_text("not a socket")
    with pytest.raises(ControlSocketError, match="exists and is not a socket"):
        await ControlServer(runtime, path).start()
    assert path.read_text() == "not a socket"


async def test_client_without_a_daemon(sock_dir: Path) -> None:
    async with ControlClient(sock_dir / "missing.sock", timeout=2) as c:
        with pytest.raises(DaemonNotRunning) as info:
            await c.status()
    assert str(info.value) == f"no daemon is running on {sock_dir / 'missing.sock'}"
    assert info.value.socket_path == str(sock_dir / "missing.sock")


async def test_peers_not_allowed_get_403(runtime: FakeRuntime, sock_dir: Path) -> None:
    seen: list[PeerCred] = []

    def deny(peer: PeerCred) -> bool:
        seen.append(peer)
        return False

    srv = ControlServer(runtime, sock_dir / "control.sock", authorize=deny)
    await srv.start()
    try:
        async with ControlClient(srv.socket_path, timeout=2) as c:
            with pytest.raises(ControlError) as info:
                await c.status()
        assert info.value.status == 403
        assert "permission denied" in info.value.message
        assert seen and seen[0].uid == os.getuid() and seen[0].pid == os.getpid()
        assert runtime.status_calls == 0
    finally:
        await srv.stop()


def test_default_authorizer_rules() -> None:
    own = os.getuid()
    allow = default_authorizer(socket_gid=4242, own_uid=own)
    stranger = 54_321 if own != 54_321 else 54_322
    assert allow(PeerCred(pid=os.getpid(), uid=own, gid=1))
    assert allow(PeerCred(pid=os.getpid(), uid=0, gid=1))
    assert allow(PeerCred(pid=2**22 + 7, uid=stranger, gid=4242))  # the socket's group
    assert not allow(PeerCred(pid=2**22 + 7, uid=stranger, gid=4243))


# --- reads -----------------------------------------------------------------------------------------


async def test_status_and_channels(client: ControlClient) -> None:
    status = await client.status()
    assert status.version == "0.1.0" and status.log_queue_dropped == 2
    assert [c.name for c in status.channels] == ["loja", "ml"]
    channels = await client.channels()
    assert [c.name for c in channels] == ["loja", "ml"]
    assert [f.flow for f in channels[0].flows] == ["orders", "stock"]


async def test_logs_with_filters_and_paging(
    client: ControlClient, runtime: FakeRuntime, book: LogBook
) -> None:
    await write_logs(book, 30, channel="loja", flow="stock")
    await write_logs(book, 5, channel="ml", level="error")
    page = await client.logs(channel="loja", limit=20)
    assert [r.id for r in page.rows] == list(range(30, 10, -1))
    assert page.next_cursor == 11
    older = await client.logs(channel="loja", limit=20, cursor=page.next_cursor)
    assert [r.id for r in older.rows] == list(range(10, 0, -1)) and older.next_cursor is None

    since = datetime(2026, 1, 1, tzinfo=UTC)
    await client.logs(
        channel="ml", flow="orders", level="error", entity="order", entity_id="9", since=since, q="x", limit=5
    )
    name, kwargs = runtime.calls[-1]
    assert name == "query_logs"
    assert kwargs == {
        "channel": "ml",
        "flow": "orders",
        "level": "error",
        "entity": "order",
        "entity_id": "9",
        "since": since,
        "until": None,
        "q": "x",
        "cursor": None,
        "limit": 5,
    }


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("level=loud", "level", "level must be one of debug, info, warning, error, critical"),
        ("cursor=abc", "cursor", "cursor must be a whole number"),
        ("limit=0", "limit", "limit must be between 1 and 5000"),
        ("limit=99999", "limit", "limit must be between 1 and 5000"),
        ("since=yesterday", "since", "since must be an ISO-8601 time"),
        (
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "since",
            "since must be earlier than until",
        ),
        ("chanel=loja", "chanel", "unknown query parameter 'chanel'"),
    ],
)
async def test_logs_bad_parameters_are_named(
    server: ControlServer, query: str, field: str, words: str
) -> None:
    status, body = await raw(server, "GET", f"/logs?{query}")
    assert status == 400
    assert body["field"] == field
    assert words in body["error"]


async def test_outbox(client: ControlClient, runtime: FakeRuntime, server: ControlServer) -> None:
    items = await client.outbox(state="failed", channel="loja", limit=2, after=1)
    assert [i.id for i in items] == [2, 3]
    assert runtime.calls[-1] == ("outbox", ("failed", "loja", 2, 1))
    status, body = await raw(server, "GET", "/outbox?state=lost")
    assert status == 400 and body["field"] == "state"
    assert "pending, sent, failed, parked" in body["error"]


async def test_problems_and_explain(client: ControlClient, server: ControlServer) -> None:
    problems = await client.problems()
    assert problems.import_failures[0].remote_id == "2000"
    explained = await client.explain("loja", "stock", "SKU-1")
    assert explained == {
        "channel": "loja",
        "entity": "stock",
        "sku": "SKU-1",
        "value": 3,
        "on_hand": {"MAIN": 5},
    }
    status, body = await raw(server, "GET", "/explain?channel=loja")
    assert (status, body["field"], body["error"]) == (400, "sku", "sku is required")
    status, body = await raw(server, "GET", "/explain?channel=loja&sku=A&entity=colour")
    assert status == 400 and body["field"] == "entity"
    with pytest.raises(ControlError) as info:
        await client.explain("nowhere", "stock", "A")
    assert (info.value.status, info.value.message) == (404, "unknown channel 'nowhere'")


# --- actions ---------------------------------------------------------------------------------------


async def test_sync_pause_resume_reload(client: ControlClient, runtime: FakeRuntime) -> None:
    assert (await client.sync()).ok
    assert (await client.sync(flow="orders")).ok
    assert (await client.sync("loja", "stock")).ok
    assert (await client.pause("loja")).ok
    assert (await client.resume("ml", "orders")).ok
    assert [c for c in runtime.calls if c[0] != "query_logs"] == [
        ("sync_now", (None, None)),
        ("sync_now", (None, "orders")),
        ("sync_now", ("loja", "stock")),
        ("pause", ("loja", None)),
        ("resume", ("ml", "orders")),
    ]
    reloaded = await client.reload()
    assert not reloaded.ok and reloaded.details["problems"] == ["a: bad"]


async def test_unknown_channel_or_flow_is_404(client: ControlClient) -> None:
    with pytest.raises(ControlError) as info:
        await client.sync("nowhere")
    assert info.value.status == 404 and info.value.message == "unknown channel 'nowhere'"
    with pytest.raises(ControlError) as info:
        await client.pause("ml", "stock")
    assert info.value.status == 404 and "has no flow 'stock'" in info.value.message


async def test_outbox_retry_dismiss_and_push_stock(client: ControlClient, runtime: FakeRuntime) -> None:
    await client.retry_outbox([3, 4], "loja")
    await client.retry_outbox()
    await client.dismiss_import_failure(1)
    await client.push_stock("CAM/01 azul")  # slashes and spaces survive the path
    assert runtime.calls == [
        ("retry_outbox", ([3, 4], "loja")),
        ("retry_outbox", (None, None)),
        ("dismiss_import_failure", (1,)),
        ("push_stock", ("CAM/01 azul",)),
    ]
    with pytest.raises(ControlError) as info:
        await client.dismiss_import_failure(2)
    assert info.value.status == 404
    with pytest.raises(ControlError) as info:
        await client.push_stock("NOPE")
    assert (info.value.status, info.value.message) == (404, "unknown SKU 'NOPE'")


async def test_an_orders_parcels(client: ControlClient) -> None:
    (parcel,) = await client.order_parcels("loja", "1077")
    assert (parcel.tracking_code, parcel.status, parcel.event) == (
        "QP123456785BR",
        "in_transit",
        "Objeto em transferência",
    )
    with pytest.raises(ControlError) as info:
        await client.order_parcels("loja", "9")
    assert info.value.status == 404 and "no order '9'" in info.value.message
    with pytest.raises(ControlError) as info:
        await client.order_parcels("loja", "")
    assert info.value.status == 400 and "order" in info.value.message


async def test_link_and_unlink_a_product(client: ControlClient, runtime: FakeRuntime) -> None:
    await client.link_product("CAM/01 azul", "loja", "10042")
    await client.unlink_product("CAM/01 azul", "loja")
    assert runtime.calls == [
        ("link_product", ("CAM/01 azul", "loja", "10042")),
        ("unlink_product", ("CAM/01 azul", "loja")),
    ]
    with pytest.raises(ControlError) as info:
        await client.link_product("SKU1", "nope", "1")
    assert info.value.status == 404 and "unknown channel 'nope'" in info.value.message
    with pytest.raises(ControlError) as info:
        await client.link_product("SKU1", "loja", "TAKEN")
    assert info.value.status == 400 and "already bound" in info.value.message
    with pytest.raises(ControlError, match="remote_id"):
        await client.link_product("SKU1", "loja", "")


async def test_stock_and_prices(client: ControlClient, runtime: FakeRuntime) -> None:
    await client.stock_set("SKU1", "MAIN", 7)
    await client.stock_set("SKU1", None, 0)
    await client.stock_move("SKU1", None, -2, reference="order:9")
    await client.price_set(
        "SKU1", Decimal("119.90"), sale_price="99.90", promo_start=T0, promo_end=T0.replace(day=9)
    )
    assert runtime.calls[:3] == [
        ("stock_set", ("SKU1", "MAIN", 7)),
        ("stock_set", ("SKU1", None, 0)),
        ("stock_move", ("SKU1", None, -2, "adjust", "order:9")),
    ]
    assert runtime.calls[3] == (
        "price_set",
        ("SKU1", Decimal("119.90"), Decimal("99.90"), None, None, T0, T0.replace(day=9)),
    )


async def test_erp_errors_are_400_with_the_field(client: ControlClient) -> None:
    with pytest.raises(ControlError) as info:
        await client.stock_set("SKU1", None, 2_000_000)
    assert (info.value.status, info.value.field) == (400, "quantity")
    with pytest.raises(ControlError) as info:
        await client.stock_move("SKU1", None, 1, reason="theft")
    assert info.value.status == 400 and "reason must be" in info.value.message
    with pytest.raises(ControlError) as info:
        await client.stock_set("NOPE", None, 1)
    assert info.value.status == 404
    with pytest.raises(ControlError) as info:  # caught before it travels, with the same shape
        await client.price_set("SKU1", "12,x")
    assert (info.value.status, info.value.field) == (400, "list_price")


@pytest.mark.parametrize(
    ("path", "body", "field", "words"),
    [
        ("/stock/set", b"{not json", None, "not valid JSON"),
        ("/stock/set", b"", None, "the request body is empty"),
        ("/stock/set", b'{"sku": "A"}', "quantity", "quantity: Field required"),
        ("/stock/set", b'{"sku": "A", "quantity": -1}', "quantity", "quantity: Input should be greater than"),
        ("/stock/move", b'{"sku": "A", "delta": 0}', "delta", "delta must not be zero"),
        (
            "/prices/set",
            b'{"sku": "A", "list_price": "1", "promo_start": "2026-02-01T00:00:00Z",'
            b' "promo_end": "2026-01-01T00:00:00Z"}',
            "promo_start",
            "promo_start must be earlier than promo_end",
        ),
        ("/orders/tracking", b'{"channel": "loja", "order_number": "1"}', "code", "code: Field required"),
        ("/import-failures/abc/dismiss", b"", "id", "import failure id must be a whole number"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    server: ControlServer, path: str, body: bytes, field: str | None, words: str
) -> None:
    status, answer = await raw(server, "POST", path, body=body)
    assert status == 400
    assert answer.get("field") == field
    assert words in answer["error"]


async def test_product_import(client: ControlClient, server: ControlServer, runtime: FakeRuntime) -> None:
    result = await client.import_products("sku,name\nA,Caneca\n,Sem SKU\nB,Prato\n")
    assert not result.ok
    assert result.message == "2 imported"
    assert result.details["errors"] == [{"line": 3, "field": "sku", "error": "is empty"}]
    status, body = await raw(
        server, "POST", "/products/import", body=b"sku\n\xff\xfe", content_type="text/csv"
    )
    assert status == 400 and "not UTF-8" in body["error"]
    status, body = await raw(server, "POST", "/products/import", body=b"{}", content_type="application/json")
    assert status == 415 and "text/csv" in body["error"]
    # A BOM from a spreadsheet is not part of the first column's name.
    await client.import_products("\ufeffsku,name\nC,Copo\n")
    assert runtime.calls[-1] == ("import_products_csv", "sku,name\nC,Copo\n")


async def test_invoice_and_tracking(client: ControlClient, runtime: FakeRuntime) -> None:
    key = "3" * 44
    await client.invoice_add("loja", "1001", "123", "1", key, "2026-03-01T10:00:00-03:00")
    assert runtime.calls[-1][0] == "invoice_add"
    assert runtime.calls[-1][1][4:] == (key, datetime(2026, 3, 1, 13, 0, tzinfo=UTC))
    with pytest.raises(ControlError) as info:
        await client.invoice_add("loja", "1001", "123", "1", "123", T0)
    assert (info.value.status, info.value.field) == (400, "access_key")
    await client.tracking_add("loja", "1001", "BR123", carrier="correios_pac")
    assert runtime.calls[-1] == ("tracking_add", ("loja", "1001", "correios_pac", "BR123", None))


async def test_unknown_route_and_method(server: ControlServer) -> None:
    status, body = await raw(server, "GET", "/nothing-here")
    assert status == 404 and body["error"] == "no such endpoint: GET /nothing-here"
    status, body = await raw(server, "DELETE", "/status")
    assert status == 405 and "DELETE is not allowed on /status" in body["error"]


async def test_secrets_never_leave_the_socket(
    client: ControlClient, runtime: FakeRuntime, book: LogBook
) -> None:
    runtime.last_error = f"401 Unauthorized for key {SECRET}"
    status = await client.status()
    assert status.channels[0].last_error == "401 Unauthorized for key ***"
    with pytest.raises(ControlError) as info:
        await client.invoice_add("loja", f"x{SECRET}", "1", "1", "3" * 44, T0)
    assert SECRET not in info.value.message and "***" in info.value.message
    book.sink.offer(event_to_row({"event": "leak", "level": "error", "token": SECRET}))  # not via structlog
    await book.flush()
    page = await client.logs()
    assert page.rows[0].data == {"token": "***"}
    async for event in client.events(after=0):
        if event.type == "log":
            assert event.log is not None and event.log.data == {"token": "***"}
            break


# --- events ----------------------------------------------------------------------------------------


async def test_events_replay_live_heartbeat_and_resume(
    client: ControlClient, book: LogBook, runtime: FakeRuntime
) -> None:
    await write_logs(book, 3)
    seen: list[tuple[str, int]] = []
    stream = client.events(after=1, heartbeats=True)
    async for event in stream:
        seen.append((event.type, event.id))
        if (event.type, event.id) == ("status", 3):
            await write_logs(book, 2)
            book.bus.publish_status(await runtime.status())
        if len(seen) == 6:
            break
    await stream.aclose()
    assert seen == [("log", 2), ("log", 3), ("status", 3), ("log", 4), ("log", 5), ("status", 5)]

    # Reconnect after more rows were written while away: exactly the missing ones, then live.
    await write_logs(book, 2)
    got: list[int] = []
    stream = client.events(after=5, heartbeats=True)
    async for event in stream:
        if event.type == "heartbeat":
            assert event.id == 7
            break
        if event.type == "log":
            got.append(event.id)
    await stream.aclose()
    assert got == [6, 7]


async def test_heartbeats_are_hidden_by_default(client: ControlClient, book: LogBook) -> None:
    watcher = client.events(heartbeats=True)
    quiet = client.events()
    assert (await anext(watcher)).type == "status"
    assert (await anext(quiet)).type == "status"
    while (await asyncio.wait_for(anext(watcher), 5)).type != "heartbeat":
        pass  # a heartbeat went out on both streams
    await write_logs(book, 1)
    nxt = await asyncio.wait_for(anext(quiet), 5)
    assert (nxt.type, nxt.id) == ("log", 1)
    await watcher.aclose()
    await quiet.aclose()


async def test_stopping_the_server_ends_event_streams(server: ControlServer) -> None:
    async with ControlClient(server.socket_path, timeout=2) as c:
        stream = c.events()
        assert (await anext(stream)).type == "status"
        stopping = asyncio.create_task(server.stop())
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(stream), 5)
        await stopping


async def test_a_silent_daemon_times_out_the_event_stream(sock_dir: Path) -> None:
    """A peer that accepts but never answers: the client gives up after its read timeout."""
    path = sock_dir / "silent.sock"
    release = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    silent = await asyncio.start_unix_server(hang, path=str(path))
    try:
        async with ControlClient(path, timeout=2) as c:
            with pytest.raises(ControlTimeout):
                async for _ in c.events(read_timeout=0.2):
                    pass
    finally:
        release.set()
        silent.close()
        await silent.wait_closed()
