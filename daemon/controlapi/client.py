"""Async client for the control API (the CLI and the TUI use it; it imports nothing else of the daemon).

Every call has a timeout. Errors come in three plain kinds: :class:`DaemonNotRunning` (no socket, or
nobody answering on it), :class:`ControlError` (the daemon said no: status code and its message) and
:class:`ControlTimeout`.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, TypeAdapter, ValidationError

from daemon.controlapi.wire import (
    ActionResult,
    ChannelStatus,
    DaemonStatus,
    ErrorBody,
    Event,
    InvoiceAddRequest,
    LogPage,
    OutboxItem,
    OutboxRetryRequest,
    Parcel,
    PriceSetRequest,
    Problems,
    ProductLinkRequest,
    ProductUnlinkRequest,
    StockMoveRequest,
    StockSetRequest,
    TrackingAddRequest,
)

_M = TypeVar("_M", bound=BaseModel)
_BASE = "http://storesync"
MAX_EVENT_LINE = 64 * 1024 * 1024


class ControlClientError(Exception):
    """Base of everything this client raises."""


class DaemonNotRunning(ControlClientError):
    def __init__(self, socket_path: str | Path, detail: str | None = None) -> None:
        self.socket_path = str(socket_path)
        self.detail = detail
        message = f"no daemon is running on {self.socket_path}"
        super().__init__(f"{message} ({detail})" if detail else message)


class ControlError(ControlClientError):
    """The daemon answered with an error; ``message`` is meant for people."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class ControlTimeout(ControlClientError):
    pass


def _params(values: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = value.isoformat() if isinstance(value, datetime) else str(value)
    return out


def _body(model: type[_M], **values: Any) -> _M:
    """Validate a request here too, so a typo fails before it travels, with the server's wording."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ControlError(400, f"{field}: {first['msg']}" if field else first["msg"], field) from None


class ControlClient:
    def __init__(
        self, socket_path: str | Path, timeout: float = 10.0, *, heartbeat_interval: float = 15.0
    ) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self.heartbeat_interval = heartbeat_interval
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    # -- plumbing --

    def _connection_error(self, exc: Exception) -> ControlClientError:
        os_error = getattr(exc, "os_error", None)
        code = getattr(os_error, "errno", None)
        if code == errno.EACCES:
            return ControlError(
                403, f"permission denied on {self.socket_path} (is this user in the daemon's group?)"
            )
        if code in (errno.ENOENT, errno.ECONNREFUSED) or isinstance(exc, aiohttp.ClientConnectorError):
            return DaemonNotRunning(self.socket_path)
        return DaemonNotRunning(self.socket_path, "the connection was lost")

    async def _error_from(self, response: aiohttp.ClientResponse) -> ControlError:
        text = await response.text()
        try:
            body = ErrorBody.model_validate_json(text)
        except ValidationError:
            return ControlError(response.status, text.strip()[:300] or (response.reason or "error"))
        return ControlError(response.status, body.error, body.field)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: BaseModel | None = None,
        data: str | None = None,
        content_type: str = "application/json",
    ) -> str:
        headers = {}
        payload: str | None = None
        if body is not None:
            payload = body.model_dump_json(exclude_none=True)
        elif data is not None:
            payload = data
        if payload is not None:
            headers["Content-Type"] = content_type
        try:
            async with self._http().request(
                method,
                _BASE + path,
                params=_params(params or {}),
                data=payload.encode() if payload is not None else None,
                headers=headers,
            ) as response:
                if response.status >= 400:
                    raise await self._error_from(response)
                return await response.text()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ControlTimeout(
                f"the daemon on {self.socket_path} did not answer within {self.timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise self._connection_error(exc) from None

    async def _get(self, path: str, model: type[_M], **params: Any) -> _M:
        return model.model_validate_json(await self._call("GET", path, params=params))

    async def _action(
        self, path: str, *, params: Mapping[str, Any] | None = None, body: BaseModel | None = None
    ) -> ActionResult:
        return ActionResult.model_validate_json(await self._call("POST", path, params=params, body=body))

    # -- reads --

    async def status(self) -> DaemonStatus:
        return await self._get("/status", DaemonStatus)

    async def channels(self) -> list[ChannelStatus]:
        text = await self._call("GET", "/channels")
        return TypeAdapter(list[ChannelStatus]).validate_json(text)

    async def logs(
        self,
        channel: str | None = None,
        flow: str | None = None,
        level: str | None = None,
        entity: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        q: str | None = None,
        cursor: int | None = None,
        limit: int = 200,
        entity_id: str | None = None,
    ) -> LogPage:
        return await self._get(
            "/logs",
            LogPage,
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

    async def events(
        self, after: int | None = None, *, heartbeats: bool = False, read_timeout: float | None = None
    ) -> AsyncGenerator[Event, None]:
        """Replay after ``after`` (None: live only), a status snapshot, then live events.

        Ends when the daemon closes the stream (it stops, or this client fell too far behind):
        reconnect with ``after=<id of the last log event seen>``. Raises ControlTimeout when nothing,
        not even a heartbeat, arrives within ``read_timeout`` (default: three heartbeats).
        """
        patience = read_timeout if read_timeout is not None else self.heartbeat_interval * 3
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=patience)
        try:
            async with self._http().get(
                _BASE + "/events", params=_params({"after": after}), timeout=timeout
            ) as response:
                if response.status >= 400:
                    raise await self._error_from(response)
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    if len(buffer) > MAX_EVENT_LINE:
                        raise ControlError(502, "an event line from the daemon is too long")
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if not line.strip():
                            continue
                        event = Event.model_validate_json(line)
                        if event.type == "heartbeat" and not heartbeats:
                            continue
                        yield event
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ControlTimeout(
                f"no events or heartbeats from {self.socket_path} for {patience:g} s"
            ) from None
        except aiohttp.ClientPayloadError:
            return  # the daemon went away mid-stream; the caller reconnects
        except aiohttp.ClientError as exc:
            raise self._connection_error(exc) from None

    async def outbox(
        self,
        state: str | None = None,
        channel: str | None = None,
        limit: int = 200,
        after: int | None = None,
    ) -> list[OutboxItem]:
        text = await self._call(
            "GET", "/outbox", params={"state": state, "channel": channel, "limit": limit, "after": after}
        )
        return TypeAdapter(list[OutboxItem]).validate_json(text)

    async def problems(self) -> Problems:
        return await self._get("/problems", Problems)

    async def order_parcels(self, channel: str, order: str) -> list[Parcel]:
        text = await self._call("GET", "/orders/parcels", params={"channel": channel, "order": order})
        return TypeAdapter(list[Parcel]).validate_json(text)

    async def explain(self, channel: str, entity: str, sku: str) -> dict[str, Any]:
        text = await self._call("GET", "/explain", params={"channel": channel, "entity": entity, "sku": sku})
        result = json.loads(text)
        return result if isinstance(result, dict) else {"result": result}

    # -- actions --

    async def sync(self, channel: str | None = None, flow: str | None = None) -> ActionResult:
        path = "/sync" if channel is None else f"/channels/{quote(channel, safe='')}/sync"
        return await self._action(path, params={"flow": flow})

    async def pause(self, channel: str, flow: str | None = None) -> ActionResult:
        return await self._action(f"/channels/{quote(channel, safe='')}/pause", params={"flow": flow})

    async def resume(self, channel: str, flow: str | None = None) -> ActionResult:
        return await self._action(f"/channels/{quote(channel, safe='')}/resume", params={"flow": flow})

    async def reload(self) -> ActionResult:
        return await self._action("/reload")

    async def retry_outbox(self, ids: list[int] | None = None, channel: str | None = None) -> ActionResult:
        return await self._action("/outbox/retry", body=OutboxRetryRequest(ids=ids, channel=channel))

    async def dismiss_import_failure(self, failure_id: int) -> ActionResult:
        return await self._action(f"/import-failures/{int(failure_id)}/dismiss")

    async def push_stock(self, sku: str) -> ActionResult:
        return await self._action(f"/products/{quote(sku, safe='')}/push-stock")

    async def link_product(self, sku: str, channel: str, remote_id: str) -> ActionResult:
        body = _body(ProductLinkRequest, channel=channel, remote_id=remote_id)
        return await self._action(f"/products/{quote(sku, safe='')}/link", body=body)

    async def unlink_product(self, sku: str, channel: str) -> ActionResult:
        body = _body(ProductUnlinkRequest, channel=channel)
        return await self._action(f"/products/{quote(sku, safe='')}/unlink", body=body)

    async def stock_set(self, sku: str, warehouse: str | None, quantity: int) -> ActionResult:
        body = _body(StockSetRequest, sku=sku, warehouse=warehouse, quantity=quantity)
        return await self._action("/stock/set", body=body)

    async def stock_move(
        self,
        sku: str,
        warehouse: str | None,
        delta: int,
        reason: str = "adjust",
        reference: str | None = None,
    ) -> ActionResult:
        body = _body(
            StockMoveRequest, sku=sku, warehouse=warehouse, delta=delta, reason=reason, reference=reference
        )
        return await self._action("/stock/move", body=body)

    async def price_set(
        self,
        sku: str,
        list_price: Decimal | str,
        sale_price: Decimal | str | None = None,
        cost_price: Decimal | str | None = None,
        promo_price: Decimal | str | None = None,
        promo_start: datetime | str | None = None,
        promo_end: datetime | str | None = None,
    ) -> ActionResult:
        body = _body(
            PriceSetRequest,
            sku=sku,
            list_price=list_price,
            sale_price=sale_price,
            cost_price=cost_price,
            promo_price=promo_price,
            promo_start=promo_start,
            promo_end=promo_end,
        )
        return await self._action("/prices/set", body=body)

    async def import_products(self, csv_text: str) -> ActionResult:
        text = await self._call("POST", "/products/import", data=csv_text, content_type="text/csv")
        return ActionResult.model_validate_json(text)

    async def invoice_add(
        self,
        channel: str,
        order_number: str,
        number: str,
        series: str,
        access_key: str,
        issued_at: datetime | str,
        danfe_url: str | None = None,
        xml_url: str | None = None,
    ) -> ActionResult:
        body = _body(
            InvoiceAddRequest,
            channel=channel,
            order_number=order_number,
            number=number,
            series=series,
            access_key=access_key,
            issued_at=issued_at,
            danfe_url=danfe_url,
            xml_url=xml_url,
        )
        return await self._action("/orders/invoice", body=body)

    async def tracking_add(
        self,
        channel: str,
        order_number: str,
        code: str,
        carrier: str | None = None,
        url: str | None = None,
    ) -> ActionResult:
        body = _body(
            TrackingAddRequest,
            channel=channel,
            order_number=order_number,
            code=code,
            carrier=carrier,
            url=url,
        )
        return await self._action("/orders/tracking", body=body)


async def wait_for_daemon(socket_path: str | Path, *, timeout: float = 10.0, interval: float = 0.1) -> None:
    """Return once a daemon answers ``GET /status`` on ``socket_path`` (for scripts and tests)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with ControlClient(socket_path, timeout=min(timeout, 5.0)) as client:
        while True:
            try:
                await client.status()
                return
            except DaemonNotRunning:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(interval)
