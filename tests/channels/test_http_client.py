"""HttpClient against the loopback simulator (real sockets) and aioresponses (odd bodies)."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aioresponses import aioresponses
from pydantic import SecretStr

from channels.base import AuthError, ChannelError, PermanentError, RateLimited, TransientError
from channels.http import (
    RequestEvent,
    error_message_from_body,
    parse_retry_after,
    redact,
)
from channels.models import Priority
from channels.simulators.lojaintegrada import LojaIntegradaSimulator
from daemon.clock import FakeClock
from tests.channels.channel_support import AUTH_OK, MOCK, ClientPool, make_context, running_sim, wait_until


@pytest.fixture
async def sim() -> AsyncIterator[LojaIntegradaSimulator]:
    async with running_sim() as simulator:
        yield simulator


@pytest.fixture(params=["builtin", "aiohttp"])
async def make_client(request: pytest.FixtureRequest) -> AsyncIterator[ClientPool]:
    """Clients on one shared engine, each test once per engine: the manners must not depend on it."""
    pool = ClientPool(request.param)
    yield pool
    await pool.aclose()


@pytest.fixture
async def mock_client() -> AsyncIterator[ClientPool]:
    """Clients with their own aiohttp session, which aioresponses intercepts."""
    pool = ClientPool()
    yield pool
    await pool.aclose()


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """No configured secret, and no query string, in what a caller could log."""
    text = str(exc)
    for secret in secrets:
        assert secret not in text
    assert "chave_api=" not in text


async def test_get_json_through_limiter_and_hook(
    sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    events: list[RequestEvent] = []
    client = make_client(make_context(sim.url), clock=FakeClock(), on_request=events.append)
    before = client.limiter.remaining
    response = await client.request("GET", "/v1/produto", priority=Priority.PRODUCTS, headers=AUTH_OK)
    assert response.status == 200
    assert response.body["meta"]["total_count"] == 8
    assert client.limiter.remaining == before - 1
    assert [(e.method, e.path, e.status, e.outcome) for e in events] == [("GET", "/v1/produto", 200, "ok")]
    assert client.stats.requests == 1


@pytest.mark.parametrize("kind", ["5xx", "malformed_json", "wrong_content_type", "timeout", "huge_body"])
async def test_transient_faults_are_retried_then_succeed(
    kind: str, sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    client = make_client(make_context(sim.url, timeout_seconds=0.3), max_body_bytes=512 * 1024)
    sim.inject_fault(kind, count=2)
    response = await client.request("GET", "/v1/produto", priority=Priority.PRODUCTS, headers=AUTH_OK)
    assert response.status == 200 and "objects" in response.body
    assert sim.faults_served == 2
    assert client.stats.retries == 2


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("5xx", "HTTP 503"),
        ("malformed_json", "malformed JSON"),
        ("wrong_content_type", "expected JSON, got text/html"),
        ("huge_body", "exceeds 524288"),
        ("timeout", "timed out"),
    ],
)
async def test_transient_faults_give_up_after_the_bound(
    kind: str,
    expected: str,
    sim: LojaIntegradaSimulator,
    make_client: ClientPool,
) -> None:
    context = make_context(sim.url, timeout_seconds=0.3, max_retries=2)
    client = make_client(context, max_body_bytes=512 * 1024)
    sim.inject_fault(kind, count=10)
    with pytest.raises(TransientError) as caught:
        await client.request(
            "GET", "/v1/produto", priority=Priority.PRODUCTS, headers=AUTH_OK, params={"chave_api": "x"}
        )
    message = str(caught.value)
    assert message.startswith("GET /v1/produto: ")
    assert expected in message and "after 3 attempts" in message
    assert sim.faults_served == 3
    assert_clean(caught.value, "li-api-key-SECRET-1234")


async def test_connection_reset_is_transient(sim: LojaIntegradaSimulator, make_client: ClientPool) -> None:
    client = make_client(make_context(sim.url, max_retries=1))
    sim.inject_fault("reset", count=100)  # aiohttp itself retries an idempotent request once
    with pytest.raises(TransientError, match=r"GET /v1/produto: .*(Disconnected|closed the connection)"):
        await client.request("GET", "/v1/produto", priority=Priority.PRODUCTS, headers=AUTH_OK)


async def test_connection_refused_is_transient(make_client: ClientPool) -> None:
    # A port nothing listens on: bind and close, so the number is free.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = make_client(make_context(f"http://127.0.0.1:{port}", max_retries=1))
    with pytest.raises(
        TransientError, match=r"GET /v1/pedido: (ClientConnectorError|cannot connect to 127\.0\.0\.1)"
    ):
        await client.request("GET", "/v1/pedido", priority=Priority.ORDERS)


async def test_backoff_sleeps_on_the_injected_clock(
    sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    clock = FakeClock()
    context = make_context(sim.url, options={"backoff_base_seconds": 5, "backoff_max_seconds": 60})
    client = make_client(context, clock=clock, rng=random.Random(3))
    sim.inject_fault("5xx", count=1)
    task = asyncio.create_task(
        client.request("GET", "/v1/produto", priority=Priority.ORDERS, headers=AUTH_OK)
    )
    await wait_until(lambda: clock.sleepers == 1 and sim.faults_served == 1)
    assert not task.done()
    clock.advance(5.0)  # full jitter on attempt 0 is at most base * 2**0
    assert (await asyncio.wait_for(task, 2)).status == 200


def test_backoff_is_full_jitter_and_capped(make_client: ClientPool) -> None:
    context = make_context(MOCK, options={"backoff_base_seconds": 1, "backoff_max_seconds": 8})
    client = make_client(context, rng=random.Random(1))
    for attempt in range(8):
        ceiling = min(8, 2**attempt)
        samples = [client.backoff(attempt) for _ in range(50)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling / 2  # spread over the range, not a fixed delay


async def test_429_retry_after_blocks_the_limiter(
    sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    clock = FakeClock()
    client = make_client(make_context(sim.url), clock=clock)
    sim.inject_fault("429", count=1, retry_after=7)
    task = asyncio.create_task(
        client.request("GET", "/v1/produto", priority=Priority.ORDERS, headers=AUTH_OK)
    )
    await wait_until(lambda: sim.rate_limited == 1 and clock.sleepers == 1)
    assert client.limiter.remaining == 0.0
    clock.advance(6.9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.2)
    await wait_until(lambda: clock.sleepers == 1 or task.done())
    clock.advance(1.0)  # the bucket restarts empty after the block
    response = await asyncio.wait_for(task, 2)
    assert response.status == 200
    assert client.stats.rate_limited == 1


async def test_429_without_retry_after_backs_off_then_raises_rate_limited(
    sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    client = make_client(make_context(sim.url, max_retries=2))
    sim.inject_fault("429", count=5)
    with pytest.raises(RateLimited) as caught:
        await client.request("GET", "/v1/produto", priority=Priority.ORDERS, headers=AUTH_OK)
    assert caught.value.retry_after is None
    assert "GET /v1/produto: HTTP 429 after 3 attempts" in str(caught.value)
    assert "Limite de" in str(caught.value)  # the platform's message is kept


async def test_long_retry_after_raises_at_once_and_blocks_everyone(mock_client: ClientPool) -> None:
    clock = FakeClock()
    client = mock_client(make_context(MOCK), clock=clock)
    when = clock.now() + timedelta(seconds=600)
    with aioresponses() as mocked:
        mocked.get(
            f"{MOCK}/v1/x",
            status=429,
            payload={"code": 633},
            headers={"Retry-After": format_datetime(when, usegmt=True)},
        )
        with pytest.raises(RateLimited) as caught:
            await client.request("GET", "/v1/x", priority=Priority.ORDERS)
    assert caught.value.retry_after == pytest.approx(600, abs=1)
    assert client.limiter.remaining == 0.0
    clock.advance(599)
    assert client.limiter.remaining == 0.0


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("12", 0) == 12
    assert parse_retry_after(" 1.5 ", 0) == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 30) == pytest.approx(30)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 + 30) == 0
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after("nan", 0) is None


async def test_401_without_auth_provider_is_auth_error(
    sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    client = make_client(make_context(sim.url))
    with pytest.raises(AuthError, match=r"GET /v1/produto: HTTP 401"):
        await client.request("GET", "/v1/produto", priority=Priority.ORDERS)
    assert sim.requests == 1  # no retry: the same credentials cannot start working


class _Provider:
    def __init__(self, good: str, bad: str, *, refreshable: bool = True) -> None:
        self.current, self.good, self.refreshable = bad, good, refreshable
        self.refreshes = 0

    async def headers(self) -> dict[str, str]:
        return {"Authorization": self.current}

    async def refresh(self) -> None:
        self.refreshes += 1
        if not self.refreshable:
            raise AuthError("token revoked")
        self.current = self.good


async def test_401_refreshes_once_then_retries(sim: LojaIntegradaSimulator, make_client: ClientPool) -> None:
    provider = _Provider(AUTH_OK["Authorization"], "chave_api wrong aplicacao wrong")
    client = make_client(make_context(sim.url), auth=provider)
    response = await client.request("GET", "/v1/produto", priority=Priority.ORDERS)
    assert response.status == 200 and provider.refreshes == 1


async def test_401_after_a_refresh_is_auth_error(
    sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    provider = _Provider(AUTH_OK["Authorization"], "x")
    client = make_client(make_context(sim.url), auth=provider)
    sim.inject_fault("401", count=5)
    with pytest.raises(AuthError, match="credentials rejected"):
        await client.request("GET", "/v1/produto", priority=Priority.ORDERS)
    assert provider.refreshes == 1 and sim.requests == 2 and sim.faults_served == 1

    failing = _Provider("x", "y", refreshable=False)
    client2 = make_client(make_context(sim.url), auth=failing)
    with pytest.raises(AuthError, match="refresh failed: token revoked"):
        await client2.request("GET", "/v1/produto", priority=Priority.ORDERS)


async def test_404_is_permanent_with_the_platform_message(
    sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    client = make_client(make_context(sim.url))
    with pytest.raises(PermanentError) as caught:
        await client.request("GET", "/v1/produto/999999", priority=Priority.ORDERS, headers=AUTH_OK)
    assert caught.value.status == 404
    assert str(caught.value) == "GET /v1/produto/999999: HTTP 404: Produto não encontrado."
    assert sim.requests == 1


async def test_multipart_error_response_and_retry_rebuilds_the_form(
    sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    client = make_client(make_context(sim.url))
    form = {"account_key": "wrong", "sale_number": "1001"}
    sim.inject_fault("5xx", count=1, paths="/v1/integration")
    with pytest.raises(PermanentError, match="account_key inválida") as caught:
        await client.request(
            "POST", "/v1/integration/pedido/nf", priority=Priority.ORDER_UPDATES, data=form, headers=AUTH_OK
        )
    assert caught.value.status == 400 and sim.faults_served == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error_message": "SKU inválido"}, "SKU inválido"),
        (
            {
                "error_response": {
                    "general_errors": [{"message": "geral"}],
                    "validation_errors": [{"message_complete": "access_key: inválida"}],
                }
            },
            "geral; access_key: inválida",
        ),
        ("Conflito: já existe", "Conflito: já existe"),
        ({"detail": "x"}, "x"),
    ],
)
def test_error_message_shapes(body: Any, expected: str) -> None:
    import json

    assert error_message_from_body(json.dumps(body)) == expected
    assert error_message_from_body(b"<html>\n  oops\n</html>") == "<html> oops </html>"


async def test_long_error_messages_are_truncated(mock_client: ClientPool) -> None:
    client = mock_client(make_context(MOCK))
    with aioresponses() as mocked:
        mocked.put(f"{MOCK}/v1/x", status=409, body='"' + "y" * 5000 + '"')
        with pytest.raises(PermanentError) as caught:
            await client.request("PUT", "/v1/x", priority=Priority.ORDERS, json={})
    assert caught.value.status == 409
    assert 300 <= len(str(caught.value)) < 360


async def test_secrets_never_reach_an_error_message(mock_client: ClientPool) -> None:
    secret = "s3cr+t/=Key"
    context = make_context(
        MOCK, secrets={"api_key": SecretStr(secret), "app_key": SecretStr("other-secret-987")}
    )
    client = mock_client(context)
    raised: list[ChannelError] = []
    with aioresponses() as mocked:
        mocked.get(f"{MOCK}/v1/a", status=400, payload={"error_message": f"chave_api {secret} inválida"})
        mocked.get(f"{MOCK}/v1/b", status=401, body=f"bad key other-secret-987 / {secret}")
        mocked.get(f"{MOCK}/v1/c", status=500, body=f"trace: key={secret}", repeat=True)
        mocked.get(f"{MOCK}/v1/d", status=429, payload={"error_message": f"slow down {secret}"}, repeat=True)
        for path in ("/v1/a", "/v1/b", "/v1/c", "/v1/d"):
            with pytest.raises(ChannelError) as caught:
                await client.request("GET", path, priority=Priority.ORDERS)
            raised.append(caught.value)
        # Unmatched: aioresponses raises a connection error that quotes the whole URL, query included.
        with pytest.raises(TransientError) as caught_conn:
            await client.request(
                "GET", "/v1/e", priority=Priority.ORDERS, params={"chave_api": secret, "chave_aplicacao": "z"}
            )
        raised.append(caught_conn.value)
    assert [type(e) for e in raised] == [
        PermanentError,
        AuthError,
        TransientError,
        RateLimited,
        TransientError,
    ]
    for exc in raised:
        assert_clean(exc, secret, "s3cr%2Bt%2F%3DKey", "other-secret-987")
    assert "***" in str(raised[0]) and "***" in str(raised[1])


def test_redact_replaces_every_form() -> None:
    secrets = {"a": SecretStr("p@ss word"), "b": SecretStr("")}
    assert redact("x p@ss word y p%40ss%20word z p%40ss+word", secrets) == "x *** y *** z ***"
    assert redact("nothing here", ["p@ss"]) == "nothing here"


async def test_other_hosts_never_get_credentials(make_client: ClientPool) -> None:
    client = make_client(make_context(MOCK))
    with pytest.raises(ValueError, match="another host"):
        await client.request("GET", "http://127.0.0.2:9/v1/x", priority=Priority.ORDERS)


async def test_meta_next_style_absolute_and_relative_urls(
    sim: LojaIntegradaSimulator, make_client: ClientPool
) -> None:
    client = make_client(make_context(sim.url))
    first = await client.request(
        "GET", "/v1/produto", priority=Priority.ORDERS, headers=AUTH_OK, params={"limit": 3}
    )
    nxt = first.body["meta"]["next"]
    assert nxt.startswith("/api/v1/produto?")
    second = await client.request("GET", nxt, priority=Priority.ORDERS, headers=AUTH_OK)
    assert second.body["meta"]["offset"] == 3
    third = await client.request("GET", sim.url + nxt, priority=Priority.ORDERS, headers=AUTH_OK)
    assert third.body == second.body


def test_tls_verification_is_never_disabled() -> None:
    root = Path(__file__).resolve().parents[2] / "channels"
    pattern = re.compile(r"ssl\s*=\s*False|verify_ssl\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False")
    offenders = [str(p) for p in root.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


async def test_channels_sharing_the_session_never_share_cookies(make_client: ClientPool) -> None:
    """Two stores on one platform host share the daemon's session: a cookie the host sets for one
    must not ride along on the other's requests (nor come back on the first's)."""
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("sessionid", f"store-{len(seen)}")
        return response

    app = web.Application()
    app.router.add_get("/v1/ping", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        url = f"http://localhost:{port}"  # a host name: a jar takes no cookies from a bare IP
        store_a = make_client(make_context(url, name="loja_a"))  # the pool's one engine, shared
        store_b = make_client(make_context(url, name="loja_b"))
        for client in (store_a, store_b, store_a):
            response = await client.request("GET", "/v1/ping", priority=Priority.PRODUCTS)
            assert response.status == 200
        assert seen == [None, None, None]
    finally:
        await runner.cleanup()
