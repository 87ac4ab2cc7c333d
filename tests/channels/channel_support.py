"""Helpers for the channel tests (imported by them; not a conftest, so mypy sees one ``conftest``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from pydantic import SecretStr

from channels.http import HttpClient, open_transport
from channels.models import ChannelContext
from channels.ratelimit import RateLimiter
from channels.simulators.lojaintegrada import LojaIntegradaSimulator
from channels.transport import Engine, Transport
from daemon.clock import SYSTEM_CLOCK, Clock

API_KEY = "li-api-key-SECRET-1234"
APP_KEY = "li-app-key-SECRET-5678"
AUTH_OK = {"Authorization": f"chave_api {API_KEY} aplicacao {APP_KEY}"}
MOCK = "http://127.0.0.1:9"
"""Base URL for aioresponses tests: loopback, and a port nothing answers on if a mock is missing."""


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Yield to the loop (no time passes) until ``predicate`` holds; fail after ``timeout`` seconds.

    FakeClock tests need the loop to run the woken tasks before asserting; there is no event to wait
    on for "the limiter's dispatcher is parked on the clock", so this yields, bounded.
    """
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - bounded yield-to-loop, see docstring
            await asyncio.sleep(0)


def make_context(base_url: str, **overrides: Any) -> ChannelContext:
    options = {"backoff_base_seconds": 0.001, "backoff_max_seconds": 0.01, **overrides.pop("options", {})}
    fields: dict[str, Any] = {
        "name": "loja",
        "kind": "lojaintegrada",
        "base_url": base_url,
        "secrets": {"api_key": SecretStr(API_KEY), "app_key": SecretStr(APP_KEY)},
        "options": options,
        "timeout_seconds": 2.0,
        "max_retries": 3,
        "rate_limit_per_minute": 60_000.0,
        "rate_limit_burst": 1000,
    }
    fields.update(overrides)
    return ChannelContext(**fields)


class ClientPool:
    """Makes HttpClients and closes them all (no unclosed-session warnings).

    With an ``engine``, every client it makes shares one transport of that engine, as the daemon's
    channels do; without, each client opens its own aiohttp session (what aioresponses mocks).
    """

    def __init__(self, engine: Engine | None = None) -> None:
        self._made: list[HttpClient] = []
        self.engine = engine
        self.transport: Transport | None = open_transport(engine) if engine else None

    def __call__(self, context: ChannelContext, clock: Clock = SYSTEM_CLOCK, **kwargs: Any) -> HttpClient:
        limiter = kwargs.pop("limiter", None) or RateLimiter(
            context.rate_limit_per_minute, context.rate_limit_burst, clock
        )
        if self.transport is not None and "session" not in kwargs:
            kwargs.setdefault("transport", self.transport)
        client = HttpClient(context, clock=clock, limiter=limiter, **kwargs)
        self._made.append(client)
        return client

    async def aclose(self) -> None:
        for client in self._made:
            await client.aclose()
            await client.limiter.aclose()
        if self.transport is not None:
            await self.transport.aclose()


@asynccontextmanager
async def running_sim(**kwargs: Any) -> AsyncIterator[LojaIntegradaSimulator]:
    options: dict[str, Any] = {
        "orders": 12,
        "products": 8,
        "seed": 7,
        "rate_limit_per_minute": 10_000,
        "timeout_fault_seconds": 10,
        **kwargs,
    }
    simulator = LojaIntegradaSimulator(API_KEY, APP_KEY, **options)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()
