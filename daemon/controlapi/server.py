"""The control API server: HTTP+JSON on a Unix socket, for the CLI, the TUI and ``curl --unix-socket``.

The socket is the only door into a running daemon, so it is guarded twice: the file is 0660 (only
the daemon's user and group can connect) and every request checks the peer's credentials
(SO_PEERCRED). A lock file next to the socket makes "is another daemon running?" race-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import grp
import os
import pwd
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

import structlog
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from daemon.controlapi.runtime import FieldError, Runtime
from daemon.controlapi.wire import (
    ChannelStatus,
    ErrorBody,
    Event,
    InvoiceAddRequest,
    Level,
    OutboxItem,
    OutboxRetryRequest,
    OutboxState,
    Parcel,
    PriceSetRequest,
    ProductLinkRequest,
    ProductUnlinkRequest,
    StockMoveRequest,
    StockSetRequest,
    TrackingAddRequest,
)
from daemon.events import Subscription, stream_events
from daemon.logbook import Redactor
from daemon.secrets import SECRETS

SOCKET_MODE = 0o660
MAX_LIMIT = 5000
MAX_BODY = 32 * 1024 * 1024
LEVELS: tuple[str, ...] = get_args(Level)
OUTBOX_STATES: tuple[str, ...] = get_args(OutboxState)
EXPLAIN_ENTITIES = ("stock", "price")

_log = structlog.get_logger("storesync.control")
_M = TypeVar("_M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlSocketError(RuntimeError):
    """The control socket cannot be set up; the message says why and what to do."""


class AnotherDaemonRunning(ControlSocketError):
    def __init__(self, socket_path: Path) -> None:
        super().__init__(f"another storesync daemon is running on {socket_path}")
        self.socket_path = socket_path


# --- peer credentials ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCred(pid=pid, uid=uid, gid=gid)


def _peer_groups(peer: PeerCred) -> set[int]:
    """Supplementary groups of the peer process (from /proc), else of its user (from /etc/group)."""
    try:
        with open(f"/proc/{peer.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    try:
        name = pwd.getpwuid(peer.uid).pw_name
        return {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    except KeyError:
        return set()


def default_authorizer(socket_gid: int, own_uid: int | None = None) -> Callable[[PeerCred], bool]:
    """Root, the daemon's own user, or a member of the socket's group."""
    own = os.getuid() if own_uid is None else own_uid

    def allow(peer: PeerCred) -> bool:
        if peer.uid in (0, own) or peer.gid == socket_gid:
            return True
        return socket_gid in _peer_groups(peer)

    return allow


# --- the socket ---------------------------------------------------------------------------------


def _probe(path: Path) -> bool:
    """True when something accepts connections on ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except TimeoutError:
        return True  # alive but busy: do not steal its socket
    except OSError as exc:
        if exc.errno == errno.EACCES:
            raise ControlSocketError(
                f"{path} exists and this user may not connect to it; is another daemon running "
                "under a different user?"
            ) from None
        return False
    finally:
        probe.close()
    return True


def bind_control_socket(path: Path) -> tuple[socket.socket, int]:
    """A listening socket at ``path`` (mode 0660) and the lock that says we own it.

    Raises AnotherDaemonRunning when a live daemon answers there; a stale socket file left by a
    crash is replaced.
    """
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AnotherDaemonRunning(path) from None
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(mode):
                raise ControlSocketError(f"{path} exists and is not a socket; move it aside")
            if _probe(path):
                raise AnotherDaemonRunning(path)
            path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            # Nobody can connect before listen(), so the mode is right before the first client.
            os.chmod(path, SOCKET_MODE)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise AnotherDaemonRunning(path) from None
            raise ControlSocketError(f"cannot create the control socket {path}: {exc.strerror}") from None
    except BaseException:
        os.close(lock_fd)
        raise
    return sock, lock_fd


# --- request parsing ----------------------------------------------------------------------------


def _check_params(request: web.Request, allowed: Iterable[str]) -> None:
    known = set(allowed)
    for name in request.query:
        if name not in known:
            expected = ", ".join(sorted(known)) or "none"
            raise FieldError(f"unknown query parameter {name!r} (expected: {expected})", name)


def _str_param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    return value if value else None


def _int_param(
    request: web.Request, name: str, *, default: int | None = None, low: int = 0, high: int | None = None
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FieldError(f"{name} must be a whole number, got {raw!r}", name) from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise FieldError(f"{name} must be {bounds}, got {value}", name)
    return value


def _choice_param(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = _str_param(request, name)
    if value is not None and value not in choices:
        raise FieldError(f"{name} must be one of {', '.join(choices)}, got {value!r}", name)
    return value


def _time_param(request: web.Request, name: str) -> datetime | None:
    raw = _str_param(request, name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise FieldError(
            f"{name} must be an ISO-8601 time such as 2026-01-31T12:00:00Z, got {raw!r}", name
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise FieldError(f"{name} is required", name)
    return value


async def _json_body(request: web.Request, model: type[_M], *, optional: bool = False) -> _M:
    text = await request.text()
    if not text.strip():
        if optional:
            return model()
        raise FieldError("the request body is empty; expected a JSON object")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _validation_error(exc: ValidationError) -> FieldError:
    problems = exc.errors(include_url=False, include_input=False)
    if not problems:
        return FieldError("invalid request body")
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "json_invalid":
        return FieldError("the request body is not valid JSON")
    message = first["msg"]
    text = f"{field}: {message}" if field else message
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return FieldError(text, field)


# --- the server ---------------------------------------------------------------------------------


class ControlServer:
    def __init__(
        self,
        runtime: Runtime,
        socket_path: str | Path,
        *,
        authorize: Callable[[PeerCred], bool] | None = None,
        heartbeat_interval: float = 15.0,
        replay_page: int = 1000,
        redactor: Redactor | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.runtime = runtime
        self.socket_path = Path(socket_path)
        self._authorize = authorize
        self.heartbeat_interval = heartbeat_interval
        self._replay_page = replay_page
        self._redactor: Redactor = redactor or SECRETS
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._lock_fd: int | None = None
        self._inode: int | None = None
        self._streams: set[Subscription] = set()
        self._claimed: socket.socket | None = None

    # -- lifecycle --

    def claim(self) -> None:
        """Take the socket and its lock now and serve later (``start``): a second daemon learns that it
        is one before it opens a database or starts a flow. Raises AnotherDaemonRunning or
        ControlSocketError."""
        if self._claimed is None:
            sock, self._lock_fd = bind_control_socket(self.socket_path)
            self._claimed = sock
            self._inode = os.stat(self.socket_path).st_ino

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the control server is already started")
        self.claim()
        sock, self._claimed = self._claimed, None
        assert sock is not None
        info = os.stat(self.socket_path)
        if self._authorize is None:
            self._authorize = default_authorizer(info.st_gid)
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=self._shutdown_timeout)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            self._release()
            raise
        self._runner = runner
        _log.info("control_api_listening", socket=str(self.socket_path))

    async def stop(self) -> None:
        """End every event stream, stop serving, remove the socket (if it is still ours)."""
        for sub in list(self._streams):
            sub.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._release()

    def _release(self) -> None:
        if self._claimed is not None:
            self._claimed.close()
            self._claimed = None
        with contextlib.suppress(OSError):
            if self._inode is not None and os.stat(self.socket_path).st_ino == self._inode:
                self.socket_path.unlink()
        self._inode = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the application --

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        get, post = app.router.add_get, app.router.add_post
        get("/status", self._status)
        get("/channels", self._channels)
        get("/logs", self._logs)
        get("/events", self._events)
        get("/outbox", self._outbox)
        get("/problems", self._problems)
        get("/orders/parcels", self._order_parcels)
        get("/explain", self._explain)
        post("/sync", self._sync_all)
        post("/channels/{name}/sync", self._sync_channel)
        post("/channels/{name}/pause", self._pause)
        post("/channels/{name}/resume", self._resume)
        post("/reload", self._reload)
        post("/outbox/retry", self._retry_outbox)
        post("/import-failures/{id}/dismiss", self._dismiss)
        post("/products/{sku}/push-stock", self._push_stock)
        post("/products/{sku}/link", self._link_product)
        post("/products/{sku}/unlink", self._unlink_product)
        post("/products/import", self._import_products)
        post("/stock/set", self._stock_set)
        post("/stock/move", self._stock_move)
        post("/prices/set", self._price_set)
        post("/orders/invoice", self._invoice_add)
        post("/orders/tracking", self._tracking_add)
        return app

    def _error(self, status: int, message: str, field: str | None = None) -> web.Response:
        body = ErrorBody(error=self._redactor.redact(message), field=field)
        return web.Response(
            status=status, text=body.model_dump_json(exclude_none=True), content_type="application/json"
        )

    def _json(self, payload: BaseModel | list[Any] | dict[str, Any]) -> web.Response:
        if isinstance(payload, BaseModel):
            text = payload.model_dump_json()
        else:
            text = TypeAdapter(Any).dump_json(payload).decode()
        return web.Response(text=self._redactor.redact(text), content_type="application/json")

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self._check_peer(request)
        if refusal is not None:
            return refusal
        try:
            return await handler(request)
        except FieldError as exc:
            return self._error(400, exc.message, exc.field)
        except ValidationError as exc:
            err = _validation_error(exc)
            return self._error(400, err.message, err.field)
        except KeyError as exc:
            message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "not found"
            return self._error(404, message)
        except ValueError as exc:
            return self._error(400, str(exc) or "invalid request", getattr(exc, "field", None))
        except web.HTTPException as exc:
            if exc.status == 404:
                return self._error(404, f"no such endpoint: {request.method} {request.path}")
            if exc.status == 405:
                return self._error(405, f"{request.method} is not allowed on {request.path}")
            if exc.status == 413:
                return self._error(413, f"the request body is larger than {MAX_BODY // (1024 * 1024)} MiB")
            return self._error(exc.status, exc.reason)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            _log.exception("control_api_error", method=request.method, path=request.path)
            return self._error(500, f"internal error ({type(exc).__name__}); see the daemon's log")

    def _check_peer(self, request: web.Request) -> web.Response | None:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or self._authorize is None:
            return self._error(403, "permission denied: cannot identify the caller")
        try:
            peer = peer_credentials(sock)
        except OSError:
            return self._error(403, "permission denied: cannot identify the caller")
        if not self._authorize(peer):
            _log.warning("control_api_refused", peer_uid=peer.uid, peer_pid=peer.pid)
            return self._error(
                403,
                f"permission denied: uid {peer.uid} is not root, the daemon's user, or in the "
                "control socket's group",
            )
        return None

    # -- reads --

    async def _status(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        return self._json(await self.runtime.status())

    async def _channels(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        status = await self.runtime.status()
        adapter = TypeAdapter(list[ChannelStatus])
        text = adapter.dump_json(status.channels).decode()
        return web.Response(text=self._redactor.redact(text), content_type="application/json")

    async def _logs(self, request: web.Request) -> web.Response:
        names = ("channel", "flow", "level", "entity", "entity_id", "since", "until", "q", "cursor", "limit")
        _check_params(request, names)
        since, until = _time_param(request, "since"), _time_param(request, "until")
        if since is not None and until is not None and since >= until:
            raise FieldError("since must be earlier than until", "since")
        page = await self.runtime.query_logs(
            channel=_str_param(request, "channel"),
            flow=_str_param(request, "flow"),
            level=_choice_param(request, "level", LEVELS),
            entity=_str_param(request, "entity"),
            entity_id=_str_param(request, "entity_id"),
            since=since,
            until=until,
            q=_str_param(request, "q"),
            cursor=_int_param(request, "cursor", low=1),
            limit=_int_param(request, "limit", default=200, low=1, high=MAX_LIMIT) or 200,
        )
        return self._json(page)

    async def _outbox(self, request: web.Request) -> web.Response:
        _check_params(request, ("state", "channel", "limit", "after"))
        state = cast(OutboxState | None, _choice_param(request, "state", OUTBOX_STATES))
        items = await self.runtime.erp.outbox(
            state,
            _str_param(request, "channel"),
            _int_param(request, "limit", default=200, low=1, high=MAX_LIMIT) or 200,
            _int_param(request, "after", low=0),
        )
        text = TypeAdapter(list[OutboxItem]).dump_json(items).decode()
        return web.Response(text=self._redactor.redact(text), content_type="application/json")

    async def _problems(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        return self._json(await self.runtime.erp.problems())

    async def _order_parcels(self, request: web.Request) -> web.Response:
        _check_params(request, ("channel", "order"))
        channel = _required(_str_param(request, "channel"), "channel")
        order = _required(_str_param(request, "order"), "order")
        parcels = await self.runtime.erp.order_parcels(channel, order)
        text = TypeAdapter(list[Parcel]).dump_json(parcels).decode()
        return web.Response(text=self._redactor.redact(text), content_type="application/json")

    async def _explain(self, request: web.Request) -> web.Response:
        _check_params(request, ("channel", "entity", "sku"))
        channel = _required(_str_param(request, "channel"), "channel")
        sku = _required(_str_param(request, "sku"), "sku")
        entity = _choice_param(request, "entity", EXPLAIN_ENTITIES) or "stock"
        return self._json(await self.runtime.explain(channel, entity, sku))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Replay the rows after ``after`` (if given), a status snapshot, then live events.

        Subscribing before the replay and skipping log ids already sent is what makes the hand-over
        free of gaps and repeats; every event with id N follows the log row N in the stream.
        """
        _check_params(request, ("after",))
        after = _int_param(request, "after", low=0)
        runtime = self.runtime
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
        )
        response.enable_chunked_encoding()
        with runtime.bus.subscribe() as sub:
            start_id = runtime.bus.last_id  # taken with the subscription, before any await
            self._streams.add(sub)
            try:
                await response.prepare(request)
                events = stream_events(
                    sub,
                    after=after,
                    fetch_after=runtime.log_rows_after,
                    status=runtime.status,
                    heartbeat_interval=self.heartbeat_interval,
                    replay_page=self._replay_page,
                    start_id=start_id,
                )
                async with contextlib.aclosing(events):
                    async for event in events:
                        await self._send(response, event)
            except ConnectionError:
                return response  # the client went away
            except Exception:
                # Headers are sent: no error body possible. End the stream; the client resumes.
                _log.exception("control_api_stream_failed")
            finally:
                self._streams.discard(sub)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _send(self, response: web.StreamResponse, event: Event) -> None:
        line = self._redactor.redact(event.model_dump_json(exclude_none=True))
        await response.write(line.encode() + b"\n")

    # -- actions --

    async def _sync_all(self, request: web.Request) -> web.Response:
        _check_params(request, ("flow",))
        return self._json(await self.runtime.sync_now(None, _str_param(request, "flow")))

    async def _sync_channel(self, request: web.Request) -> web.Response:
        _check_params(request, ("flow",))
        name = request.match_info["name"]
        return self._json(await self.runtime.sync_now(name, _str_param(request, "flow")))

    async def _pause(self, request: web.Request) -> web.Response:
        _check_params(request, ("flow",))
        name = request.match_info["name"]
        return self._json(await self.runtime.pause(name, _str_param(request, "flow")))

    async def _resume(self, request: web.Request) -> web.Response:
        _check_params(request, ("flow",))
        name = request.match_info["name"]
        return self._json(await self.runtime.resume(name, _str_param(request, "flow")))

    async def _reload(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        return self._json(await self.runtime.reload())

    async def _retry_outbox(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        body = await _json_body(request, OutboxRetryRequest, optional=True)
        return self._json(await self.runtime.retry_outbox(body.ids, body.channel))

    async def _dismiss(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        raw = request.match_info["id"]
        if not raw.isdigit():
            raise FieldError(f"import failure id must be a whole number, got {raw!r}", "id")
        return self._json(await self.runtime.erp.dismiss_import_failure(int(raw)))

    async def _push_stock(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        return self._json(await self.runtime.push_stock(request.match_info["sku"]))

    async def _link_product(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        body = await _json_body(request, ProductLinkRequest)
        sku = request.match_info["sku"]
        return self._json(await self.runtime.link_product(sku, body.channel, body.remote_id))

    async def _unlink_product(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        body = await _json_body(request, ProductUnlinkRequest)
        return self._json(await self.runtime.unlink_product(request.match_info["sku"], body.channel))

    async def _import_products(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        if request.content_type not in ("text/csv", "text/plain", "application/octet-stream"):
            return self._error(415, f"expected a text/csv body, got {request.content_type}")
        raw = await request.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise FieldError(
                f"the CSV is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
            ) from None
        if not text.strip():
            raise FieldError("the CSV is empty")
        return self._json(await self.runtime.erp.import_products_csv(text))

    async def _stock_set(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        body = await _json_body(request, StockSetRequest)
        return self._json(await self.runtime.erp.stock_set(body.sku, body.warehouse, body.quantity))

    async def _stock_move(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        body = await _json_body(request, StockMoveRequest)
        if body.delta == 0:
            raise FieldError("delta must not be zero", "delta")
        result = await self.runtime.erp.stock_move(
            body.sku, body.warehouse, body.delta, body.reason, body.reference
        )
        return self._json(result)

    async def _price_set(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        b = await _json_body(request, PriceSetRequest)
        if b.promo_start and b.promo_end and b.promo_start >= b.promo_end:
            raise FieldError("promo_start must be earlier than promo_end", "promo_start")
        result = await self.runtime.erp.price_set(
            b.sku, b.list_price, b.sale_price, b.cost_price, b.promo_price, b.promo_start, b.promo_end
        )
        return self._json(result)

    async def _invoice_add(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        b = await _json_body(request, InvoiceAddRequest)
        result = await self.runtime.erp.invoice_add(
            b.channel, b.order_number, b.number, b.series, b.access_key, b.issued_at, b.danfe_url, b.xml_url
        )
        return self._json(result)

    async def _tracking_add(self, request: web.Request) -> web.Response:
        _check_params(request, ())
        b = await _json_body(request, TrackingAddRequest)
        result = await self.runtime.erp.tracking_add(b.channel, b.order_number, b.carrier, b.code, b.url)
        return self._json(result)
