"""The aioresponses shim in tests/conftest.py must be active exactly when it is needed."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import aiohttp
from aioresponses import aioresponses, core


def _original_build_passes_stream_writer() -> bool:
    return "stream_writer" in inspect.getsource(core.RequestMatch._build_response)


def test_shim_state_matches_the_installed_libraries(aioresponses_shim: SimpleNamespace) -> None:
    wants = "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters
    expected = wants and not _original_build_passes_stream_writer()
    assert aioresponses_shim.active is expected
    if expected:
        assert core.ClientResponse is not aiohttp.ClientResponse  # type: ignore[attr-defined]
        assert issubclass(core.ClientResponse, aiohttp.ClientResponse)  # type: ignore[attr-defined]
    else:
        assert core.ClientResponse is aiohttp.ClientResponse  # type: ignore[attr-defined]


def test_gate_is_inert_when_upstream_passes_stream_writer(aioresponses_shim: SimpleNamespace) -> None:
    def fixed_build_response(self: Any) -> None:
        kwargs: dict[str, Any] = {}
        kwargs["stream_writer"] = None  # what a fixed aioresponses would do

    class OldResponse:
        def __init__(self, method: str, url: Any, *, writer: Any = None) -> None: ...

    assert aioresponses_shim.needs_shim(aiohttp.ClientResponse, fixed_build_response) is False
    # An aiohttp that does not want the argument needs no shim either.
    assert aioresponses_shim.needs_shim(OldResponse, core.RequestMatch._build_response) is False


def test_compat_response_only_fills_a_missing_writer(aioresponses_shim: SimpleNamespace) -> None:
    seen: list[Any] = []

    class Recorder:
        def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
            seen.append(kwargs.get("stream_writer"))

    compat = aioresponses_shim.make_compat_response(Recorder)
    compat("GET", "u")
    explicit = object()
    compat("GET", "u", stream_writer=explicit)
    assert seen[0] is not None and seen[0].output_size == 0
    assert seen[1] is explicit


async def test_aioresponses_mocks_a_request() -> None:
    with aioresponses() as mocked:
        mocked.get("http://127.0.0.1:9/x", payload={"ok": True}, status=200)
        async with aiohttp.ClientSession() as session, session.get("http://127.0.0.1:9/x") as resp:
            assert resp.status == 200
            assert await resp.json() == {"ok": True}


def test_shim_is_what_makes_aioresponses_work(aioresponses_shim: SimpleNamespace) -> None:
    from yarl import URL

    match = core.RequestMatch("http://127.0.0.1:9/x")
    url = URL("http://127.0.0.1:9/x")
    response = match._build_response(url, payload={"ok": True})  # the (possibly shimmed) default class
    assert response.status == 200
    if aioresponses_shim.active:
        import pytest

        with pytest.raises(TypeError, match="stream_writer"):
            match._build_response(url, response_class=aiohttp.ClientResponse)
