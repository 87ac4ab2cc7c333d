"""Shared pytest set-up. Each section is owned by the task that wrote it; add new sections below."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

# --- aioresponses compatibility shim ------------------------------------------------------------------
# aiohttp >= 3.14 made ``stream_writer`` a required argument of ``ClientResponse.__init__``;
# aioresponses 0.7.9 builds responses without it (pnuckowski/aioresponses#289). We never pin aiohttp
# down for this: when - and only when - the installed aiohttp wants the argument AND aioresponses'
# ``_build_response`` does not pass it, aioresponses gets a ClientResponse subclass that supplies a
# harmless writer. Once upstream passes ``stream_writer`` itself the shim stays out of the way.


class _NullStreamWriter:
    """Stands in for the request's writer: a mocked response has already been 'sent', 0 bytes."""

    output_size = 0
    buffer_size = 0


def _aioresponses_needs_shim(response_cls: type[Any], build_response: Callable[..., Any]) -> bool:
    if "stream_writer" not in inspect.signature(response_cls.__init__).parameters:
        return False
    try:
        source = inspect.getsource(build_response)
    except (OSError, TypeError):
        return True  # cannot tell: the subclass only fills the argument in when it is missing
    return "stream_writer" not in source


def _make_compat_response(base: type[aiohttp.ClientResponse]) -> type[aiohttp.ClientResponse]:
    class CompatClientResponse(base):  # type: ignore[valid-type, misc]
        def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", _NullStreamWriter())
            super().__init__(method, url, **kwargs)

    CompatClientResponse.__qualname__ = CompatClientResponse.__name__ = "CompatClientResponse"
    return CompatClientResponse


def _install_aioresponses_shim() -> bool:
    try:
        from aioresponses import core
    except ImportError:  # aioresponses not installed: nothing to patch
        return False
    if not _aioresponses_needs_shim(aiohttp.ClientResponse, core.RequestMatch._build_response):
        return False
    if core.ClientResponse is aiohttp.ClientResponse:  # type: ignore[attr-defined]
        core.ClientResponse = _make_compat_response(aiohttp.ClientResponse)  # type: ignore[attr-defined]
    return True


AIORESPONSES_SHIM_ACTIVE = _install_aioresponses_shim()


@pytest.fixture
def aioresponses_shim() -> SimpleNamespace:
    """The shim's gate and state, for the test that proves it is active or inert as it should be."""
    return SimpleNamespace(
        active=AIORESPONSES_SHIM_ACTIVE,
        needs_shim=_aioresponses_needs_shim,
        make_compat_response=_make_compat_response,
    )


# --- end of the aioresponses shim ---------------------------------------------------------------------
