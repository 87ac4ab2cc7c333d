"""CPF/CNPJ and NF-e access-key checks, preferring daemon.documents when it is installed.

The shared ``daemon.documents`` module is the source of truth; the small fallbacks here keep the
store usable (and testable) on its own. Both raise ``ValueError`` subclasses for invalid input.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import cast

_CNPJ_W1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_W2 = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_SEPARATORS = re.compile(r"[\s./-]")


class InvalidDocumentFallback(ValueError):
    pass


def _fallback_validate_document(text: str) -> str:
    """CPF (11 digits) or CNPJ (14, alphanumeric allowed since 2026) with both check digits."""
    value = _SEPARATORS.sub("", text).upper()
    if len(value) == 11 and value.isdigit():
        digits = [int(c) for c in value]
        if len(set(digits)) == 1:
            raise InvalidDocumentFallback("CPF with all digits equal")
        for size in (9, 10):
            total = sum(d * w for d, w in zip(digits[:size], range(size + 1, 1, -1), strict=True))
            check = (total * 10) % 11 % 10
            if check != digits[size]:
                raise InvalidDocumentFallback("CPF check digit does not match")
        return value
    if len(value) == 14 and re.fullmatch(r"[0-9A-Z]{12}[0-9]{2}", value):
        values = [ord(c) - 48 for c in value]
        if len(set(values)) == 1:
            raise InvalidDocumentFallback("CNPJ with all characters equal")
        for size, weights in ((12, _CNPJ_W1), (13, _CNPJ_W2)):
            remainder = sum(v * w for v, w in zip(values[:size], weights, strict=True)) % 11
            check = 0 if remainder < 2 else 11 - remainder
            if check != values[size]:
                raise InvalidDocumentFallback("CNPJ check digit does not match")
        return value
    raise InvalidDocumentFallback(
        f"expected a CPF (11 digits) or a CNPJ (14 characters), got {len(value)} characters"
    )


def _fallback_is_valid_nfe_key(key: str) -> bool:
    """44 digits whose last is the mod-11 check digit of the first 43 (weights 2..9 from the right)."""
    if len(key) != 44 or not key.isdigit():
        return False
    total = 0
    weight = 2
    for char in reversed(key[:43]):
        total += int(char) * weight
        weight = 2 if weight == 9 else weight + 1
    check = 11 - total % 11
    if check >= 10:
        check = 0
    return check == int(key[43])


def _shared(name: str) -> Callable[..., object] | None:
    try:
        module = importlib.import_module("daemon.documents")
    except ImportError:
        return None
    found = getattr(module, name, None)
    return found if callable(found) else None


def validate_document(text: str) -> str:
    """Normalised document; raises ValueError (InvalidDocument) naming what is wrong."""
    shared = _shared("validate_document")
    if shared is not None:
        return str(shared(text))
    return _fallback_validate_document(text)


def is_valid_nfe_key(key: str) -> bool:
    shared = _shared("is_valid_nfe_key")
    if shared is not None:
        return bool(cast(Callable[[str], bool], shared)(key))
    return _fallback_is_valid_nfe_key(key)
