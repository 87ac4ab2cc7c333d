"""Correios tracking connector (CWS token + SRO "API Rastro"), per shared/channels/correios.md.

Secrets: ``client_id`` is the "Meu Correios" user (``usuario``), ``client_secret`` the API access code
(``codigo de acesso``); both go out only as ``Authorization: Basic base64(usuario:codigo)`` on the token
request. The bearer token is cached by ``CorreiosToken``, which this connector installs as its
HttpClient's ``auth`` provider, so every Rastro call carries it and a 401 renews it and retries once.

Where the doc marks a fact secondary [C-2] or inferred [I], the choice is an option in
``context.options``:

* ``cartao_postagem`` - the postage card number, sent as ``{"numero": ...}`` to the card token endpoint
  (required with the default ``token_endpoint``; not a secret).
* ``token_endpoint`` - ``"cartaopostagem"`` (default: the token Net::Correios uses for SRO [C-2]) or
  ``"plain"`` (``/token/v1/autentica``, no body) for accounts whose user token carries API 87. The
  ``/contrato`` variant is not offered: nothing says Rastro needs it.
* ``token_margin_seconds`` - 300: renew this long before ``expiraEm`` (lifetime "about 24 h" [C-2];
  never earlier than half the token's lifetime, so a short-lived token is not fetched every call).
* ``remote_timezone`` - ``"-03:00"``: ``dtHrCriado``/``dtPrevista`` are naive local times [C]; Brasília
  is inferred. ``expiraEm`` uses the token's own ``zoneOffset`` when present.
* ``batch_size`` - 50 codes per GET, the limit one client documents [C-2]; larger values are capped.
* ``codes_param_style`` - ``"repeat"`` (default, ``codigosObjetos=A&codigosObjetos=B``, asserted by
  Net::Correios' test [C-2]) or ``"comma"`` (``codigosObjetos=A,B``, what other clients send [C-2]).
* ``resultado`` - ``"U"`` (last event only: all a state needs) or ``"T"`` (every event); events come
  newest first [C-2], so the state is read from ``eventos[0]`` either way.
* ``concurrency`` - 1: batches in flight at once (published Rastro rate limits were not found [I]).

Classification uses the (``codigo``, ``tipo``) pair only, never ``descricao`` ("entregue ao remetente"
contains "entregue" but is a return). A 403 (contract without Rastro [I]) costs one token renewal
before it surfaces as ``AuthError``: HttpClient refreshes on 401 and 403 alike.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import urlencode

from channels.base import Channel, TransientError
from channels.http import HttpClient
from channels.localtime import parse_local, parse_offset
from channels.models import (
    ChannelContext,
    FlowName,
    Priority,
    TrackingEvent,
    TrackingState,
    TrackingStatus,
)
from daemon.clock import Clock

MAX_BATCH = 50
TOKEN_PATHS = {"cartaopostagem": "/token/v1/autentica/cartaopostagem", "plain": "/token/v1/autentica"}
RASTRO_PATH = "/srorastro/v1/objetos"
FALLBACK_TOKEN_LIFETIME = timedelta(hours=1)
"""How long a token whose ``expiraEm`` is missing or unreadable is trusted (a 401 renews it anyway)."""
NOT_IN_ANSWER = "not in the carrier's answer"

_CODE = re.compile(r"[A-Z]{2}(\d{8})(\d)[A-Z]{2}")
_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
_EVENT = re.compile(r"(?:([A-Z]{1,4})-)?(\d{1,3})")
_BAIXA = frozenset({"BDE", "BDI", "BDR"})
_ATTEMPT = frozenset({20, 25, 34, 35, 46, 47})
_PROBLEM = frozenset({9, 12, 28, 37, 43, 50, 51, 52, 80})
_RETURNING = frozenset({26, 33, 36, 40, 42, 48, 49, 56})
_SENT_TOKEN: ContextVar[str | None] = ContextVar("correios_sent_token", default=None)
"""The token the current task's request carried, so a 401's refresh renews only a stale token."""


# --- codes and events --------------------------------------------------------------------------------


def check_digit(digits: str) -> int:
    """The S10 check digit of an object code's 8-digit serial."""
    rest = sum(int(d) * w for d, w in zip(digits, _WEIGHTS, strict=True)) % 11
    return 5 if rest == 0 else 0 if rest == 1 else 11 - rest


def code_problem(code: str) -> str | None:
    """Why ``code`` (already stripped and upper-cased) is not an object code, or None when it is."""
    match = _CODE.fullmatch(code)
    if match is None:
        return "not a Correios object code (2 letters, 9 digits, 2 letters)"
    if check_digit(match.group(1)) != int(match.group(2)):
        return "check digit does not match (not a Correios object code)"
    return None


def split_event(codigo: Any, tipo: Any) -> tuple[str, int]:
    """(family, sub-status) from the forms seen: ``("BDE", "01")``, ``("BDE", 1)``, ``"BDE-01"`` in
    either field. Raises ValueError when the pair cannot be read."""
    family = codigo.strip().upper() if isinstance(codigo, str) else ""
    family, _, embedded = family.partition("-")
    if tipo is None or (isinstance(tipo, str) and not tipo.strip()):
        tipo = embedded or None
    if isinstance(tipo, int) and not isinstance(tipo, bool):
        number = tipo
    elif isinstance(tipo, str) and (match := _EVENT.fullmatch(tipo.strip().upper())):
        if match.group(1):
            if family and family != match.group(1):
                raise ValueError(f"event codigo {codigo!r} and tipo {tipo!r} disagree")
            family = match.group(1)
        number = int(match.group(2))
    else:
        raise ValueError(f"unreadable event tipo {tipo!r}")
    if not family or number < 0:
        raise ValueError(f"unreadable event {codigo!r}/{tipo!r}")
    return family, number


def classify(family: str, tipo: int) -> TrackingState:
    """The doc's tables: the pair decides, because one ``tipo`` means different things per family."""
    if family in _BAIXA:
        if tipo in (0, 1):
            return TrackingState.DELIVERED
        if tipo == 23:
            return TrackingState.RETURNED
        if tipo in (2, 54):
            return TrackingState.AWAITING_PICKUP
        if tipo in _ATTEMPT:
            return TrackingState.DELIVERY_ATTEMPT
        if tipo in _PROBLEM:
            return TrackingState.EXCEPTION
        if (tipo <= 21 and tipo != 7) or tipo in _RETURNING:
            return TrackingState.RETURNING
        return TrackingState.IN_TRANSIT
    if family == "LDI" and tipo in (0, 1, 2, 3, 14):
        return TrackingState.AWAITING_PICKUP
    if family == "OEC":
        return {
            0: TrackingState.AWAITING_PICKUP,
            1: TrackingState.OUT_FOR_DELIVERY,
            9: TrackingState.RETURNING,
        }.get(tipo, TrackingState.IN_TRANSIT)
    if family == "FC" and tipo == 1:
        return TrackingState.RETURNING
    if family == "PO":
        return TrackingState.POSTED
    return TrackingState.IN_TRANSIT


def classify_event(codigo: Any, tipo: Any) -> TrackingState:
    """``classify`` on the raw fields of an event (see ``split_event`` for the accepted forms)."""
    return classify(*split_event(codigo, tipo))


# --- the token ---------------------------------------------------------------------------------------


class CorreiosToken:
    """HttpClient ``AuthProvider``: one cached bearer token, renewed before expiry, one fetch at a time."""

    def __init__(
        self,
        http: HttpClient,
        clock: Clock,
        *,
        path: str,
        body: dict[str, str] | None,
        basic: str,
        margin: timedelta,
        remote_tz: timezone,
    ) -> None:
        self._http = http
        self._clock = clock
        self._path = path
        self._body = body
        self._basic = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        self._margin = margin
        self._remote_tz = remote_tz
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._renew_at = datetime.min.replace(tzinfo=UTC)
        self.fetches = 0

    @property
    def renew_at(self) -> datetime:
        """When the current token is renewed (a margin before it expires)."""
        return self._renew_at

    def _fresh(self) -> bool:
        return self._token is not None and self._clock.now() < self._renew_at

    async def headers(self) -> dict[str, str]:
        if not self._fresh():
            async with self._lock:  # the first caller fetches; the others find it fresh
                if not self._fresh():
                    await self._fetch()
        token = self._token
        assert token is not None
        _SENT_TOKEN.set(token)
        return {"Authorization": f"Bearer {token}"}

    async def refresh(self) -> None:
        """After a 401: renew, unless another request already replaced the token this one carried."""
        sent = _SENT_TOKEN.get()
        async with self._lock:
            if self._token is not None and sent is not None and self._token != sent:
                return
            self._token = None
            await self._fetch()

    async def _fetch(self) -> None:
        response = await self._http.request(
            "POST",
            self._path,
            priority=Priority.for_flow(FlowName.TRACKING),
            json=self._body,
            headers=self._basic,
            use_auth=False,
        )
        self.fetches += 1
        body = response.body
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise TransientError(f"POST {self._path}: the answer carries no 'token'")
        token = token.strip()
        self._http.add_secret(token)
        now = self._clock.now()
        zone = self._remote_tz
        if isinstance(body.get("zoneOffset"), str):
            with contextlib.suppress(ValueError):  # a garbled offset: the configured zone
                zone = parse_offset(body["zoneOffset"], "zoneOffset")
        expires = parse_local(body.get("expiraEm"), zone)
        lifetime = expires - now if expires is not None else FALLBACK_TOKEN_LIFETIME
        if lifetime <= timedelta(0):
            lifetime = FALLBACK_TOKEN_LIFETIME  # clocks disagree: trust it a while, a 401 renews it
        self._token = token
        self._renew_at = now + max(lifetime - self._margin, lifetime / 2)


# --- the connector -----------------------------------------------------------------------------------


class CorreiosChannel(Channel):
    kind: ClassVar[str] = "correios"
    supported_flows: ClassVar[frozenset[FlowName]] = frozenset({FlowName.TRACKING})

    def __init__(self, context: ChannelContext, http: HttpClient) -> None:
        super().__init__(context, http)
        opts = context.options
        where = f"channel {context.name!r}"
        endpoint = str(opts.get("token_endpoint", "cartaopostagem"))
        if endpoint not in TOKEN_PATHS:
            raise ValueError(f"{where}: token_endpoint must be 'cartaopostagem' or 'plain'")
        body: dict[str, str] | None = None
        if endpoint == "cartaopostagem":
            cartao = str(opts.get("cartao_postagem") or "").strip()
            if not cartao:
                raise ValueError(f"{where}: option cartao_postagem is required for the card token")
            body = {"numero": cartao}
        self.remote_tz = parse_offset(str(opts.get("remote_timezone", "-03:00")), f"{where}: remote_timezone")
        self.batch_size = min(MAX_BATCH, max(1, int(opts.get("batch_size", MAX_BATCH))))
        self.resultado = str(opts.get("resultado", "U")).upper()
        if self.resultado not in ("U", "T"):
            raise ValueError(f"{where}: resultado must be 'U' or 'T'")
        self.param_style = str(opts.get("codes_param_style", "repeat"))
        if self.param_style not in ("repeat", "comma"):
            raise ValueError(f"{where}: codes_param_style must be 'repeat' or 'comma'")
        self.concurrency = max(1, int(opts.get("concurrency", 1)))
        basic = base64.b64encode(
            f"{context.secret('client_id')}:{context.secret('client_secret')}".encode()
        ).decode("ascii")
        http.add_secret(basic)
        self.token = CorreiosToken(
            http,
            http.clock,
            path=TOKEN_PATHS[endpoint],
            body=body,
            basic=basic,
            margin=timedelta(seconds=float(opts.get("token_margin_seconds", 300))),
            remote_tz=self.remote_tz,
        )
        if http.auth is not None:
            raise ValueError(f"{where}: the HTTP client already has an auth provider")
        http.auth = self.token

    async def check(self) -> str:
        """A fresh token: the credentials and the posting card are accepted."""
        await self.token.refresh()
        return f"token issued, renewed from {self.token.renew_at:%Y-%m-%d %H:%M} UTC"

    async def fetch_tracking(self, codes: Sequence[str]) -> list[TrackingStatus]:
        results: dict[str, TrackingStatus] = {}
        asked: dict[str, list[str]] = {}
        """Normalised code -> the caller's spellings of it (results are reported under those)."""
        for code in dict.fromkeys(codes):
            normal = code.strip().upper()
            problem = code_problem(normal)
            if problem is not None:
                results[code] = TrackingStatus(
                    tracking_code=code, state=TrackingState.INVALID_CODE, detail=problem
                )
            else:
                asked.setdefault(normal, []).append(code)
        wanted = list(asked)
        batches = [wanted[i : i + self.batch_size] for i in range(0, len(wanted), self.batch_size)]
        found: dict[str, TrackingStatus] = {}
        if self.concurrency == 1 or len(batches) < 2:
            for batch in batches:
                found.update(await self._track(batch))
        else:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(batch: list[str]) -> dict[str, TrackingStatus]:
                async with gate:
                    return await self._track(batch)

            tasks = [asyncio.ensure_future(one(b)) for b in batches]
            try:
                for answer in await asyncio.gather(*tasks):
                    found.update(answer)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        for normal, spellings in asked.items():
            status = found.get(normal) or TrackingStatus(
                tracking_code=normal, state=TrackingState.NOT_FOUND, detail=NOT_IN_ANSWER
            )
            for spelling in spellings:
                results[spelling] = status.model_copy(update={"tracking_code": spelling})
        return list(results.values())

    def _query(self, batch: Sequence[str]) -> str:
        pairs = (
            [("codigosObjetos", c) for c in batch]
            if self.param_style == "repeat"
            else [("codigosObjetos", ",".join(batch))]
        )
        return urlencode([*pairs, ("resultado", self.resultado)], safe=",")

    async def _track(self, batch: Sequence[str]) -> dict[str, TrackingStatus]:
        """One GET for up to ``batch_size`` codes; the query is in the path because the parameter repeats."""
        response = await self.http.request(
            "GET",
            f"{RASTRO_PATH}?{self._query(batch)}",
            priority=Priority.for_flow(FlowName.TRACKING),
            headers={"Accept": "application/json"},
        )
        body = response.body
        objects = body.get("objetos") if isinstance(body, dict) else None
        if not isinstance(objects, list):
            raise TransientError(f"GET {RASTRO_PATH}: the answer has no 'objetos' list")
        wanted = set(batch)
        out: dict[str, TrackingStatus] = {}
        for index, obj in enumerate(objects):
            code = obj.get("codObjeto") if isinstance(obj, dict) else None
            if not isinstance(code, str) or not code.strip():
                raise TransientError(f"GET {RASTRO_PATH}: objetos[{index}] has no codObjeto")
            code = code.strip().upper()
            if code in wanted:
                out[code] = self._status(code, obj)
        return out

    def _status(self, code: str, obj: dict[str, Any]) -> TrackingStatus:
        events = obj.get("eventos")
        message = obj.get("mensagem")
        detail = message.strip() if isinstance(message, str) and message.strip() else None
        if not isinstance(events, list) or not events or not isinstance(events[0], dict):
            return TrackingStatus(
                tracking_code=code,
                state=TrackingState.NOT_FOUND,
                detail=detail or "the carrier has no events for this object",
            )
        latest: dict[str, Any] = events[0]
        expected = parse_local(obj.get("dtPrevista"), self.remote_tz)
        try:
            family, tipo = split_event(latest.get("codigo"), latest.get("tipo"))
        except ValueError as exc:  # keep tracking; a person can read the detail
            return TrackingStatus(
                tracking_code=code,
                state=TrackingState.IN_TRANSIT,
                event=self._event(latest, str(latest.get("codigo") or "?")),
                expected_delivery=expected,
                detail=str(exc),
            )
        return TrackingStatus(
            tracking_code=code,
            state=classify(family, tipo),
            event=self._event(latest, f"{family}-{tipo:02d}"),
            expected_delivery=expected,
            detail=detail,
        )

    def _event(self, event: dict[str, Any], code: str) -> TrackingEvent:
        description = event.get("descricao")
        return TrackingEvent(
            code=code,
            description=description.strip() if isinstance(description, str) else "",
            at=parse_local(event.get("dtHrCriado"), self.remote_tz),
            place=_place(event.get("unidade")),
        )


def _place(unit: Any) -> str | None:
    """``CIDADE/UF`` of an event's unit (either half alone when the other is missing)."""
    address = unit.get("endereco") if isinstance(unit, dict) else None
    if not isinstance(address, dict):
        return None
    parts = [str(address[k]).strip() for k in ("cidade", "uf") if address.get(k)]
    return "/".join(p for p in parts if p) or None
