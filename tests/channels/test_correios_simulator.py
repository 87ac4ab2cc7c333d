"""The Correios simulator on loopback, spoken to with a bare aiohttp session (the connector's own tests
run it against the real connector)."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from channels.simulators.correios import NOT_FOUND, STORIES, CorreiosSimulator, build_parser
from daemon.clock import FakeClock

USER = "sim-usuario"
ACCESS = "sim-acesso"
CARD = "0067599079"
START = datetime(2026, 3, 15, 11, 0, tzinfo=UTC)


def basic(user: str = USER, code: str = ACCESS) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{code}".encode()).decode()}


def s10_ok(code: str) -> bool:
    """Independent S10 check (not the simulator's code)."""
    match = re.fullmatch(r"[A-Z]{2}(\d{8})(\d)[A-Z]{2}", code)
    if match is None:
        return False
    total = sum(int(d) * w for d, w in zip(match.group(1), [8, 6, 4, 2, 3, 5, 9, 7], strict=True))
    rest = total % 11
    expected = 5 if rest == 0 else 0 if rest == 1 else 11 - rest
    return int(match.group(2)) == expected


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[CorreiosSimulator]:
    async with CorreiosSimulator(
        USER, ACCESS, cartao_postagem=CARD, clock=clock, timeout_fault_seconds=5
    ) as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_token(http: aiohttp.ClientSession, sim: CorreiosSimulator) -> str:
    async with http.post(
        sim.url + "/token/v1/autentica/cartaopostagem", json={"numero": CARD}, headers=basic()
    ) as r:
        assert r.status == 201
        token = (await r.json())["token"]
    assert isinstance(token, str)
    return token


async def track(
    http: aiohttp.ClientSession, sim: CorreiosSimulator, token: str, query: str, path: str = ""
) -> tuple[int, Any]:
    url = f"{sim.url}/srorastro/v1/objetos{path}?{query}"
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json(content_type=None)


# --- token ---------------------------------------------------------------------------------------------


async def test_token_answer(sim: CorreiosSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(
        sim.url + "/token/v1/autentica/cartaopostagem", json={"numero": CARD}, headers=basic()
    ) as response:
        assert response.status == 201
        body = await response.json()
    assert body["zoneOffset"] == "-03:00"
    assert body["emissao"] == "2026-03-15T08:00:00"  # 11:00 UTC as naive Brasília time
    assert body["expiraEm"] == "2026-03-16T08:00:00"
    assert body["cartaoPostagem"]["numero"] == CARD and 87 in body["cartaoPostagem"]["api"]
    assert len(body["token"]) > 20
    async with http.post(sim.url + "/token/v1/autentica", headers=basic()) as response:
        assert response.status == 201
        assert "cartaoPostagem" not in await response.json()
    assert sim.tokens_issued == 2


@pytest.mark.parametrize(
    ("headers", "body", "status", "fragment"),
    [
        (basic(USER, "wrong"), {"numero": CARD}, 401, "inválido"),
        (basic("other", ACCESS), {"numero": CARD}, 401, "inválido"),
        ({"Authorization": "Basic not-base64!"}, {"numero": CARD}, 401, "inválido"),
        ({}, {"numero": CARD}, 401, "inválido"),
        (basic(), {"numero": "123"}, 400, "Cartão"),
        (basic(), {}, 400, "cartão"),
    ],
)
async def test_token_refusals(
    sim: CorreiosSimulator,
    http: aiohttp.ClientSession,
    headers: dict[str, str],
    body: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    url = sim.url + "/token/v1/autentica/cartaopostagem"
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status == status
        assert fragment in (await response.json())["msgs"][0]
    assert sim.tokens_issued == 0


# --- rastro --------------------------------------------------------------------------------------------


async def test_bearer_is_checked_and_expires(
    sim: CorreiosSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    code = sim.post_object()
    token = await get_token(http, sim)
    assert (await track(http, sim, token, f"codigosObjetos={code}"))[0] == 200
    assert (await track(http, sim, "made-up", f"codigosObjetos={code}"))[0] == 401
    clock.advance(24 * 3600 - 1)
    assert (await track(http, sim, token, f"codigosObjetos={code}"))[0] == 200
    clock.advance(1)
    status, body = await track(http, sim, token, f"codigosObjetos={code}")
    assert status == 401 and body["msgs"]
    token = await get_token(http, sim)
    sim.expire_tokens()
    assert (await track(http, sim, token, f"codigosObjetos={code}"))[0] == 401


async def test_batch_forms_limits_and_unknown_codes(
    sim: CorreiosSimulator, http: aiohttp.ClientSession
) -> None:
    known = sim.post_object()
    token = await get_token(http, sim)
    status, body = await track(
        http, sim, token, f"codigosObjetos={known}&codigosObjetos=QP123456785BR&resultado=U"
    )
    assert status == 200 and body["quantidade"] == 2
    first, second = body["objetos"]
    assert first["codObjeto"] == known and first["eventos"][0]["codigo"] == "PO"
    assert first["eventos"][0]["tipo"] == "01"
    assert second == {"codObjeto": "QP123456785BR", "mensagem": NOT_FOUND}
    status, body = await track(http, sim, token, f"codigosObjetos={known},QP123456785BR")
    assert [o["codObjeto"] for o in body["objetos"]] == [known, "QP123456785BR"]
    status, body = await track(http, sim, token, "resultado=T", path="/QP123456785BR")
    assert (status, body["objetos"][0]["mensagem"]) == (200, NOT_FOUND)
    fifty_one = "&".join(f"codigosObjetos=QP{i:08d}5BR" for i in range(51))
    status, body = await track(http, sim, token, fifty_one)
    assert status == 400 and "50" in body["msgs"][0]
    assert (await track(http, sim, token, "resultado=U"))[0] == 400
    assert (await track(http, sim, token, f"codigosObjetos={known}&resultado=X"))[0] == 400
    assert sim.codes_requested == [[known, "QP123456785BR"], [known, "QP123456785BR"], ["QP123456785BR"]]


async def test_resultado_and_event_order(sim: CorreiosSimulator, http: aiohttp.ClientSession) -> None:
    code = sim.post_object()
    assert [sim.advance(code) for _ in range(3)] == ["RO-01", "OEC-01", "BDE-01"]
    token = await get_token(http, sim)
    _, every = await track(http, sim, token, "resultado=T", path=f"/{code}")
    events = every["objetos"][0]["eventos"]
    assert [(e["codigo"], e["tipo"]) for e in events] == [
        ("BDE", "01"),
        ("OEC", "01"),
        ("RO", "01"),
        ("PO", "01"),
    ]
    assert events[0]["descricao"] == "Objeto entregue ao destinatário"
    assert events[0]["unidade"]["endereco"] == {"cidade": "SAO PAULO", "uf": "SP"}
    assert events[0]["dtHrCriado"] == "2026-03-15T08:00:00"
    _, last = await track(http, sim, token, f"codigosObjetos={code}&resultado=U")
    assert [e["codigo"] for e in last["objetos"][0]["eventos"]] == ["BDE"]
    _, first = await track(http, sim, token, f"codigosObjetos={code}&resultado=P")
    assert [e["codigo"] for e in first["objetos"][0]["eventos"]] == ["PO"]
    assert every["objetos"][0]["dtPrevista"] == "2026-03-20T08:00:00"


# --- hooks ---------------------------------------------------------------------------------------------


def test_posted_codes_are_valid_and_unique(sim: CorreiosSimulator) -> None:
    codes = [sim.post_object() for _ in range(200)]
    assert len(set(codes)) == 200
    assert all(s10_ok(c) and c.endswith("BR") for c in codes)
    assert sim.post_object("lb123456785cn", story=None) == "LB123456785CN"
    with pytest.raises(ValueError, match="already exists"):
        sim.post_object("LB123456785CN")
    with pytest.raises(ValueError, match="unknown story"):
        sim.post_object(story="lost")


@pytest.mark.parametrize("story", sorted(STORIES))
def test_stories_walk_to_their_end(sim: CorreiosSimulator, story: str) -> None:
    code = sim.post_object(story=story)
    steps = [sim.advance(code) for _ in range(len(STORIES[story]) - 1)]
    assert steps == [f"{c}-{t:02d}" for c, t, _, _ in STORIES[story][1:]]
    with pytest.raises(ValueError, match="finished"):
        sim.advance(code)
    last = {"delivered": "BDE-01", "pickup": "LDI-01", "returned": "BDE-23"}[story]
    assert steps[-1] == last


def test_add_event_prepends_and_checks_the_object(sim: CorreiosSimulator) -> None:
    code = sim.post_object(story=None)
    sim.add_event(code, "bde", "23", at=START - timedelta(hours=1))
    [obj] = sim.state()["objects"]
    assert [(e["codigo"], e["tipo"]) for e in obj["eventos"]] == [("BDE", "23"), ("PO", "01")]
    assert obj["eventos"][0]["descricao"] == "Objeto entregue ao remetente"
    assert obj["eventos"][0]["dtHrCriado"] == "2026-03-15T07:00:00"
    with pytest.raises(ValueError, match="unknown object"):
        sim.add_event("QP123456785BR", "BDE", 1)
    with pytest.raises(ValueError, match="no story"):
        sim.advance(code)


async def test_tipo_as_int(http: aiohttp.ClientSession) -> None:
    async with CorreiosSimulator(USER, ACCESS, tipo_as_int=True) as sim:
        code = sim.post_object()
        token = await get_token(http, sim)
        _, body = await track(http, sim, token, f"codigosObjetos={code}")
    assert body["objetos"][0]["eventos"][0]["tipo"] == 1


# --- faults --------------------------------------------------------------------------------------------


async def test_faults_are_served_in_order_and_filtered_by_path(
    sim: CorreiosSimulator, http: aiohttp.ClientSession
) -> None:
    code = sim.post_object()
    token = await get_token(http, sim)
    sim.inject_fault("5xx", 1, paths="/srorastro")
    sim.inject_fault("429", 1, retry_after=7, paths="/srorastro")
    async with http.post(sim.url + "/token/v1/autentica", headers=basic()) as response:
        assert response.status == 201  # not under the fault's paths
    async with http.get(f"{sim.url}/srorastro/v1/objetos?codigosObjetos={code}") as response:
        assert response.status == 503
    async with http.get(f"{sim.url}/srorastro/v1/objetos?codigosObjetos={code}") as response:
        assert (response.status, response.headers["Retry-After"]) == (429, "7")
    assert (await track(http, sim, token, f"codigosObjetos={code}"))[0] == 200
    for kind, status, ctype in [
        ("malformed_json", 200, "application/json"),
        ("wrong_content_type", 200, "text/html"),
        ("401", 401, "application/json"),
    ]:
        sim.inject_fault(kind)
        async with http.get(f"{sim.url}/srorastro/v1/objetos?codigosObjetos={code}") as response:
            assert (response.status, response.content_type) == (status, ctype)
            if kind == "malformed_json":
                with pytest.raises(ValueError):
                    await response.json()
    assert sim.faults_served == 5
    with pytest.raises(ValueError, match="unknown fault kind"):
        sim.inject_fault("teapot")


async def test_reset_fault_drops_the_connection(sim: CorreiosSimulator, http: aiohttp.ClientSession) -> None:
    sim.inject_fault("reset", 5)  # aiohttp itself retries an idempotent request once
    with pytest.raises(aiohttp.ClientError):
        async with http.get(f"{sim.url}/srorastro/v1/objetos?codigosObjetos=QP123456785BR") as response:
            await response.read()
    assert sim.faults_served >= 1 and sim.objects == {}


async def test_admin_endpoints(sim: CorreiosSimulator, http: aiohttp.ClientSession) -> None:
    admin = sim.url + "/__sim__"
    async with http.post(admin + "/objects", json={"story": "pickup"}) as response:
        assert response.status == 201
        code = (await response.json())["code"]
    async with http.post(f"{admin}/objects/{code}/advance") as response:
        assert (await response.json())["event"] == "RO-01"
    async with http.post(f"{admin}/objects/{code}/events", json={"codigo": "BDE", "tipo": 20}) as response:
        assert (await response.json())["event"]["tipo"] == "20"
    async with http.post(f"{admin}/objects/QP123456785BR/advance") as response:
        assert response.status == 400
    async with http.post(admin + "/faults", json={"kind": "5xx", "count": 2}) as response:
        assert response.status == 201
    async with http.delete(admin + "/faults") as response:
        assert response.status == 200
    token = await get_token(http, sim)
    async with http.post(admin + "/tokens/expire") as response:
        assert response.status == 200
    assert (await track(http, sim, token, f"codigosObjetos={code}"))[0] == 401
    async with http.get(admin + "/state") as response:
        state = await response.json()
    assert [e["codigo"] for e in state["objects"][0]["eventos"]] == ["BDE", "RO", "PO"]
    assert state["tokens"] == {"issued": 1, "valid": 0}
    assert state["counters"]["by_route"] == {
        "POST /token/v1/autentica/cartaopostagem": 1,
        "GET /srorastro/v1/objetos": 1,
    }
    assert state["faults"] == []


def test_command_line_defaults() -> None:
    args = build_parser().parse_args(["--objects", "2"])
    assert (args.host, args.objects, args.cartao_postagem) == ("127.0.0.1", 2, None)
