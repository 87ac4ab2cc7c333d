"""What ``HttpClient`` needs from an HTTP engine, and the aiohttp engine.

Two engines send a channel's requests: the daemon's own HTTP/1.1 client (``channels.h1client``, the
default, about half the event loop's CPU per request) and aiohttp's ``ClientSession`` (the fallback
``daemon.http_client = "aiohttp"``, and what connector unit tests mock with aioresponses). Both take a
finished request (method, URL, headers, body bytes) and give back a finished response with its body
read within a size bound, or raise one of the errors below; retries, rate limits and error typing stay
in ``channels.http``, so the two engines behave alike by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

Engine = Literal["builtin", "aiohttp"]
MAX_REDIRECTS = 5
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class WireResponse:
    """A response as it came off the wire, its body decompressed."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes


class WireError(Exception):
    """The exchange failed below HTTP: refused, reset, closed early, or a response that is not HTTP."""


class BodyTooLarge(WireError):
    """The response body is (or declares itself) bigger than the caller's bound; it was not buffered."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.status = status


class RedirectRefused(WireError):
    """A redirect to another origin: the request carries the channel's credentials, so it stops here."""


class Transport(Protocol):
    """One engine, shared by every channel of the daemon."""

    @property
    def closed(self) -> bool: ...

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
        """Raises ``TimeoutError`` (the whole exchange over ``timeout`` seconds), ``WireError`` (or
        ``BodyTooLarge``, ``RedirectRefused``) or ``ValueError`` for a URL or header it cannot send."""
        ...

    async def aclose(self) -> None: ...


def channel_session(
    *, user_agent: str | None = None, timeout: aiohttp.ClientTimeout | None = None
) -> aiohttp.ClientSession:
    """The aiohttp session channels share: pooled keep-alive connections and no cookie jar.

    Several channels can point at the same platform host (two Loja Integrada stores, say) and share
    this session; a cookie one store's answers set must never ride along on another store's
    requests, and none of the APIs we speak authenticate by cookie. Skipping the jar also saves its
    per-request bookkeeping.
    """
    return aiohttp.ClientSession(
        headers={"User-Agent": user_agent} if user_agent else None,
        connector=aiohttp.TCPConnector(limit=100, limit_per_host=20),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=timeout or aiohttp.ClientTimeout(total=300),
        raise_for_status=False,
    )


class AiohttpTransport:
    """aiohttp's ``ClientSession`` behind the ``Transport`` contract (same-origin redirects only)."""

    def __init__(self, session: aiohttp.ClientSession, *, owned: bool = False) -> None:
        self.session = session
        self._owned = owned

    @property
    def closed(self) -> bool:
        return self.session.closed

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
        origin = url.origin()
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with self.session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                    allow_redirects=False,
                ) as resp:
                    location = resp.headers.get("Location") if 300 < resp.status < 400 else None
                    if location is None or resp.status in (304, 305, 306):
                        raw = await self._read_bounded(resp, max_body)
                        return WireResponse(resp.status, resp.reason or "", resp.headers, raw)
                url = url.join(URL(location))
                if url.origin() != origin:
                    raise RedirectRefused(f"redirected to another host ({url.host}); not followed")
                method, body = redirected_method(method, resp.status, body)
            raise WireError(f"more than {MAX_REDIRECTS} redirects")
        except aiohttp.InvalidURL as exc:
            raise ValueError(f"invalid URL ({type(exc).__name__})") from None
        except TimeoutError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise WireError(f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
        """Read at most ``limit`` bytes; a bigger body is refused and never buffered."""
        declared = resp.content_length
        if declared is not None and declared > limit:
            resp.close()
            raise BodyTooLarge(f"response body of {declared} bytes exceeds {limit}", resp.status)
        if declared is not None and "Content-Encoding" not in resp.headers:
            # Not compressed: the parser stops at the declared length, which is within bounds.
            return await resp.read()
        chunks: list[bytes] = []
        size = 0
        while chunk := await resp.content.read(_READ_CHUNK):
            size += len(chunk)
            if size > limit:
                resp.close()
                raise BodyTooLarge(f"response body exceeds {limit} bytes", resp.status)
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._owned and not self.session.closed:
            await self.session.close()


def redirected_method(method: str, status: int, body: bytes | None) -> tuple[str, bytes | None]:
    """What a redirect turns the request into: 303 (and 301/302 after a POST) become a GET without
    a body, as browsers and aiohttp do; 307/308 repeat the request as it was."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        return "GET", None
    return method, body
