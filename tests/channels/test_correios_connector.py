"""CorreiosChannel: code checks, the classification table, the token's life, batching and bad answers.

Most tests run against the loopback simulator; answers the simulator never gives (missing ``objetos``,
a token echoed in an error) come from aioresponses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import pytest
from aioresponses import aioresponses
from pydantic import SecretStr
from yarl import URL

from channels.base import AuthError, TransientError
from channels.correios import (
    CorreiosChannel,
    check_digit,
    classify_event,
    code_problem,
    split_event,
)
from channels.http import error_message_from_body
from channels.models import ChannelContext, TrackingState, TrackingStatus
from channels.registry import connector_class
from channels.simulators.correios import NOT_FOUND, CorreiosSimulator, make_code
from daemon.clock import FakeClock
from tests.channels.channel_support import MOCK, ClientPool, make_context

USER = "usuario-SECRET-4242"
ACCESS = "acesso-SECRET-9876"
CARD = "0067599079"
BASIC = base64.b64encode(f"{USER}:{ACCESS}".encode()).decode()
BRT = timezone(timedelta(hours=-3))
TOKEN_PATH = "/token/v1/autentica/cartaopostagem"
RASTRO = "/srorastro/v1/objetos"
RASTRO_ROUTE = f"GET {RASTRO}"
TOKEN_ROUTE = f"POST {TOKEN_PATH}"


def correios_context(base_url: str, **options: Any) -> ChannelContext:
    return make_context(
        base_url,
        name="correios",
        kind="correios",
        secrets={"client_id": SecretStr(USER), "client_secret": SecretStr(ACCESS)},
        options={"cartao_postagem": CARD, **options},
        max_retries=2,
    )


@pytest.fixture
async def pool() -> AsyncIterator[ClientPool]:
    clients = ClientPool()
    yield clients
    await clients.aclose()


@pytest.fixture
async def sim() -> AsyncIterator[CorreiosSimulator]:
    async with CorreiosSimulator(USER, ACCESS, cartao_postagem=CARD, timeout_fault_seconds=5) as simulator:
        yield simulator


def connect(
    pool: ClientPool, base_url: str, clock: FakeClock | None = None, **options: Any
) -> CorreiosChannel:
    context = correios_context(base_url, **options)
    http = pool(context, clock) if clock is not None else pool(context)
    return CorreiosChannel(context, http)


def by_code(results: list[TrackingStatus]) -> dict[str, TrackingStatus]:
    by = {r.tracking_code: r for r in results}
    assert len(by) == len(results), "one result per code"
    return by


def fresh_codes(count: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    codes: dict[str, None] = {}
    while len(codes) < count:
        codes[make_code(rng)] = None
    return list(codes)


# --- codes and classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "digit"),
    [("12345678", 5), ("00000000", 5), ("00229651", 5), ("00031676", 0), ("00126704", 0)],
)
def test_check_digit_follows_the_s10_rule(serial: str, digit: int) -> None:
    # Weighted sums 204 (r 6 -> 5), 0 and 121 (r 0 -> 5), 144 (r 1 -> 0).
    assert check_digit(serial) == digit


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("QP123456785BR", True),
        ("QP002296515BR", True),
        ("QP000316760BR", True),
        ("LB123456785CN", True),
        ("QP123456784BR", False),  # wrong check digit
        ("QP12345678BR", False),  # one digit short
        ("Q1123456785BR", False),
        ("QP123456785B", False),
        ("", False),
    ],
)
def test_code_problem(code: str, ok: bool) -> None:
    assert (code_problem(code) is None) is ok


BAIXA_TABLE: list[tuple[int, TrackingState]] = [
    (0, TrackingState.DELIVERED),
    (1, TrackingState.DELIVERED),
    (23, TrackingState.RETURNED),
    (2, TrackingState.AWAITING_PICKUP),
    (54, TrackingState.AWAITING_PICKUP),
    *((t, TrackingState.DELIVERY_ATTEMPT) for t in (20, 25, 34, 35, 46, 47)),
    *((t, TrackingState.EXCEPTION) for t in (9, 12, 28, 37, 43, 50, 51, 52, 80)),
    *((t, TrackingState.RETURNING) for t in (3, 4, 5, 6, 8, 10, 11, 19, 21)),
    *((t, TrackingState.RETURNING) for t in (26, 33, 36, 40, 42, 48, 49, 56)),
    *((t, TrackingState.IN_TRANSIT) for t in (7, 22, 24, 27, 53, 55, 99)),
]


@pytest.mark.parametrize("family", ["BDE", "BDI", "BDR"])
@pytest.mark.parametrize(("tipo", "state"), BAIXA_TABLE)
def test_baixa_families_classify_on_the_pair(family: str, tipo: int, state: TrackingState) -> None:
    for raw in (tipo, f"{tipo:02d}", str(tipo), f"{family}-{tipo:02d}"):
        assert classify_event(family, raw) is state, (family, raw)
    assert classify_event(f"{family}-{tipo:02d}", None) is state


@pytest.mark.parametrize(
    ("codigo", "tipo", "state"),
    [
        *(("LDI", t, TrackingState.AWAITING_PICKUP) for t in ("00", "01", "02", "03", "14")),
        ("LDI", "04", TrackingState.IN_TRANSIT),
        ("OEC", "00", TrackingState.AWAITING_PICKUP),
        ("OEC", "01", TrackingState.OUT_FOR_DELIVERY),
        ("OEC", 1, TrackingState.OUT_FOR_DELIVERY),
        ("OEC", "09", TrackingState.RETURNING),
        ("OEC", "02", TrackingState.IN_TRANSIT),
        ("FC", "01", TrackingState.RETURNING),
        ("FC", "02", TrackingState.IN_TRANSIT),
        ("PO", "01", TrackingState.POSTED),
        ("PO", "09", TrackingState.POSTED),
        ("po", "1", TrackingState.POSTED),
        ("RO", "01", TrackingState.IN_TRANSIT),
        ("DO", "01", TrackingState.IN_TRANSIT),
        ("CMT", "01", TrackingState.IN_TRANSIT),
        (None, "BDE-01", TrackingState.DELIVERED),
        ("", "BDE-1", TrackingState.DELIVERED),
        (None, "OEC-09", TrackingState.RETURNING),
    ],
)
def test_other_families(codigo: Any, tipo: Any, state: TrackingState) -> None:
    assert classify_event(codigo, tipo) is state


@pytest.mark.parametrize(
    ("codigo", "tipo"),
    [
        ("BDE", None),
        ("BDE", "x1"),
        ("BDE", "OEC-01"),
        (None, "01"),
        ("BDE", True),
        ("BDE", 1.0),
        ("BDE", "-1"),
    ],
)
def test_unreadable_pairs_raise(codigo: Any, tipo: Any) -> None:
    with pytest.raises(ValueError, match="event"):
        split_event(codigo, tipo)


def test_the_same_tipo_means_different_things_per_family() -> None:
    assert classify_event("BDE", "09") is TrackingState.EXCEPTION
    assert classify_event("OEC", "09") is TrackingState.RETURNING
    assert classify_event("PO", "09") is TrackingState.POSTED


# --- construction --------------------------------------------------------------------------------------


async def test_registry_and_options(pool: ClientPool) -> None:
    assert connector_class("correios") is CorreiosChannel
    channel = connect(pool, MOCK, batch_size=500)
    assert channel.batch_size == 50
    assert channel.http.auth is channel.token
    with pytest.raises(ValueError, match="cartao_postagem"):
        CorreiosChannel(ctx := correios_context(MOCK, cartao_postagem=""), pool(ctx))
    for bad in ({"token_endpoint": "contrato"}, {"resultado": "P"}, {"codes_param_style": "semicolon"}):
        with pytest.raises(ValueError):
            CorreiosChannel(ctx := correios_context(MOCK, **bad), pool(ctx))


def test_error_bodies_of_the_gateway() -> None:
    assert (
        error_message_from_body(json.dumps({"msgs": ["Token expirado", "x"], "msg": "y"})) == "Token expirado"
    )
    assert (
        error_message_from_body(json.dumps({"mensagem": "Credenciais inválidas"})) == "Credenciais inválidas"
    )
    assert error_message_from_body(json.dumps({"msg": "só msg"})) == "só msg"
    assert error_message_from_body(json.dumps({"error_message": "LI"})) == "LI"


# --- against the simulator -------------------------------------------------------------------------------


async def test_invalid_codes_never_reach_the_api(pool: ClientPool, sim: CorreiosSimulator) -> None:
    channel = connect(pool, sim.url)
    results = by_code(await channel.fetch_tracking(["QP123456784BR", "XX", "qp1234BR", "XX"]))
    assert set(results) == {"QP123456784BR", "XX", "qp1234BR"}
    assert {r.state for r in results.values()} == {TrackingState.INVALID_CODE}
    assert "check digit" in (results["QP123456784BR"].detail or "")
    assert sim.requests == 0  # not even a token


async def test_a_full_delivery_story_end_to_end(pool: ClientPool, sim: CorreiosSimulator) -> None:
    channel = connect(pool, sim.url)
    code = sim.post_object()
    expected: list[tuple[TrackingState, str, str]] = [
        (TrackingState.POSTED, "PO-01", "CURITIBA/PR"),
        (TrackingState.IN_TRANSIT, "RO-01", "CAJAMAR/SP"),
        (TrackingState.OUT_FOR_DELIVERY, "OEC-01", "SAO PAULO/SP"),
        (TrackingState.DELIVERED, "BDE-01", "SAO PAULO/SP"),
    ]
    for step, (state, event_code, place) in enumerate(expected):
        if step:
            sim.advance(code)
        [status] = await channel.fetch_tracking([code])
        assert (status.tracking_code, status.state) == (code, state)
        assert status.event is not None
        assert (status.event.code, status.event.place) == (event_code, place)
        assert status.event.at is not None and status.event.at.utcoffset() == timedelta(hours=-3)
        assert abs(status.event.at - datetime.now(UTC)) < timedelta(minutes=1)
        assert status.expected_delivery is not None and status.expected_delivery > status.event.at
    assert status.state.final and status.event is not None
    assert status.event.description == "Objeto entregue ao destinatário"
    assert sim.tokens_issued == 1
    assert all(parse_qs(q)["resultado"] == ["U"] for q in sim.queries)


@pytest.mark.parametrize(
    ("story", "states"),
    [
        (
            "pickup",
            [TrackingState.DELIVERY_ATTEMPT, TrackingState.AWAITING_PICKUP],
        ),
        (
            "returned",
            [
                TrackingState.DELIVERY_ATTEMPT,
                TrackingState.IN_TRANSIT,
                TrackingState.RETURNING,
                TrackingState.RETURNED,
            ],
        ),
    ],
)
async def test_the_other_stories(
    pool: ClientPool, sim: CorreiosSimulator, story: str, states: list[TrackingState]
) -> None:
    channel = connect(pool, sim.url)
    code = sim.post_object(story=story)
    for _ in range(2):
        sim.advance(code)  # RO-01, OEC-01
    seen = []
    for _ in states:
        sim.advance(code)
        [status] = await channel.fetch_tracking([code])
        seen.append(status.state)
    assert seen == states


async def test_returned_text_with_bde_23_is_returned_not_delivered(
    pool: ClientPool, sim: CorreiosSimulator
) -> None:
    channel = connect(pool, sim.url, resultado="T")
    code = sim.post_object(story=None)
    sim.add_event(code, "BDE", 1, "Objeto entregue ao destinatário", cidade="CURITIBA", uf="PR")
    sim.add_event(code, "BDE", "23", "Objeto entregue ao remetente")
    [status] = await channel.fetch_tracking([code])
    assert status.state is TrackingState.RETURNED
    assert status.event is not None and status.event.code == "BDE-23"
    assert status.event.description == "Objeto entregue ao remetente"


async def test_numeric_tipo_from_the_api(pool: ClientPool) -> None:
    async with CorreiosSimulator(USER, ACCESS, tipo_as_int=True) as sim:
        channel = connect(pool, sim.url)
        code = sim.post_object(story=None)
        sim.add_event(code, "OEC", 9)
        [status] = await channel.fetch_tracking([code])
        assert (status.state, status.event and status.event.code) == (TrackingState.RETURNING, "OEC-09")


async def test_unknown_code_is_not_found_with_the_carriers_message(
    pool: ClientPool, sim: CorreiosSimulator
) -> None:
    channel = connect(pool, sim.url)
    known = sim.post_object()
    unknown = fresh_codes(1, seed=99)[0]
    results = by_code(await channel.fetch_tracking([known, unknown, unknown.lower()]))
    assert results[unknown].state is TrackingState.NOT_FOUND
    assert results[unknown].detail == NOT_FOUND
    assert results[unknown].event is None
    assert results[unknown.lower()].state is TrackingState.NOT_FOUND  # reported under the caller's spelling
    assert results[known].state is TrackingState.POSTED
    assert sim.codes_requested == [[known, unknown]]


async def test_one_request_per_fifty_codes_with_the_repeated_parameter(
    pool: ClientPool, sim: CorreiosSimulator
) -> None:
    channel = connect(pool, sim.url)
    codes = fresh_codes(120)
    posted = sim.post_object(codes[77])
    results = by_code(await channel.fetch_tracking(codes + codes[:10]))
    assert set(results) == set(codes)
    assert results[posted].state is TrackingState.POSTED
    assert sum(r.state is TrackingState.NOT_FOUND for r in results.values()) == 119
    assert sim.by_route[RASTRO_ROUTE] == 3
    assert [len(batch) for batch in sim.codes_requested] == [50, 50, 20]
    first = parse_qs(sim.queries[0])
    assert first["codigosObjetos"] == codes[:50]  # repeated, one code each
    assert sim.by_route[TOKEN_ROUTE] == 1


async def test_comma_style_and_small_batches_with_concurrency(
    pool: ClientPool, sim: CorreiosSimulator
) -> None:
    channel = connect(pool, sim.url, codes_param_style="comma", batch_size=7, concurrency=3)
    codes = fresh_codes(30)
    results = await channel.fetch_tracking(codes)
    assert len(results) == 30
    assert sorted(len(b) for b in sim.codes_requested) == [2, 7, 7, 7, 7]
    assert all(len(parse_qs(q)["codigosObjetos"]) == 1 for q in sim.queries)
    assert sim.tokens_issued == 1  # five batches in flight shared one token request


async def test_token_is_fetched_once_and_reused(pool: ClientPool, sim: CorreiosSimulator) -> None:
    channel = connect(pool, sim.url)
    code = sim.post_object()
    await asyncio.gather(*(channel.fetch_tracking([code]) for _ in range(5)))
    await channel.fetch_tracking([code])
    assert sim.by_route[TOKEN_ROUTE] == 1
    assert sim.by_route[RASTRO_ROUTE] == 6


async def test_runtime_credentials_reach_the_daemons_redaction(
    pool: ClientPool, sim: CorreiosSimulator
) -> None:
    """The Basic header and every token obtained go to ``on_secret`` (the daemon passes its
    process-wide registry), so no log line anywhere can carry them, not only this client's errors."""
    learned: list[str] = []
    context = correios_context(sim.url)
    channel = CorreiosChannel(context, pool(context, on_secret=learned.append))
    await channel.fetch_tracking([sim.post_object()])
    sim.expire_tokens()
    await channel.fetch_tracking([sim.post_object()])
    assert sim.tokens_issued == 2
    tokens = [t for t in learned if t != BASIC]
    assert BASIC in learned
    assert len(set(tokens)) == 2 and all(t.strip() == t and t for t in tokens)


async def test_plain_token_endpoint(pool: ClientPool, sim: CorreiosSimulator) -> None:
    channel = connect(pool, sim.url, token_endpoint="plain", cartao_postagem=None)
    await channel.fetch_tracking([sim.post_object()])
    assert sim.by_route == {"POST /token/v1/autentica": 1, RASTRO_ROUTE: 1}


async def test_token_is_renewed_before_it_expires(pool: ClientPool) -> None:
    clock = FakeClock(datetime(2026, 3, 15, 11, 0, tzinfo=UTC))
    async with CorreiosSimulator(USER, ACCESS, clock=clock) as sim:
        channel = connect(pool, sim.url, clock)
        code = sim.post_object()
        await channel.fetch_tracking([code])
        clock.advance(23 * 3600 + 54 * 60)  # 6 minutes left: still outside the 5-minute margin
        await channel.fetch_tracking([code])
        assert sim.tokens_issued == 1
        clock.advance(120)  # 4 minutes left: renew before using it
        await channel.fetch_tracking([code])
        assert sim.tokens_issued == 2
        assert sim.by_route[RASTRO_ROUTE] == 3  # no request was spent on a 401


async def test_token_margin_option(pool: ClientPool) -> None:
    clock = FakeClock(datetime(2026, 3, 15, 11, 0, tzinfo=UTC))
    async with CorreiosSimulator(USER, ACCESS, clock=clock) as sim:
        channel = connect(pool, sim.url, clock, token_margin_seconds=3600)
        await channel.fetch_tracking([sim.post_object()])
        clock.advance(23 * 3600 + 1)
        await channel.fetch_tracking(fresh_codes(1))
        assert sim.tokens_issued == 2


async def test_401_re_authenticates_once_and_retries(pool: ClientPool, sim: CorreiosSimulator) -> None:
    channel = connect(pool, sim.url)
    code = sim.post_object()
    await channel.fetch_tracking([code])
    sim.expire_tokens()
    [status] = await channel.fetch_tracking([code])
    assert status.state is TrackingState.POSTED
    assert sim.tokens_issued == 2
    assert sim.by_route[RASTRO_ROUTE] == 3  # ok, 401, ok


async def test_concurrent_401s_renew_the_token_once(pool: ClientPool, sim: CorreiosSimulator) -> None:
    channel = connect(pool, sim.url)
    code = sim.post_object()
    await channel.fetch_tracking([code])
    sim.expire_tokens()
    results = await asyncio.gather(*(channel.fetch_tracking([code]) for _ in range(6)))
    assert all(r[0].state is TrackingState.POSTED for r in results)
    assert sim.tokens_issued == 2


async def test_a_second_401_is_an_auth_error(pool: ClientPool, sim: CorreiosSimulator) -> None:
    channel = connect(pool, sim.url)
    sim.inject_fault("401", 2, paths=RASTRO)
    with pytest.raises(AuthError, match="HTTP 401"):
        await channel.fetch_tracking([sim.post_object()])
    assert sim.tokens_issued == 2


async def test_wrong_credentials_are_an_auth_error_without_secrets(pool: ClientPool) -> None:
    async with CorreiosSimulator("someone-else", "other-code") as sim:
        channel = connect(pool, sim.url)
        with pytest.raises(AuthError) as caught:
            await channel.fetch_tracking(fresh_codes(2))
    message = str(caught.value)
    assert "HTTP 401" in message and TOKEN_PATH in message
    for secret in (USER, ACCESS, BASIC, CARD):
        assert secret not in message


async def test_secrets_and_the_token_are_redacted_from_errors(pool: ClientPool) -> None:
    token = "tok-SECRET-" + "x" * 40
    channel = connect(pool, MOCK)
    with aioresponses() as mocked:
        mocked.post(
            MOCK + TOKEN_PATH,
            status=201,
            payload={"token": token, "expiraEm": "2099-01-01T00:00:00"},
            repeat=True,
        )
        echo = {"msgs": [f"Token {token} inválido para {USER}"]}
        mocked.get(re.compile(re.escape(MOCK + RASTRO) + r"\?.*"), status=401, payload=echo, repeat=True)
        with pytest.raises(AuthError) as caught:
            await channel.fetch_tracking(["QP123456785BR"])
        token_calls = mocked.requests[("POST", URL(MOCK + TOKEN_PATH))]
        api_calls = [c for (m, u), calls in mocked.requests.items() if m == "GET" for c in calls]
    message = str(caught.value)
    assert "inválido para" in message
    assert token not in message and USER not in message and "***" in message
    assert len(token_calls) == 2  # the first token, then one renewal after the 401
    assert token_calls[0].kwargs["headers"]["Authorization"] == f"Basic {BASIC}"
    assert json.loads(token_calls[0].kwargs["data"]) == {"numero": CARD}
    assert api_calls[0].kwargs["headers"]["Authorization"] == f"Bearer {token}"


async def test_malformed_json_is_transient(pool: ClientPool, sim: CorreiosSimulator) -> None:
    channel = connect(pool, sim.url)
    sim.inject_fault("malformed_json", 3, paths=RASTRO)
    with pytest.raises(TransientError, match="malformed JSON"):
        await channel.fetch_tracking([sim.post_object()])


async def test_a_5xx_burst_recovers(pool: ClientPool, sim: CorreiosSimulator) -> None:
    channel = connect(pool, sim.url)
    code = sim.post_object()
    sim.inject_fault("5xx", 2, paths="/token")
    sim.inject_fault("5xx", 2, paths=RASTRO)
    [status] = await channel.fetch_tracking([code])
    assert status.state is TrackingState.POSTED
    assert sim.faults_served == 4


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"versao": "1.0.0"}, "no 'objetos' list"),
        ({"objetos": {"codObjeto": "QP123456785BR"}}, "no 'objetos' list"),
        ({"objetos": [{"eventos": []}]}, r"objetos\[0\] has no codObjeto"),
        ([1, 2], "no 'objetos' list"),
    ],
)
async def test_malformed_answers_are_transient(pool: ClientPool, payload: Any, message: str) -> None:
    channel = connect(pool, MOCK)
    with aioresponses() as mocked:
        mocked.post(
            MOCK + TOKEN_PATH, status=201, payload={"token": "t-123456", "expiraEm": "2099-01-01T00:00:00"}
        )
        mocked.get(re.compile(re.escape(MOCK + RASTRO) + r"\?.*"), payload=payload)
        with pytest.raises(TransientError, match=message):
            await channel.fetch_tracking(["QP123456785BR"])


async def test_odd_objects_in_an_answer(pool: ClientPool) -> None:
    channel = connect(pool, MOCK)
    asked = ["QP123456785BR", "QP002296515BR", "QP000316760BR", "LB123456785CN"]
    answer = {
        "objetos": [
            {"codObjeto": "ZZ123456785BR", "eventos": [{"codigo": "BDE", "tipo": "01"}]},  # not asked
            {
                "codObjeto": "qp123456785br",
                "eventos": [{"codigo": "BDI", "tipo": 1, "dtHrCriado": "nonsense"}],
            },
            {"codObjeto": "QP002296515BR", "eventos": []},
            {"codObjeto": "QP000316760BR", "eventos": [{"codigo": "BDE", "descricao": "sem tipo"}]},
        ]
    }
    with aioresponses() as mocked:
        mocked.post(MOCK + TOKEN_PATH, status=201, payload={"token": "t-123456"})
        mocked.get(re.compile(re.escape(MOCK + RASTRO) + r"\?.*"), payload=answer)
        results = by_code(await channel.fetch_tracking(asked))
    assert set(results) == set(asked)
    delivered = results["QP123456785BR"]
    assert delivered.state is TrackingState.DELIVERED
    assert delivered.event is not None and delivered.event.at is None and delivered.event.place is None
    assert results["QP002296515BR"].state is TrackingState.NOT_FOUND
    assert results["QP000316760BR"].state is TrackingState.IN_TRANSIT  # unreadable: keep tracking
    assert "tipo" in (results["QP000316760BR"].detail or "")
    assert results["LB123456785CN"].state is TrackingState.NOT_FOUND
    assert results["LB123456785CN"].detail == "not in the carrier's answer"


async def test_a_token_answer_without_token_is_transient(pool: ClientPool) -> None:
    channel = connect(pool, MOCK)
    with aioresponses() as mocked:
        mocked.post(MOCK + TOKEN_PATH, status=201, payload={"expiraEm": "2099-01-01T00:00:00"})
        with pytest.raises(TransientError, match="no 'token'"):
            await channel.fetch_tracking(["QP123456785BR"])
