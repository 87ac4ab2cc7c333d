"""What every loopback simulator shares: listening, counting requests per route, and serving the
faults a test injects (the fault suite drives every platform the same way). A platform's simulator
adds its routes and says what its own 401, 429 and malformed answers look like."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from aiohttp import web

ADMIN_PREFIX = "/__sim__"
"""Test hooks over HTTP: not counted, never faulted."""
FAULT_KINDS = frozenset(
    {"5xx", "timeout", "reset", "429", "malformed_json", "wrong_content_type", "huge_body", "401"}
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, ensure_ascii=False),
        content_type="application/json",
        headers=headers,
    )


@dataclass
class Fault:
    kind: str
    count: int
    retry_after: float | None = None
    paths: str | None = None
    """Only requests whose (canonical) path starts with this get the fault."""


class SimulatorServer:
    """Lifecycle, request counting and fault injection; subclasses build ``app`` and the responses."""

    malformed_json: ClassVar[str] = '{"objects": ['
    """A 200 body cut off mid-way, in the platform's own shape."""
    input_errors: ClassVar[tuple[type[Exception], ...]] = (ValueError, TypeError)
    """What a test hook's bad body raises (answered 400 by ``bad_request``)."""

    def __init__(self, *, timeout_fault_seconds: float, huge_body_bytes: int) -> None:
        self.timeout_fault_seconds = timeout_fault_seconds
        self.huge_body_bytes = huge_body_bytes
        self.requests = 0
        self.faults_served = 0
        self.by_route: dict[str, int] = {}
        self._faults: list[Fault] = []
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.url = ""

    def app(self) -> web.Application:
        raise NotImplementedError

    def canonical_path(self, path: str) -> str:
        """The path faults and route counters compare (a platform with path aliases maps them here)."""
        return path

    def fault_429(self, retry_after: float | None) -> web.Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return json_response({"error": "too many requests"}, status=429, headers=headers)

    def fault_401(self) -> web.Response:
        return web.Response(status=401, body=b"")

    def bad_request(self, message: str) -> web.Response:
        return json_response({"error": message}, status=400)

    async def admin_body(self, request: web.Request) -> dict[str, Any]:
        """A test hook's JSON object body ({} when there is none)."""
        if not request.can_read_body:
            return {}
        data = await request.json()
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data

    def add_fault_routes(self, app: web.Application) -> None:
        """``POST``/``DELETE {ADMIN_PREFIX}/faults``: inject_fault and clear_faults over HTTP."""
        app.router.add_post(ADMIN_PREFIX + "/faults", self._a_faults)
        app.router.add_delete(ADMIN_PREFIX + "/faults", self._a_clear_faults)

    async def _a_faults(self, request: web.Request) -> web.Response:
        try:
            body = await self.admin_body(request)
            retry = body.get("retry_after")
            self.inject_fault(
                str(body.get("kind")),
                int(body.get("count", 1)),
                retry_after=None if retry is None else float(retry),
                paths=body.get("paths"),
            )
        except self.input_errors as exc:
            return self.bad_request(str(exc))
        return json_response({"ok": True, "faults": self.faults()}, status=201)

    async def _a_clear_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return json_response({"ok": True})

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 picks a free port); returns (and sets) ``url``."""
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(
            self.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- counting and faults -----------------------------------------------------------------------

    def count(self, request: web.Request) -> None:
        self.requests += 1
        route = request.match_info.route.resource
        path = self.canonical_path(route.canonical) if route else request.path
        key = f"{request.method} {path}".rstrip("/")
        self.by_route[key] = self.by_route.get(key, 0) + 1

    def inject_fault(
        self, kind: str, count: int = 1, *, retry_after: float | None = None, paths: str | None = None
    ) -> None:
        """The next ``count`` API requests (whose path starts with ``paths``, if given) get ``kind``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(sorted(FAULT_KINDS))})")
        if count < 1:
            raise ValueError("fault count must be >= 1")
        self._faults.append(Fault(kind, count, retry_after, paths))

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        return [vars(f).copy() for f in self._faults]

    async def injected_fault(self, request: web.Request) -> web.StreamResponse | None:
        """The response of the next fault that applies to this request, if any (and uses it up)."""
        path = self.canonical_path(request.path)
        fault = next(
            (f for f in self._faults if f.paths is None or path.startswith(self.canonical_path(f.paths))),
            None,
        )
        if fault is None:
            return None
        fault.count -= 1
        self._faults = [f for f in self._faults if f.count > 0]
        self.faults_served += 1
        return await self._serve_fault(request, fault)

    async def _serve_fault(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        kind = fault.kind
        if kind == "5xx":
            return web.Response(
                status=503, text="<html>503 Service Unavailable</html>", content_type="text/html"
            )
        if kind == "429":
            return self.fault_429(fault.retry_after)
        if kind == "401":
            return self.fault_401()
        if kind == "malformed_json":
            return web.Response(status=200, text=self.malformed_json, content_type="application/json")
        if kind == "wrong_content_type":
            return web.Response(
                status=200, text="<html><body>Em manutenção</body></html>", content_type="text/html"
            )
        if kind == "timeout":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.timeout_fault_seconds)
            return web.Response(status=504, text="late")
        if kind == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        return await self._huge_body(request)

    async def _huge_body(self, request: web.Request) -> web.StreamResponse:
        """A chunked JSON body far over any sane size, streamed so neither side buffers it all."""
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"[" + b"0," * 32767 + b"0]"
        sent = 0
        try:
            while sent < self.huge_body_bytes:
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client hung up once it had seen enough - the point of the fault
        return response


async def serve_until_signal(
    sim: SimulatorServer, host: str, port: int, banner: Callable[[str], str]
) -> None:
    """Run ``sim`` until SIGINT/SIGTERM (the command-line entry points)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await sim.start(host, port)
    print(banner(url), flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
