"""The daemon's own HTTP/1.1 client: keep-alive connections on asyncio protocols.

Why not aiohttp's ``ClientSession`` for channel traffic: a push is thousands of small JSON requests,
and on a small host the session's machinery cost ~95 µs of event-loop CPU per request (URL and header
objects, payload writers, stream readers, timers, a task per body read), three quarters of the daemon's
whole cost per pushed item. This client does what channel APIs need and nothing more, in about half
that: one request at a time per connection, pooled per origin (at most ``limit_per_host`` at once,
idle ones closed after ``keepalive_seconds``), TLS with the system's verified default context,
Content-Length, chunked and read-until-close bodies, gzip and deflate, same-origin redirects, 1xx
responses skipped, and a bound on every size it reads.

The parser is strict where leniency has been exploited (request smuggling, response splitting):
one status line shape, CRLF line ends only, no obsolete line folding, one valid Content-Length, no
Content-Length together with a Transfer-Encoding, chunked as the last coding, and bounded head, line
and header counts. A response that breaks a rule fails its exchange as a ``WireError`` and the
connection is closed, never reused. Header names and values we send are checked for CR, LF and NUL.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from channels.transport import (
    MAX_REDIRECTS,
    BodyTooLarge,
    RedirectRefused,
    WireError,
    WireResponse,
    redirected_method,
)

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEADERS: Final = 128
MAX_CHUNK_LINE: Final = 4096
_CRLF: Final = b"\r\n"
_MAX_BLOCKS: Final = 256
_NO_BODY_STATUS: Final = frozenset({204, 304})
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods a request may be sent again for when a kept-alive connection turns out closed: the
server never saw it (no byte came back), and sending it twice would do no harm anyway."""
_Key = tuple[str, str, int]
"""An origin: scheme, host, port."""


def _check_header(name: str, value: str) -> None:
    for text in (name, value):
        if "\r" in text or "\n" in text or "\0" in text:
            raise ValueError(f"header {name!r} contains a line break or NUL")


def header_block(headers: Mapping[str, str]) -> bytes:
    """``Name: value`` lines for ``headers``, each checked for CR, LF and NUL (header injection)."""
    lines = []
    for name, value in headers.items():
        _check_header(name, value)
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


def encode_request(method: str, url: URL, host: str, block: bytes, body: bytes | None) -> bytes:
    """The request's bytes: request line, Host, the header block, Content-Length, body."""
    start = f"{method} {url.raw_path_qs or '/'} HTTP/1.1\r\nHost: {host}\r\n".encode("latin-1")
    if body is None and method not in ("POST", "PUT", "PATCH"):
        return start + block + _CRLF
    length = len(body) if body else 0
    return b"".join((start, block, b"Content-Length: %d\r\n\r\n" % length, body or b""))


class _Decompressor:
    """gzip or deflate (zlib-wrapped or raw), bounded: a small body that inflates past the bound
    is refused instead of filling memory."""

    def __init__(self, coding: str, limit: int, status: int) -> None:
        self.limit = limit
        self.status = status
        self.size = 0
        self.raw_deflate = False
        wbits = 16 + zlib.MAX_WBITS if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self.deflate = coding == "deflate"
        self._z = zlib.decompressobj(wbits)
        self.parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        try:
            out = self._z.decompress(data, self.limit + 1 - self.size)
        except zlib.error:
            if not (self.deflate and self.size == 0 and not self.raw_deflate):
                raise WireError("the response body is not valid compressed data") from None
            self.raw_deflate = True  # some servers send deflate without the zlib wrapper
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._z.decompress(data, self.limit + 1 - self.size)
        self.size += len(out)
        if self.size > self.limit or self._z.unconsumed_tail:
            raise BodyTooLarge(f"response body exceeds {self.limit} bytes once decompressed", self.status)
        self.parts.append(out)

    def finish(self) -> bytes:
        return b"".join(self.parts)


class _ResponseParser:
    """One response, fed as it arrives; ``feed`` returns True once it is complete."""

    def __init__(self, method: str, max_body: int) -> None:
        self.method = method
        self.max_body = max_body
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.keep_alive = True
        self.until_eof = False
        self._buffer = bytearray()
        self._state = "head"
        self._remaining = 0
        self._body: list[bytes] = []
        self._size = 0
        self._inflate: _Decompressor | None = None

    # --- feeding -----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        buffer = self._buffer
        buffer += data
        while True:
            state = self._state
            if state == "head":
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise WireError(f"the response head exceeds {MAX_HEAD_BYTES} bytes")
                    return False
                if end > MAX_HEAD_BYTES:
                    raise WireError(f"the response head exceeds {MAX_HEAD_BYTES} bytes")
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._parse_head(head)
            elif state == "length":
                take = min(self._remaining, len(buffer))
                if take:
                    self._add(bytes(buffer[:take]))
                    del buffer[:take]
                    self._remaining -= take
                if self._remaining:
                    return False
                self._state = "done"
            elif state == "chunk_size":
                end = buffer.find(_CRLF)
                if end < 0:
                    if len(buffer) > MAX_CHUNK_LINE:
                        raise WireError("a chunk-size line is too long")
                    return False
                line = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                if not line or len(line) > 16 or line.strip(b"0123456789abcdefABCDEF"):
                    raise WireError(f"invalid chunk size {line[:20]!r}")
                self._remaining = int(line, 16)
                self._state = "chunk_data" if self._remaining else "trailers"
            elif state == "chunk_data":
                take = min(self._remaining, len(buffer))
                if take:
                    self._add(bytes(buffer[:take]))
                    del buffer[:take]
                    self._remaining -= take
                if self._remaining:
                    return False
                self._state = "chunk_end"
            elif state == "chunk_end":
                if len(buffer) < 2:
                    return False
                if buffer[:2] != _CRLF:
                    raise WireError("a chunk is not followed by CRLF")
                del buffer[:2]
                self._state = "chunk_size"
            elif state == "trailers":
                end = buffer.find(_CRLF)
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise WireError("the trailers are too long")
                    return False
                del buffer[: end + 2]
                if end == 0:
                    self._state = "done"
            elif state == "eof":
                if buffer:
                    self._add(bytes(buffer))
                    buffer.clear()
                return False
            else:  # done
                return True

    def feed_eof(self) -> bool:
        """The peer closed; True if that completes the response (a body read until close)."""
        if self._state == "eof":
            self._state = "done"
            return True
        return self._state == "done"

    @property
    def leftover(self) -> bool:
        """Bytes after the response: the server sent what we did not ask for; don't reuse."""
        return bool(self._buffer)

    def response(self) -> WireResponse:
        body = self._inflate.finish() if self._inflate is not None else b"".join(self._body)
        return WireResponse(self.status, self.reason, CIMultiDictProxy(self.headers), body)

    # --- the head ----------------------------------------------------------------------------------

    def _parse_head(self, head: bytes) -> None:
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        breaks = len(lines) - 1
        if text.count("\n") != breaks or text.count("\r") != breaks:
            raise WireError("a line in the response head does not end in CRLF")
        status_line = lines[0]
        if not (status_line.startswith(("HTTP/1.1 ", "HTTP/1.0 ")) and status_line[12:13] in (" ", "")):
            raise WireError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
        code = status_line[9:12]
        if not (code.isdigit() and code.isascii()):
            raise WireError(f"invalid status code {code!r}")
        status = int(code)
        if breaks > MAX_HEADERS:
            raise WireError(f"more than {MAX_HEADERS} response headers")
        pairs: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            # No name, or white space in or around it: obsolete line folding, or "Name :" (smuggling).
            if not colon or not name or " " in name or "\t" in name:
                raise WireError(f"malformed response header line {line[:40]!r}")
            pairs.append((name, value.strip(" \t")))
        if 100 <= status < 200:
            if status == 101:
                raise WireError("the server switched protocols")
            return  # 100 Continue, 103 Early Hints: the real response follows
        headers: CIMultiDict[str] = CIMultiDict(pairs)
        self.status = status
        self.reason = status_line[13:]
        self.headers = headers
        connection = headers.get("Connection", "").lower()
        if status_line.startswith("HTTP/1.0"):
            self.keep_alive = "keep-alive" in connection
        else:
            self.keep_alive = "close" not in connection
        self._start_body(status, headers)

    def _start_body(self, status: int, headers: CIMultiDict[str]) -> None:
        coding = headers.get("Content-Encoding", "identity").strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            self._inflate = _Decompressor(coding, self.max_body, status)
        elif coding not in ("identity", ""):
            raise WireError(f"unsupported content encoding {coding!r}")
        if self.method == "HEAD" or status in _NO_BODY_STATUS:
            self._state = "done"
            return
        lengths = headers.getall("Content-Length", [])
        transfer = [c.strip().lower() for v in headers.getall("Transfer-Encoding", []) for c in v.split(",")]
        if transfer:
            if lengths:
                raise WireError("the response has both Content-Length and Transfer-Encoding")
            if transfer[-1] != "chunked" or transfer.count("chunked") != 1:
                raise WireError(f"unsupported transfer coding {', '.join(transfer)!r}")
            self._state = "chunk_size"
            return
        if lengths:
            values = {v.strip() for v in ",".join(lengths).split(",")}
            if len(values) != 1 or not (value := values.pop()).isdigit() or not value.isascii():
                raise WireError(f"invalid Content-Length {', '.join(lengths)[:40]!r}")
            length = int(value)
            if length > self.max_body:
                raise BodyTooLarge(f"response body of {length} bytes exceeds {self.max_body}", status)
            self._remaining = length
            self._state = "length" if length else "done"
            return
        self._state = "eof"  # neither: the body runs until the server closes
        self.until_eof = True
        self.keep_alive = False

    def _add(self, data: bytes) -> None:
        if self._inflate is not None:
            self._inflate.feed(data)
            return
        self._size += len(data)
        if self._size > self.max_body:
            raise BodyTooLarge(f"response body exceeds {self.max_body} bytes", self.status)
        self._body.append(data)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time."""

    def __init__(self, on_lost: Callable[[_Connection], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.answered = False
        """Some byte of a response arrived on this connection during the current exchange."""
        self._on_lost = on_lost
        self._parser: _ResponseParser | None = None
        self._waiter: asyncio.Future[WireResponse] | None = None
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.answered = True
        parser = self._parser
        if parser is None:  # nothing asked: the connection is out of step
            self.close()
            return
        try:
            complete = parser.feed(data)
        except WireError as exc:
            self._fail(exc)
            return
        if complete:
            self._complete(parser)

    def eof_received(self) -> bool:
        parser = self._parser
        if parser is not None and parser.feed_eof():
            self._complete(parser)
        self.closed = True
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None:
            detail = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
            self._fail(WireError(f"{detail} before the response was complete"))
        self._on_lost(self)

    # --- an exchange ---------------------------------------------------------------------------

    def exchange(
        self, request: bytes, method: str, max_body: int, deadline: float
    ) -> asyncio.Future[WireResponse]:
        """Send ``request``; the future fails with ``TimeoutError`` at ``deadline`` (loop time)."""
        assert self.transport is not None and self._parser is None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[WireResponse] = loop.create_future()
        self._waiter = waiter
        self.answered = False
        self._parser = _ResponseParser(method, max_body)
        self._timer = loop.call_at(deadline, self._time_out)
        self.transport.write(request)
        return waiter

    def _time_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError())

    @property
    def reusable(self) -> bool:
        return not self.closed and self._parser is None and self.transport is not None

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _complete(self, parser: _ResponseParser) -> None:
        self._stop_timer()
        self._parser = None
        waiter, self._waiter = self._waiter, None
        if not parser.keep_alive or parser.leftover:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(parser.response())

    def _fail(self, exc: Exception) -> None:
        self._stop_timer()
        self._parser = None
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()


class _Origin:
    """The connections to one scheme://host:port: idle ones to reuse, and a cap on how many at once."""

    def __init__(self) -> None:
        self.idle: deque[_Connection] = deque()
        self.open: set[_Connection] = set()
        self.busy = 0
        """Exchanges holding a slot (at most ``limit_per_host``)."""
        self.waiters: deque[asyncio.Future[None]] = deque()


class H1Client:
    """The engine: shared by every channel of the daemon (``Transport``)."""

    def __init__(
        self,
        *,
        user_agent: str | None = None,
        limit_per_host: int = 20,
        keepalive_seconds: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (monotonic seconds; default the event loop's) times how long a connection idled."""
        self.user_agent = user_agent
        self._clock = clock
        self.limit_per_host = limit_per_host
        self.keepalive_seconds = keepalive_seconds
        self._ssl = ssl_context
        self._origins: dict[_Key, _Origin] = {}
        self._blocks: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()  # verifies the certificate and the host name
        return self._ssl

    async def send(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        timeout: float,
        max_body: int,
    ) -> WireResponse:
        if self._closed:
            raise WireError("the HTTP client is closed")
        deadline = asyncio.get_running_loop().time() + timeout
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._send_once(method, url, headers, body, max_body, deadline)
            location = response.headers.get("Location") if 300 < response.status < 400 else None
            if location is None or response.status in (304, 305, 306):
                return response
            target = url.join(URL(location))
            if target.origin() != url.origin():
                raise RedirectRefused(f"redirected to another host ({target.host}); not followed")
            url = target
            method, body = redirected_method(method, response.status, body)
        raise WireError(f"more than {MAX_REDIRECTS} redirects")

    async def _send_once(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes | None,
        max_body: int,
        deadline: float,
    ) -> WireResponse:
        scheme, host, port = url.scheme, url.raw_host, url.port
        if scheme not in ("http", "https") or not host or port is None:
            raise ValueError(f"cannot send to {scheme}://{host or ''}")
        key = (scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin()
        request = encode_request(method, url, url.host_port_subcomponent or host, self._block(headers), body)
        await self._take_slot(origin, deadline)
        try:
            while True:
                connection = self._idle_connection(origin)
                reused = connection is not None
                if connection is None:
                    async with asyncio.timeout_at(deadline):
                        connection = await self._connect(key, origin)
                try:
                    response = await connection.exchange(request, method, max_body, deadline)
                except WireError:
                    connection.close()
                    if reused and not connection.answered and method in _IDEMPOTENT:
                        continue  # the server had closed it while idle: once more, on a fresh one
                    raise
                except BaseException:
                    connection.close()  # a timeout or a cancel leaves it mid-exchange: never reuse
                    raise
                if connection.reusable:
                    connection.idle_since = self._now()
                    origin.idle.append(connection)
                    self._schedule_sweep()
                return response
        finally:
            self._give_slot(origin)

    def _block(self, headers: Mapping[str, str]) -> bytes:
        """The encoded header lines for ``headers`` plus our defaults, built once per distinct set
        (a channel sends the same few headers on every request)."""
        key = tuple(headers.items())
        block = self._blocks.get(key)
        if block is None:
            merged = dict(headers)
            if self.user_agent and "User-Agent" not in merged:
                merged["User-Agent"] = self.user_agent
            merged.setdefault("Accept", "*/*")
            merged.setdefault("Accept-Encoding", "gzip, deflate")
            block = header_block(merged)
            if len(self._blocks) >= _MAX_BLOCKS:  # rotating tokens make new sets: stay bounded
                self._blocks.clear()
            self._blocks[key] = block
        return block

    async def _take_slot(self, origin: _Origin, deadline: float) -> None:
        if origin.busy < self.limit_per_host and not origin.waiters:
            origin.busy += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        origin.waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._give_slot(origin)  # handed a slot, then cancelled: pass it on
            elif waiter in origin.waiters:
                origin.waiters.remove(waiter)
            raise

    @staticmethod
    def _give_slot(origin: _Origin) -> None:
        while origin.waiters:
            waiter = origin.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to the next in line as it is
                return
        origin.busy -= 1

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        idle = origin.idle
        now = self._now()
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest to be alive
            if connection.reusable and now - connection.idle_since < self.keepalive_seconds:
                return connection
            connection.close()
        return None

    async def _connect(self, key: _Key, origin: _Origin) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()

        def lost(connection: _Connection) -> None:
            origin.open.discard(connection)
            if connection in origin.idle:
                origin.idle.remove(connection)

        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(lost),
                host,
                port,
                ssl=self._tls() if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None,
                happy_eyeballs_delay=0.25,
            )
        except ssl.SSLError as exc:
            raise WireError(f"TLS handshake with {host} failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise WireError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        origin.open.add(connection)
        return connection

    def _schedule_sweep(self) -> None:
        if self._sweeper is None and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(self.keepalive_seconds, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for longer than ``keepalive_seconds``; runs only while some
        connection is idle, so an idle daemon keeps no timer."""
        self._sweeper = None
        now = self._now()
        for origin in self._origins.values():
            for connection in list(origin.idle):
                if now - connection.idle_since >= self.keepalive_seconds:
                    origin.idle.remove(connection)
                    connection.close()
        if any(origin.idle for origin in self._origins.values()):
            self._schedule_sweep()

    async def aclose(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for origin in self._origins.values():
            origin.idle.clear()
            for connection in list(origin.open):
                connection.close()
        await asyncio.sleep(0)  # let the transports finish closing
