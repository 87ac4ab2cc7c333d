"""Which connector serves which ``kind``; imported lazily so one broken connector can't stop the rest."""

from __future__ import annotations

import importlib

from channels.base import Channel

_CONNECTORS: dict[str, str] = {
    "correios": "channels.correios:CorreiosChannel",
    "lojaintegrada": "channels.lojaintegrada:LojaIntegradaChannel",
}


def connector_kinds() -> frozenset[str]:
    return frozenset(_CONNECTORS)


def connector_class(kind: str) -> type[Channel]:
    try:
        target = _CONNECTORS[kind]
    except KeyError:
        known = ", ".join(sorted(_CONNECTORS))
        raise ValueError(f"unknown channel kind {kind!r} (known: {known})") from None
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise TypeError(f"{target} is not a Channel")
    return cls
