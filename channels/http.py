"""The one way connectors talk HTTP: rate limit, timeouts, bounded retries, typed errors, no leaks.

Every attempt takes a token from the channel's shared ``RateLimiter``; transient trouble (5xx, timeouts,
resets, garbage bodies) is retried a bounded number of times with exponential backoff and full jitter;
a 429 blocks the whole channel's limiter for Retry-After; 401/403 get one credential refresh. What
escapes is one of the typed errors in ``channels.base`` with a message that names the method and the
path (never the query string, never headers) and has every configured secret replaced by ``***``.
"""

from __future__ import annotations

import json as jsonlib
import math
import random
import re
import secrets as secretslib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote, quote_plus, urlencode

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from pydantic import SecretStr
from yarl import URL

from channels.base import AuthError, ChannelError, PermanentError, RateLimited, TransientError
from channels.h1client import H1Client
from channels.models import ChannelContext, Priority
from channels.ratelimit import FLOW_LIMITER, RateLimiter
from channels.transport import (
    AiohttpTransport,
    BodyTooLarge,
    Engine,
    RedirectRefused,
    Transport,
    WireError,
    WireResponse,
    channel_session,
)
from daemon.clock import Clock

__all__ = ["HttpClient", "HttpResponse", "channel_session", "open_transport"]

Expect = Literal["json", "none", "text"]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_MESSAGE_CHARS = 300
_JSON_TYPE = "application/json"
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~-]*")
"""A path with nothing to percent-encode: yarl can take it as it is."""


def encode_json(value: Any) -> bytes:
    """The request body for ``json=``: compact UTF-8, encoded once per request (not per attempt)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def decode_json(raw: bytes | str) -> Any:
    """orjson first (several times faster); the standard parser when orjson refuses something the
    standard one takes (NaN, integers over 64 bits), so the faster path never rejects a valid answer."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return jsonlib.loads(raw)


def encode_form(data: Mapping[str, str], multipart: bool) -> tuple[bytes, str]:
    """A form body and its Content-Type: multipart/form-data, or URL-encoded."""
    if not multipart:
        return urlencode(data).encode("utf-8"), "application/x-www-form-urlencoded"
    values = [(name, str(value).encode("utf-8")) for name, value in data.items()]
    boundary = secretslib.token_hex(16)
    while any(boundary.encode() in value for _, value in values):  # pragma: no cover - 2**-128
        boundary = secretslib.token_hex(16)
    parts: list[bytes] = []
    for name, value in values:
        quoted = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{quoted}"\r\n'
            "Content-Type: text/plain; charset=utf-8\r\n\r\n".encode()
            + value
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def content_type(headers: Mapping[str, str]) -> tuple[str, str | None]:
    """The media type (lower case; aiohttp's default when absent) and the charset parameter."""
    raw = headers.get("Content-Type")
    if not raw:
        return "application/octet-stream", None
    media, _, parameters = raw.partition(";")
    charset = None
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
    return media.strip().lower(), charset


def open_transport(engine: Engine = "builtin", *, user_agent: str | None = None) -> Transport:
    """The engine the daemon's channels share: its own HTTP/1.1 client, or aiohttp's session."""
    if engine == "aiohttp":
        return AiohttpTransport(channel_session(user_agent=user_agent), owned=True)
    return H1Client(user_agent=user_agent)


class AuthProvider(Protocol):
    """Supplies auth headers; ``refresh`` renews them after a 401/403 (raise AuthError if it cannot)."""

    async def headers(self) -> dict[str, str]: ...

    async def refresh(self) -> None: ...


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any
    """Parsed JSON (``expect="json"``), text (``"text"``) or None (``"none"``, or an empty body)."""


@dataclass(frozen=True)
class RequestEvent:
    """One attempt on the wire, for metrics; ``outcome`` is ``ok``, ``http_<status>`` or an error kind."""

    method: str
    path: str
    status: int | None
    outcome: str
    elapsed: float


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    transient_errors: int = 0
    auth_refreshes: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


def redact(text: str, secrets: Mapping[str, SecretStr] | Iterable[str | SecretStr]) -> str:
    """Replace every secret value (and its URL-encoded forms) in ``text`` with ``***``."""
    values: list[str] = []
    items = secrets.values() if isinstance(secrets, Mapping) else secrets
    for item in items:
        value = item.get_secret_value() if isinstance(item, SecretStr) else item
        if value:
            values.extend({value, quote(value, safe=""), quote_plus(value)})
    for value in sorted(set(values), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


_QUERY_RE = re.compile(r"\?[^\s'\"<>)]*")


def _strip_queries(text: str) -> str:
    """Library messages embed URLs; their query strings may carry legacy credentials."""
    return _QUERY_RE.sub("?…", text)


def error_message_from_body(body: bytes | str | None) -> str:
    """The human part of an error body: Tastypie ``error_message``, LI ``error_response``, Correios
    ``msgs`` (first entry) / ``mensagem``, or a string."""
    if body is None:
        return ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        data = jsonlib.loads(text)
    except ValueError:
        return " ".join(text.split())
    return " ".join(_message_from_json(data).split())


def _message_from_json(data: Any) -> str:
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return jsonlib.dumps(data, ensure_ascii=False)
    if isinstance(data.get("error_message"), str):
        return str(data["error_message"])
    response = data.get("error_response")
    if isinstance(response, dict):
        parts: list[str] = []
        for item in response.get("general_errors") or []:
            if isinstance(item, dict) and item.get("message"):
                parts.append(str(item["message"]))
        for item in response.get("validation_errors") or []:
            if isinstance(item, dict):
                msg = item.get("message_complete") or item.get("message")
                if msg:
                    parts.append(str(msg))
        if parts:
            return "; ".join(parts)
    msgs = data.get("msgs")
    if isinstance(msgs, list) and msgs and isinstance(msgs[0], str):
        return msgs[0]
    for key in ("message", "error", "detail", "msg", "mensagem"):
        if isinstance(data.get(key), str):
            return str(data[key])
    return jsonlib.dumps(data, ensure_ascii=False)


def _truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date; None when absent or unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = moment.timestamp() - now_epoch
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


class _Retry(Exception):
    """An attempt failed in a way worth trying again; ``kind`` feeds stats and the final message."""

    def __init__(self, kind: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status


class _Throttled(Exception):
    def __init__(self, retry_after: float | None, detail: str) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.detail = detail


class _Denied(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class HttpClient:
    """Shared plumbing for one channel; the connector owns the paths, this owns the manners.

    Options read from ``context.options`` (all optional): ``max_body_bytes`` (default 10 MiB),
    ``backoff_base_seconds`` (0.5), ``backoff_max_seconds`` (30), ``max_retry_after_seconds`` (60: a
    longer Retry-After blocks the limiter and raises ``RateLimited`` at once so the flow reschedules
    instead of holding a request open).
    """

    def __init__(
        self,
        context: ChannelContext,
        *,
        clock: Clock,
        limiter: RateLimiter,
        transport: Transport | None = None,
        session: aiohttp.ClientSession | None = None,
        auth: AuthProvider | None = None,
        max_body_bytes: int | None = None,
        on_request: Callable[[RequestEvent], None] | None = None,
        on_secret: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.context = context
        self.on_secret = on_secret
        """Told every credential :meth:`add_secret` learns, so the daemon's log redaction knows it
        too (connectors cannot import the daemon's secret registry)."""
        self.clock = clock
        self.limiter = limiter
        self.auth = auth
        self.on_request = on_request
        self.stats = HttpStats()
        options = context.options
        self.max_body_bytes = int(
            max_body_bytes
            if max_body_bytes is not None
            else options.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
        )
        self.backoff_base = float(options.get("backoff_base_seconds", 0.5))
        self.backoff_max = float(options.get("backoff_max_seconds", 30.0))
        self.max_retry_after = float(options.get("max_retry_after_seconds", 60.0))
        self._rng = rng or random.Random()
        self._extra_secrets: set[str] = set()
        if transport is None and session is not None:
            transport = AiohttpTransport(session)
        self._transport = transport
        self._owns_transport = transport is None
        """Without an engine given, the client opens an aiohttp session of its own (what connector
        unit tests mock with aioresponses); the daemon passes the engine its channels share."""
        self._base = URL(context.base_url)
        if self._base.scheme not in ("http", "https") or not self._base.host:
            raise ValueError(f"channel {context.name!r}: base_url must be an absolute http(s) URL")
        self._base_text = str(self._base).rstrip("/")
        self._base_is_root = self._base.path in ("", "/") and not self._base.query_string

    # --- lifecycle --------------------------------------------------------------------------------

    def _get_transport(self) -> Transport:
        if self._transport is None or self._transport.closed:
            if not self._owns_transport:
                raise RuntimeError(f"channel {self.context.name!r}: the HTTP engine was closed by its owner")
            timeout = aiohttp.ClientTimeout(total=self.context.timeout_seconds)
            self._transport = AiohttpTransport(channel_session(timeout=timeout), owned=True)
        return self._transport

    async def aclose(self) -> None:
        if self._owns_transport and self._transport is not None and not self._transport.closed:
            await self._transport.aclose()

    # --- helpers ----------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        return redact(_strip_queries(text), [*self.context.secrets.values(), *self._extra_secrets])

    def add_secret(self, value: str) -> None:
        """Redact ``value`` too: a credential the connector derives or obtains at run time (a bearer
        token, an encoded Basic header) that is not among ``context.secrets``."""
        if value:
            self._extra_secrets.add(value)
            if self.on_secret is not None:
                self.on_secret(value)

    def _url(self, path_or_url: str) -> URL:
        if path_or_url.startswith(("http://", "https://")):
            url = URL(path_or_url)
            if url.origin() != self._base.origin():
                raise ValueError(
                    f"channel {self.context.name!r}: refusing to send credentials to another host "
                    f"({url.host}); only {self._base.host} is allowed"
                )
            return url
        path = "/" + path_or_url.lstrip("/")
        if self._base_is_root and _PLAIN_PATH.fullmatch(path):
            return self._base.with_path(path, encoded=True)  # no parse, no quoting per request
        return URL(self._base_text + path, encoded=False)

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**attempt))."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return self._rng.uniform(0.0, ceiling)

    def _record(self, method: str, path: str, status: int | None, outcome: str, started: float) -> None:
        self.stats.requests += 1
        self.stats.by_outcome[outcome] = self.stats.by_outcome.get(outcome, 0) + 1
        if self.on_request is not None:
            self.on_request(RequestEvent(method, path, status, outcome, self.clock.monotonic() - started))

    def _error(self, cls: type[ChannelError], message: str, **kwargs: Any) -> ChannelError:
        return cls(self.redact(message), **kwargs)

    # --- the request --------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        priority: Priority,
        params: Mapping[str, str | int | float] | None = None,
        json: Any = None,
        data: Mapping[str, str] | bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Expect = "json",
        multipart: bool = True,
        use_auth: bool = True,
    ) -> HttpResponse:
        """Send with retries; ``data`` as a mapping is sent as multipart/form-data (rebuilt per attempt).

        ``use_auth=False`` skips the ``auth`` provider (no headers from it, no refresh on 401/403): the
        request that obtains a token must not ask the provider for that same token.

        Raises ``AuthError``, ``RateLimited``, ``TransientError`` or ``PermanentError``.
        """
        method = method.upper()
        url = self._url(path_or_url)
        if params:
            url = url.extend_query(params)
        body, body_type = self._body(json, data, multipart)
        if body_type is not None and not (headers and "Content-Type" in headers):
            headers = {**(headers or {}), "Content-Type": body_type}
        where = f"{method} {url.path}"
        attempt = 0
        refreshed = False
        flow_limiter = FLOW_LIMITER.get()
        while True:
            if flow_limiter is not None:
                await flow_limiter.acquire(priority)
            await self.limiter.acquire(priority)
            try:
                return await self._attempt(method, url, where, body, headers, expect, use_auth)
            except _Denied as denied:
                if self.auth is not None and use_auth and not refreshed:
                    refreshed = True
                    self.stats.auth_refreshes += 1
                    try:
                        await self.auth.refresh()
                    except AuthError as exc:
                        raise self._error(
                            AuthError,
                            f"{where}: HTTP {denied.status}, credential refresh failed: {exc}",
                        ) from None
                    continue
                raise self._error(
                    AuthError, f"{where}: HTTP {denied.status}, credentials rejected: {denied.detail}"
                ) from None
            except _Throttled as throttled:
                self.stats.rate_limited += 1
                wait = throttled.retry_after
                # Nobody on this channel sends until the platform's window has room again.
                self.limiter.block_for(wait if wait is not None else self.backoff(attempt))
                if wait is not None and wait > self.max_retry_after:
                    raise self._error(
                        RateLimited,
                        f"{where}: HTTP 429, rate limited for {wait:.0f}s: {throttled.detail}",
                        retry_after=wait,
                    ) from None
                if attempt >= self.context.max_retries:
                    raise self._error(
                        RateLimited,
                        f"{where}: HTTP 429 after {attempt + 1} attempts: {throttled.detail}",
                        retry_after=wait,
                    ) from None
            except _Retry as retry:
                self.stats.transient_errors += 1
                if attempt >= self.context.max_retries:
                    raise self._error(
                        TransientError, f"{where}: {retry.detail} (after {attempt + 1} attempts)"
                    ) from None
                await self.clock.sleep(self.backoff(attempt))
            attempt += 1
            self.stats.retries += 1

    @staticmethod
    def _body(
        json: Any, data: Mapping[str, str] | bytes | str | None, multipart: bool
    ) -> tuple[bytes | None, str | None]:
        """The request body, encoded once for every attempt, and its Content-Type."""
        if json is not None:
            if data is not None:
                raise ValueError("pass json or data, not both")
            return encode_json(json), _JSON_TYPE
        if data is None:
            return None, None
        if isinstance(data, bytes):
            return data, "application/octet-stream"
        if isinstance(data, str):
            return data.encode("utf-8"), "text/plain; charset=utf-8"
        return encode_form(data, multipart)

    async def _attempt(
        self,
        method: str,
        url: URL,
        where: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        expect: Expect,
        use_auth: bool = True,
    ) -> HttpResponse:
        send_headers: Mapping[str, str] = headers or {}
        if self.auth is not None and use_auth:
            send_headers = {**(await self.auth.headers()), **send_headers}
        started = self.clock.monotonic()
        path = url.path
        status: int | None = None
        outcome = "ok"
        try:
            try:
                response = await self._get_transport().send(
                    method,
                    url,
                    send_headers,
                    body,
                    timeout=self.context.timeout_seconds,
                    max_body=self.max_body_bytes,
                )
            except BodyTooLarge as exc:
                raise _Retry("body_too_large", str(exc), status=exc.status) from None
            except RedirectRefused as exc:
                outcome = "redirect_refused"
                raise self._error(PermanentError, f"{where}: {exc}") from None
            except ValueError as exc:
                outcome = "invalid_url"
                raise self._error(PermanentError, f"{where}: cannot send ({exc})") from None
            except TimeoutError:
                raise _Retry("timeout", f"timed out after {self.context.timeout_seconds:g}s") from None
            except (WireError, OSError) as exc:
                detail = _truncate(self.redact(str(exc)) or "no detail", 200)
                raise _Retry(
                    "connection", detail if isinstance(exc, WireError) else f"{type(exc).__name__}: {detail}"
                ) from None
            status = response.status
            return self._interpret(response, where, expect)
        except _Retry as exc:
            outcome = exc.kind
            raise
        except (_Throttled, _Denied):
            outcome = f"http_{status}"
            raise
        except PermanentError:
            if status is not None:
                outcome = f"http_{status}"
            raise
        finally:
            self._record(method, path, status, outcome, started)

    def _interpret(self, resp: WireResponse, where: str, expect: Expect) -> HttpResponse:
        status, raw = resp.status, resp.body
        if status == 429:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), self.clock.now().timestamp())
            raise _Throttled(
                retry_after, _truncate(self.redact(error_message_from_body(raw)) or "too many requests")
            )
        if status in (401, 403):
            raise _Denied(status, _truncate(self.redact(error_message_from_body(raw)) or "no detail"))
        if status >= 500 or status == 408:
            detail = _truncate(self.redact(error_message_from_body(raw)))
            raise _Retry(
                f"http_{status}", f"HTTP {status}" + (f": {detail}" if detail else ""), status=status
            )
        if status >= 400:
            detail = _truncate(self.redact(error_message_from_body(raw))) or resp.reason or "no detail"
            raise self._error(PermanentError, f"{where}: HTTP {status}: {detail}", status=status)
        return HttpResponse(status=status, headers=resp.headers, body=self._decode(resp, expect))

    @staticmethod
    def _decode(resp: WireResponse, expect: Expect) -> Any:
        status, raw = resp.status, resp.body
        if expect == "none":
            return None
        if expect == "text":
            return _text(raw, content_type(resp.headers)[1])
        if status == 204 or not raw.strip():
            return None
        if resp.headers.get("Content-Type") == "application/json; charset=utf-8":
            try:  # the usual answer, without parsing the header's parameters again
                return decode_json(raw)
            except ValueError as exc:
                raise _Retry(
                    "malformed_json", f"malformed JSON body ({type(exc).__name__})", status=status
                ) from None
        ctype, charset = content_type(resp.headers)
        if not (ctype == "application/json" or ctype.endswith("+json")):
            raise _Retry("wrong_content_type", f"expected JSON, got {ctype}", status=status)
        try:
            return decode_json(raw.decode(charset or "utf-8"))
        except (ValueError, UnicodeDecodeError, LookupError) as exc:
            raise _Retry(
                "malformed_json", f"malformed JSON body ({type(exc).__name__})", status=status
            ) from None


def _text(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")
