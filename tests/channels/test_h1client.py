"""The daemon's own HTTP/1.1 client against a loopback server that answers exactly the bytes a test
scripts: bodies of every framing, keep-alive and its limits, strict parsing, redirects, TLS."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import trustme
from yarl import URL

from channels.h1client import H1Client, encode_request, header_block
from channels.transport import BodyTooLarge, RedirectRefused, WireError

LIMIT = 64 * 1024


def ok(body: bytes = b'{"ok":true}', *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Reply:
    """What the server does for one request: send ``data`` (if any), then maybe close or hang."""

    data: bytes = b""
    close: bool = False
    hang: bool = False


@dataclass
class Scripted:
    """A loopback server reading whole requests and answering from a script, one reply each."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    @property
    def url(self) -> URL:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return URL(f"http://127.0.0.1:{port}")

    def script(self, *replies: Reply | bytes) -> None:
        self.replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                self.arrived.set()
                reply = self.replies.pop(0) if self.replies else Reply(ok())
                if reply.hang:
                    await self.release.wait()
                writer.write(reply.data)
                await writer.drain()
                if reply.close:
                    return
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    scripted = Scripted()
    scripted.server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    yield scripted
    scripted.release.set()
    scripted.server.close()


@pytest.fixture
async def client() -> AsyncIterator[H1Client]:
    engine = H1Client(user_agent="storesync/test")
    yield engine
    await engine.aclose()


async def get(engine: H1Client, url: URL, path: str = "/v1/x", **kwargs: object) -> tuple[int, bytes]:
    response = await engine.send(
        str(kwargs.get("method", "GET")),
        url.with_path(path),
        {"Accept": "application/json"},
        kwargs.get("body"),  # type: ignore[arg-type]
        timeout=float(kwargs.get("timeout", 5.0)),  # type: ignore[arg-type]
        max_body=int(kwargs.get("max_body", LIMIT)),  # type: ignore[call-overload]
    )
    return response.status, response.body


# --- requests ------------------------------------------------------------------------------------


async def test_requests_reuse_one_keep_alive_connection(server: Scripted, client: H1Client) -> None:
    server.script(ok(b"1"), ok(b"2"))
    response = await client.send(
        "PUT",
        server.url.with_path("/v1/produto_estoque/7"),
        {"Authorization": "chave_api k", "Content-Type": "application/json"},
        b'{"quantidade":3}',
        timeout=5,
        max_body=LIMIT,
    )
    assert (response.status, response.reason, response.body) == (200, "OK", b"1")
    assert response.headers["content-type"] == "application/json"
    assert await get(client, server.url) == (200, b"2")
    assert server.connections == 1
    first = server.requests[0].decode()
    assert first.startswith("PUT /v1/produto_estoque/7 HTTP/1.1\r\n")
    port = server.url.port
    for line in (f"Host: 127.0.0.1:{port}", "User-Agent: storesync/test", "Content-Length: 16"):
        assert f"\r\n{line}\r\n" in first
    assert first.endswith('\r\n\r\n{"quantidade":3}')


def test_the_request_target_keeps_the_query_and_default_ports_stay_out_of_host() -> None:
    url = URL("https://api.example/v1/pedido/search").with_query({"since": "2026-12-01 10:00", "limit": 50})
    raw = encode_request("GET", url, url.host_port_subcomponent or "", header_block({}), None).decode()
    assert raw.startswith("GET /v1/pedido/search?since=2026-12-01+10:00&limit=50 HTTP/1.1\r\n")
    assert "\r\nHost: api.example\r\n" in raw and "Content-Length" not in raw


@pytest.mark.parametrize(("name", "value"), [("X-Evil", "a\r\nInjected: 1"), ("X\nBad", "v"), ("X", "a\0b")])
async def test_header_injection_is_refused_before_anything_is_sent(
    server: Scripted, client: H1Client, name: str, value: str
) -> None:
    with pytest.raises(ValueError, match="line break or NUL"):
        await client.send("GET", server.url, {name: value}, None, timeout=5, max_body=LIMIT)
    assert server.requests == []


# --- bodies ----------------------------------------------------------------------------------------


async def test_chunked_body_with_extensions_and_trailers(server: Scripted, client: H1Client) -> None:
    server.script(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        ok(b"next"),
    )
    assert await get(client, server.url) == (200, b"hello world")
    assert await get(client, server.url) == (200, b"next")
    assert server.connections == 1  # the chunked body was framed exactly: the connection goes on


async def test_a_body_without_length_runs_until_close_and_the_connection_is_not_reused(
    server: Scripted, client: H1Client
) -> None:
    server.script(Reply(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", close=True))
    assert await get(client, server.url) == (200, b"all of it")
    assert await get(client, server.url) == (200, b'{"ok":true}')
    assert server.connections == 2


@pytest.mark.parametrize(
    ("coding", "pack"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, no zlib wrapper
    ],
)
async def test_compressed_bodies_are_inflated(
    server: Scripted, client: H1Client, coding: str, pack: Callable[[bytes], bytes]
) -> None:
    payload = b'{"objects": [' + b'{"id": 1},' * 500 + b"]}"
    server.script(ok(pack(payload), f"Content-Encoding: {coding}"))
    assert await get(client, server.url) == (200, payload)
    assert b"Accept-Encoding: gzip, deflate" in server.requests[0]


async def test_a_small_body_that_inflates_past_the_bound_is_refused(
    server: Scripted, client: H1Client
) -> None:
    bomb = gzip.compress(b"0" * (10 * LIMIT))
    assert len(bomb) < LIMIT
    server.script(ok(bomb, "Content-Encoding: gzip"))
    with pytest.raises(BodyTooLarge, match="once decompressed"):
        await get(client, server.url)


async def test_a_declared_length_over_the_bound_is_refused_unread(server: Scripted, client: H1Client) -> None:
    server.script(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n" + b"x" * 100)
    with pytest.raises(BodyTooLarge, match="99999999 bytes exceeds") as caught:
        await get(client, server.url)
    assert caught.value.status == 200


async def test_a_chunked_body_over_the_bound_is_refused(server: Scripted, client: H1Client) -> None:
    chunk = b"x" * 4096
    body = b"".join(b"1000\r\n" + chunk + b"\r\n" for _ in range(20)) + b"0\r\n\r\n"
    server.script(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    with pytest.raises(BodyTooLarge, match=f"exceeds {LIMIT} bytes"):
        await get(client, server.url)


@pytest.mark.parametrize(
    ("method", "status_line", "headers"),
    [
        ("HEAD", "200 OK", "Content-Length: 50"),
        ("GET", "204 No Content", ""),
        ("GET", "304 Not Modified", "Content-Length: 50"),
    ],
)
async def test_responses_without_a_body_leave_the_connection_usable(
    server: Scripted, client: H1Client, method: str, status_line: str, headers: str
) -> None:
    head = "\r\n".join(filter(None, [f"HTTP/1.1 {status_line}", headers]))
    server.script(f"{head}\r\n\r\n".encode(), ok(b"after"))
    status, body = await get(client, server.url, method=method)
    assert body == b"" and status == int(status_line[:3])
    assert await get(client, server.url) == (200, b"after")
    assert server.connections == 1


async def test_interim_1xx_responses_are_skipped(server: Scripted, client: H1Client) -> None:
    server.script(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"real")
    )
    assert await get(client, server.url) == (200, b"real")


# --- strict parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok", "both"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n folded\r\n\r\nok", "malformed response header"),
        (b"HTTP/1.1 200 OK\r\nX-Bad : 1\r\nContent-Length: 2\r\n\r\nok", "malformed response header"),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok", "CRLF"),
        (b"ICY 200 OK\r\nContent-Length: 2\r\n\r\nok", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok", "invalid status code"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "unsupported transfer coding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX", "not followed by CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nok", "content encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok", "not valid compressed"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "switched protocols"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (70 * 1024) + b"\r\n\r\n", "head exceeds"),
    ],
)
async def test_malformed_responses_fail_the_exchange_and_close_the_connection(
    server: Scripted, client: H1Client, raw: bytes, complaint: str
) -> None:
    server.script(raw)
    with pytest.raises(WireError, match=complaint):
        await get(client, server.url)
    assert await get(client, server.url) == (200, b'{"ok":true}')
    assert server.connections == 2


async def test_bytes_nobody_asked_for_end_the_connection(server: Scripted, client: H1Client) -> None:
    server.script(ok(b"a") + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!", ok(b"b"))
    assert await get(client, server.url) == (200, b"a")
    assert await get(client, server.url) == (200, b"b")  # not the smuggled answer
    assert server.connections == 2


async def test_a_connection_cut_mid_body_is_a_wire_error(server: Scripted, client: H1Client) -> None:
    server.script(Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", close=True))
    with pytest.raises(WireError, match="before the response was complete"):
        await get(client, server.url)


async def test_a_refused_connection_is_a_wire_error(client: H1Client) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(WireError, match=f"cannot connect to 127.0.0.1:{port}"):
        await get(client, URL(f"http://127.0.0.1:{port}"))


# --- keep-alive and its limits -------------------------------------------------------------------


async def test_connection_close_is_honoured(server: Scripted, client: H1Client) -> None:
    server.script(ok(b"1", "Connection: close"), ok(b"2"))
    assert await get(client, server.url) == (200, b"1")
    assert await get(client, server.url) == (200, b"2")
    assert server.connections == 2


async def test_a_kept_alive_connection_found_closed_is_replaced_for_an_idempotent_request(
    server: Scripted, client: H1Client
) -> None:
    """The server closed the idle connection just as we reused it: nothing came back, so the PUT
    goes again on a fresh connection instead of failing."""
    server.script(ok(b"1"), Reply(close=True), ok(b"2"))
    assert await get(client, server.url) == (200, b"1")
    assert await get(client, server.url, method="PUT", body=b"{}") == (200, b"2")
    assert server.connections == 2 and len(server.requests) == 3


async def test_a_post_on_a_connection_found_closed_is_not_sent_twice(
    server: Scripted, client: H1Client
) -> None:
    server.script(ok(b"1"), Reply(close=True))
    assert await get(client, server.url) == (200, b"1")
    with pytest.raises(WireError, match="closed the connection"):
        await get(client, server.url, method="POST", body=b"{}")
    assert len(server.requests) == 2


async def test_a_timeout_abandons_the_connection(server: Scripted, client: H1Client) -> None:
    server.script(Reply(ok(b"late"), hang=True), ok(b"fresh"))
    with pytest.raises(TimeoutError):
        await get(client, server.url, timeout=0.2)
    server.release.set()
    assert await get(client, server.url) == (200, b"fresh")  # never the late answer
    assert server.connections == 2


async def test_connections_per_host_are_capped(server: Scripted) -> None:
    engine = H1Client(limit_per_host=2)
    server.script(*(Reply(ok(str(i).encode()), hang=True) for i in range(5)))
    try:
        calls = [asyncio.ensure_future(get(engine, server.url)) for _ in range(5)]
        async with asyncio.timeout(5):
            while len(server.requests) < 2:
                await server.arrived.wait()
                server.arrived.clear()
        assert server.open_now == 2
        server.release.set()
        results = await asyncio.gather(*calls)
    finally:
        await engine.aclose()
    assert sorted(body for _, body in results) == [b"0", b"1", b"2", b"3", b"4"]
    assert server.most_open == 2 and server.connections == 2


async def test_idle_connections_expire_on_the_injected_clock(server: Scripted) -> None:
    now = [100.0]
    engine = H1Client(keepalive_seconds=15, clock=lambda: now[0])
    try:
        await get(engine, server.url)
        now[0] += 14
        await get(engine, server.url)
        assert server.connections == 1
        now[0] += 15
        await get(engine, server.url)
        assert server.connections == 2  # the idle one was too old to trust
        now[0] += 20
        engine._sweep()  # the timer's work, run now: nothing idle stays open past its time
        assert all(not origin.idle for origin in engine._origins.values())
    finally:
        await engine.aclose()


# --- redirects -----------------------------------------------------------------------------------


async def test_a_same_origin_303_becomes_a_get_without_body(server: Scripted, client: H1Client) -> None:
    server.script(b"HTTP/1.1 303 See Other\r\nLocation: /v1/done\r\nContent-Length: 0\r\n\r\n", ok(b"here"))
    assert await get(client, server.url, method="POST", body=b"data") == (200, b"here")
    assert server.requests[1].startswith(b"GET /v1/done HTTP/1.1\r\n")
    assert not server.requests[1].endswith(b"data")


async def test_a_307_repeats_the_request(server: Scripted, client: H1Client) -> None:
    server.script(b"HTTP/1.1 307 Temporary\r\nLocation: /v1/again/\r\nContent-Length: 0\r\n\r\n", ok(b"ok"))
    assert await get(client, server.url, method="PUT", body=b"data") == (200, b"ok")
    assert server.requests[1].startswith(b"PUT /v1/again/ HTTP/1.1\r\n")
    assert server.requests[1].endswith(b"\r\n\r\ndata")


async def test_a_redirect_to_another_host_is_not_followed(server: Scripted, client: H1Client) -> None:
    server.script(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:9/steal\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(RedirectRefused, match=r"another host \(127\.0\.0\.2\)"):
        await get(client, server.url)
    assert len(server.requests) == 1


async def test_a_redirect_loop_ends(server: Scripted, client: H1Client) -> None:
    server.script(*[b"HTTP/1.1 302 Found\r\nLocation: /v1/x\r\nContent-Length: 0\r\n\r\n"] * 7)
    with pytest.raises(WireError, match="more than 5 redirects"):
        await get(client, server.url)
    assert len(server.requests) == 6


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
async def tls_server() -> AsyncIterator[tuple[URL, trustme.CA]]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    scripted = Scripted()
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    yield URL(f"https://localhost:{port}"), ca
    server.close()


async def test_tls_verifies_the_certificate_by_default(tls_server: tuple[URL, trustme.CA]) -> None:
    url, _ = tls_server
    engine = H1Client()
    try:
        with pytest.raises(WireError, match="TLS handshake with localhost failed"):
            await get(engine, url)
    finally:
        await engine.aclose()


async def test_tls_with_a_trusted_certificate_works(tls_server: tuple[URL, trustme.CA]) -> None:
    url, ca = tls_server
    context = ssl.create_default_context()
    ca.configure_trust(context)
    engine = H1Client(ssl_context=context)
    try:
        assert await get(engine, url) == (200, b'{"ok":true}')
        with pytest.raises(WireError, match="TLS handshake"):  # the name must match, too
            await get(engine, url.with_host("127.0.0.1"))
    finally:
        await engine.aclose()
