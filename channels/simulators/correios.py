"""A loopback Correios CWS: the token API and SRO "API Rastro" as shared/channels/correios.md describes
them, so the tracking connector and the end-to-end tests run without the real carrier.

What it models: ``POST /token/v1/autentica`` and ``/token/v1/autentica/cartaopostagem`` (Basic
``usuario:codigo_acesso``; 201 with ``token``, ``expiraEm`` = now + 24 h as naive Brasília time and
``zoneOffset``); ``GET /srorastro/v1/objetos?codigosObjetos=...`` (the parameter repeated or
comma-separated, at most 50 codes) and ``GET /srorastro/v1/objetos/{code}``, both with ``resultado``
``T``/``U``/``P`` and a bearer token; events newest first with ``codigo``/``tipo``/``dtHrCriado``/
``unidade``; unknown codes as an object with only ``codObjeto`` and the SRO-020 ``mensagem`` (HTTP 200);
gateway errors as ``{"msgs": [...]}``.

Inferred, not confirmed (it is a test double, not a spec): the wording of error messages; 400 for a
wrong card number or more than 50 codes; 401 for an expired or unknown token; ``resultado`` defaulting
to ``T``; 200 + SRO-020 for an unknown code on the single-object path too; no rate limit (only the
``429`` fault).

Test hooks, as Python methods and under ``/__sim__/`` (no auth) for a test in another process:
objects and scripted stories (``post_object``, ``advance``, ``add_event``), ``expire_tokens``,
fault injection, and ``state()`` with request counters.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from channels.simulators._server import ADMIN_PREFIX, SimulatorServer, serve_until_signal
from channels.simulators._server import json_response as _json
from daemon.clock import SYSTEM_CLOCK, Clock

BRT = timezone(timedelta(hours=-3))
AUTH_PATH = "/token/v1/autentica"
RASTRO_PATH = "/srorastro/v1/objetos"
MAX_CODES = 50
NOT_FOUND = "SRO-020: Objeto não encontrado na base de dados dos Correios."
_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)

DESCRIPTIONS: dict[tuple[str, int], str] = {
    ("PO", 1): "Objeto postado",
    ("RO", 1): "Objeto em trânsito - por favor aguarde",
    ("DO", 1): "Objeto em trânsito - por favor aguarde",
    ("OEC", 1): "Objeto saiu para entrega ao destinatário",
    ("OEC", 9): "Objeto saiu para entrega ao remetente",
    ("LDI", 1): "Objeto aguardando retirada no endereço indicado",
    ("BDE", 1): "Objeto entregue ao destinatário",
    ("BDE", 20): "Objeto não entregue - carteiro não atendido",
    ("BDE", 23): "Objeto entregue ao remetente",
}
_UNIT_TYPES = {"PO": "Agência dos Correios", "RO": "Unidade de Tratamento", "DO": "Unidade de Tratamento"}

Step = tuple[str, int, str, str]
"""(codigo, tipo, cidade, uf) of one scripted event."""
_POSTED: Step = ("PO", 1, "CURITIBA", "PR")
_TRANSIT: Step = ("RO", 1, "CAJAMAR", "SP")
_OUT: Step = ("OEC", 1, "SAO PAULO", "SP")
STORIES: dict[str, tuple[Step, ...]] = {
    "delivered": (_POSTED, _TRANSIT, _OUT, ("BDE", 1, "SAO PAULO", "SP")),
    "pickup": (_POSTED, _TRANSIT, _OUT, ("BDE", 20, "SAO PAULO", "SP"), ("LDI", 1, "SAO PAULO", "SP")),
    "returned": (
        _POSTED,
        _TRANSIT,
        _OUT,
        ("BDE", 20, "SAO PAULO", "SP"),
        ("RO", 1, "CAJAMAR", "SP"),
        ("OEC", 9, "CURITIBA", "PR"),
        ("BDE", 23, "CURITIBA", "PR"),
    ),
}
"""Scripted journeys from the doc's fake-server notes; ``advance`` walks one step at a time."""


def check_digit(serial: str) -> int:
    """S10 check digit of an 8-digit serial (written independently of the connector's copy)."""
    rest = sum(int(d) * w for d, w in zip(serial, _WEIGHTS, strict=True)) % 11
    return {0: 5, 1: 0}.get(rest, 11 - rest)


def make_code(rng: random.Random, prefix: str = "QP", suffix: str = "BR") -> str:
    serial = f"{rng.randrange(10**8):08d}"
    return f"{prefix}{serial}{check_digit(serial)}{suffix}"


def _naive_brt(moment: datetime) -> str:
    return moment.astimezone(BRT).replace(tzinfo=None).isoformat(timespec="seconds")


def _msgs(status: int, message: str) -> web.Response:
    """The gateway's error shape (``MessageApiGateway``): clients show ``msgs[0]``."""
    return _json({"msgs": [message], "date": None, "path": None}, status=status)


@dataclass
class SimObject:
    code: str
    story: str | None
    step: int
    expected: datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    """Stored newest first, as the API returns them; ``tipo`` kept as an int, rendered on the way out."""


class CorreiosSimulator(SimulatorServer):
    malformed_json = '{"versao": "1.0.0", "objetos": ['

    def __init__(
        self,
        usuario: str,
        codigo_acesso: str,
        *,
        cartao_postagem: str | None = None,
        clock: Clock | None = None,
        seed: int = 1,
        token_ttl_seconds: float = 24 * 3600,
        tipo_as_int: bool = False,
        timeout_fault_seconds: float = 30.0,
        huge_body_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.usuario = usuario
        self.codigo_acesso = codigo_acesso
        self.cartao_postagem = cartao_postagem
        """When set, the card endpoint answers 400 for any other ``numero``."""
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.token_ttl = timedelta(seconds=token_ttl_seconds)
        self.tipo_as_int = tipo_as_int
        """Render ``tipo`` as a JSON number (some clients see it that way) instead of ``"01"``."""
        super().__init__(timeout_fault_seconds=timeout_fault_seconds, huge_body_bytes=huge_body_bytes)
        self._rng = random.Random(seed)
        self.objects: dict[str, SimObject] = {}
        self.tokens: dict[str, datetime] = {}
        self.tokens_issued = 0
        self.codes_requested: list[list[str]] = []
        """The codes of every answered Rastro request, in order (tests check batching)."""
        self.queries: list[str] = []
        """The raw query string of every answered Rastro request (tests check the parameter form)."""

    # --- lifecycle ---------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post(AUTH_PATH, self._h_token)
        app.router.add_post(AUTH_PATH + "/cartaopostagem", self._h_token)
        app.router.add_get(RASTRO_PATH, self._h_objects)
        app.router.add_get(RASTRO_PATH + "/{code}", self._h_objects)
        self.add_fault_routes(app)
        app.router.add_post(ADMIN_PREFIX + "/objects", self._a_post_object)
        app.router.add_post(ADMIN_PREFIX + "/objects/{code}/advance", self._a_advance)
        app.router.add_post(ADMIN_PREFIX + "/objects/{code}/events", self._a_add_event)
        app.router.add_post(ADMIN_PREFIX + "/tokens/expire", self._a_expire_tokens)
        app.router.add_get(ADMIN_PREFIX + "/state", self._a_state)
        return app

    # --- the gate every API request passes ---------------------------------------------------------------

    def bad_request(self, message: str) -> web.Response:
        return _msgs(400, message)

    def fault_429(self, retry_after: float | None) -> web.Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return _json({"msgs": ["Limite de requisições excedido."]}, status=429, headers=headers)

    def fault_401(self) -> web.Response:
        return _msgs(401, "Token inválido ou expirado.")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        self.count(request)
        fault = await self.injected_fault(request)
        return fault if fault is not None else await handler(request)

    def _basic_ok(self, header: str) -> bool:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, code = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(sep) and user == self.usuario and code == self.codigo_acesso

    def _bearer_ok(self, header: str) -> bool:
        scheme, _, token = header.strip().partition(" ")
        expires = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return expires is not None and self.clock.now() < expires

    # --- handlers --------------------------------------------------------------------------------------

    async def _h_token(self, request: web.Request) -> web.Response:
        if not self._basic_ok(request.headers.get("Authorization", "")):
            return _msgs(401, "Usuário ou código de acesso inválido.")
        body: dict[str, Any] = {}
        card = request.path.endswith("/cartaopostagem")
        if card:
            try:
                data = await request.json()
            except (ValueError, UnicodeDecodeError):
                data = None
            numero = data.get("numero") if isinstance(data, dict) else None
            if not isinstance(numero, str) or not numero.strip():
                return _msgs(400, "Informe o número do cartão de postagem.")
            if self.cartao_postagem is not None and numero.strip() != self.cartao_postagem:
                return _msgs(400, "Cartão de postagem não pertence ao usuário.")
            body["cartaoPostagem"] = {
                "numero": numero.strip(),
                "contrato": "9912345678",
                "dr": 72,
                "api": [87],
            }
        now = self.clock.now()
        token = secrets.token_urlsafe(32)
        self.tokens[token] = now + self.token_ttl
        self.tokens_issued += 1
        answer = {
            "ambiente": "HOMOLOGACAO",
            "id": self.usuario,
            "perfil": "PJ",
            "cnpj": "11111111000111",
            "emissao": _naive_brt(now),
            "expiraEm": _naive_brt(now + self.token_ttl),
            "zoneOffset": "-03:00",
            "token": token,
            **body,
        }
        return _json(answer, status=201)

    async def _h_objects(self, request: web.Request) -> web.Response:
        if not self._bearer_ok(request.headers.get("Authorization", "")):
            return _msgs(401, "Token inválido ou expirado.")
        single = request.match_info.get("code")
        raw = [single] if single else request.query.getall("codigosObjetos", [])
        codes = [c.strip().upper() for item in raw for c in item.split(",") if c.strip()]
        if not codes:
            return _msgs(400, "Informe ao menos um código de objeto.")
        if len(codes) > MAX_CODES:
            return _msgs(400, f"Quantidade de objetos excede o limite de {MAX_CODES}.")
        resultado = request.query.get("resultado", "T").upper()
        if resultado not in ("T", "U", "P"):
            return _msgs(400, "Parâmetro resultado inválido: use T, U ou P.")
        self.codes_requested.append(codes)
        self.queries.append(request.query_string)
        objetos = [self._object_json(code, resultado) for code in dict.fromkeys(codes)]
        return _json({"versao": "1.0.0", "quantidade": len(objetos), "objetos": objetos})

    def _object_json(self, code: str, resultado: str) -> dict[str, Any]:
        obj = self.objects.get(code)
        if obj is None:
            return {"codObjeto": code, "mensagem": NOT_FOUND}
        events = obj.events[:1] if resultado == "U" else obj.events[-1:] if resultado == "P" else obj.events
        return {
            "codObjeto": code,
            "tipoPostal": {
                "sigla": code[:2],
                "descricao": "ETIQUETA LOGICA PAC",
                "categoria": "ENCOMENDA PAC",
            },
            "dtPrevista": _naive_brt(obj.expected),
            "contrato": "9912345678",
            "peso": 0.3,
            "formato": "Pacote",
            "modalidade": "F",
            "eventos": [self._event_json(e) for e in events],
        }

    def _event_json(self, event: dict[str, Any]) -> dict[str, Any]:
        tipo = event["tipo"] if self.tipo_as_int else f"{event['tipo']:02d}"
        return {**event, "tipo": tipo}

    # --- test hooks (Python) -----------------------------------------------------------------------------

    def post_object(self, code: str | None = None, *, story: str | None = "delivered") -> str:
        """A new posted object (``PO-01``); a fresh code with a valid check digit when none is given.
        ``story`` names the journey ``advance`` walks (None: only ``add_event`` moves it)."""
        if story is not None and story not in STORIES:
            raise ValueError(f"unknown story {story!r} (known: {', '.join(sorted(STORIES))})")
        if code is None:
            code = make_code(self._rng)
            while code in self.objects:
                code = make_code(self._rng)
        code = code.strip().upper()
        if code in self.objects:
            raise ValueError(f"object {code} already exists")
        self.objects[code] = SimObject(code, story, 0, self.clock.now() + timedelta(days=5))
        codigo, tipo, cidade, uf = _POSTED
        self.add_event(code, codigo, tipo, cidade=cidade, uf=uf)
        return code

    def add_event(
        self,
        code: str,
        codigo: str,
        tipo: int | str,
        descricao: str | None = None,
        *,
        cidade: str = "SAO PAULO",
        uf: str = "SP",
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Prepend an event (the newest comes first) to an existing object; returns it as stored."""
        obj = self.objects.get(code.strip().upper())
        if obj is None:
            raise ValueError(f"unknown object {code!r}")
        number = int(tipo)
        family = codigo.strip().upper()
        unit_type = _UNIT_TYPES.get(family, "Unidade de Distribuição")
        event = {
            "codigo": family,
            "tipo": number,
            "dtHrCriado": _naive_brt(at or self.clock.now()),
            "descricao": descricao or DESCRIPTIONS.get((family, number), f"Evento {family}-{number:02d}"),
            "unidade": {"tipo": unit_type, "endereco": {"cidade": cidade, "uf": uf}},
        }
        obj.events.insert(0, event)
        return event

    def advance(self, code: str) -> str:
        """Move the object one step along its story; returns the new event's ``BDE-01``-style code."""
        obj = self.objects.get(code.strip().upper())
        if obj is None:
            raise ValueError(f"unknown object {code!r}")
        if obj.story is None:
            raise ValueError(f"object {code} has no story")
        steps = STORIES[obj.story]
        if obj.step + 1 >= len(steps):
            raise ValueError(f"object {code} has finished its {obj.story!r} story")
        obj.step += 1
        codigo, tipo, cidade, uf = steps[obj.step]
        self.add_event(obj.code, codigo, tipo, cidade=cidade, uf=uf)
        return f"{codigo}-{tipo:02d}"

    def expire_tokens(self) -> None:
        """Every token issued so far is rejected from now on (the next API call gets a 401)."""
        self.tokens.clear()

    def state(self) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "objects": [
                {
                    "code": o.code,
                    "story": o.story,
                    "step": o.step,
                    "eventos": [self._event_json(e) for e in o.events],
                }
                for o in self.objects.values()
            ],
            "tokens": {
                "issued": self.tokens_issued,
                "valid": sum(1 for t in self.tokens.values() if now < t),
            },
            "counters": {
                "requests": self.requests,
                "faults_served": self.faults_served,
                "by_route": dict(self.by_route),
            },
            "faults": self.faults(),
        }

    # --- test hooks (HTTP) -------------------------------------------------------------------------------

    async def _a_post_object(self, request: web.Request) -> web.Response:
        try:
            body = await self.admin_body(request)
            code = self.post_object(body.get("code"), story=body.get("story", "delivered"))
        except (ValueError, TypeError, AttributeError) as exc:
            return _msgs(400, str(exc))
        return _json({"code": code}, status=201)

    async def _a_advance(self, request: web.Request) -> web.Response:
        try:
            event = self.advance(request.match_info["code"])
        except ValueError as exc:
            return _msgs(400, str(exc))
        return _json({"event": event})

    async def _a_add_event(self, request: web.Request) -> web.Response:
        try:
            body = await self.admin_body(request)
            event = self.add_event(
                request.match_info["code"], str(body["codigo"]), body["tipo"], body.get("descricao")
            )
        except (ValueError, TypeError, KeyError) as exc:
            return _msgs(400, f"bad event: {exc}")
        return _json({"event": self._event_json(event)}, status=201)

    async def _a_expire_tokens(self, request: web.Request) -> web.Response:
        self.expire_tokens()
        return _json({"ok": True})

    async def _a_state(self, request: web.Request) -> web.Response:
        return _json(self.state())


# --- command line -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m channels.simulators.correios", description="A loopback Correios token + Rastro API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--usuario", default="demo-usuario")
    parser.add_argument("--codigo-acesso", default="demo-codigo-acesso")
    parser.add_argument("--cartao-postagem", default=None)
    parser.add_argument("--objects", type=int, default=5, help="objects posted at start (story 'delivered')")
    parser.add_argument("--seed", type=int, default=1)
    return parser


async def serve(args: argparse.Namespace) -> None:
    sim = CorreiosSimulator(
        args.usuario, args.codigo_acesso, cartao_postagem=args.cartao_postagem, seed=args.seed
    )
    codes = [sim.post_object() for _ in range(max(0, args.objects))]
    await serve_until_signal(
        sim,
        args.host,
        args.port,
        lambda url: f"correios simulator listening on {url}; objects: {' '.join(codes)}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(serve(build_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
