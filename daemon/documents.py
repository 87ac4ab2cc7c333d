"""Brazilian documents: CPF, CNPJ (including the alphanumeric CNPJ) and NF-e access keys.

Customers are keyed by their document, so a channel sending "123.456.789-09" and another sending
"12345678909" must meet in one row, and a mistyped number must be caught at import instead of
creating a second customer. Check digits are mod 11, as published by the Receita Federal and in the
NF-e manual.

Since July 2026 new CNPJs may be alphanumeric (12 characters 0-9/A-Z, then two numeric check digits;
each character counts as its ASCII code minus 48). Those are kept as upper-case text; everything else
normalises to digits only.
"""

from __future__ import annotations

import re
from typing import Literal

CPF_LENGTH = 11
CNPJ_LENGTH = 14
NFE_KEY_LENGTH = 44

_CPF_WEIGHTS_1 = tuple(range(10, 1, -1))
_CPF_WEIGHTS_2 = tuple(range(11, 1, -1))
_CNPJ_WEIGHTS_1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_WEIGHTS_2 = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_SEPARATORS = re.compile(r"[\s./\-]")
_ALNUM_CNPJ = re.compile(r"[0-9A-Z]{12}[0-9]{2}")

DocumentKind = Literal["cpf", "cnpj"]


class InvalidDocument(ValueError):
    """A CPF/CNPJ that cannot be right; the message says which and why."""


def normalize_document(text: str) -> str:
    """Digits only (``"123.456.789-09"`` → ``"12345678909"``); an alphanumeric CNPJ keeps its letters."""
    compact = _SEPARATORS.sub("", text).upper()
    if _ALNUM_CNPJ.fullmatch(compact) and not compact.isdigit():
        return compact
    return "".join(ch for ch in text if ch.isascii() and ch.isdigit())


def _value(ch: str) -> int:
    return ord(ch) - 48


def _mod11(chars: str, weights: tuple[int, ...]) -> int:
    remainder = sum(_value(c) * w for c, w in zip(chars, weights, strict=True)) % 11
    return 0 if remainder < 2 else 11 - remainder


def cpf_check_digits(first9: str) -> str:
    first = _mod11(first9, _CPF_WEIGHTS_1)
    second = _mod11(first9 + str(first), _CPF_WEIGHTS_2)
    return f"{first}{second}"


def cnpj_check_digits(first12: str) -> str:
    first = _mod11(first12, _CNPJ_WEIGHTS_1)
    second = _mod11(first12 + str(first), _CNPJ_WEIGHTS_2)
    return f"{first}{second}"


def is_valid_cpf(text: str) -> bool:
    return _cpf_problem(normalize_document(text)) is None


def is_valid_cnpj(text: str) -> bool:
    return _cnpj_problem(normalize_document(text)) is None


def _cpf_problem(digits: str) -> str | None:
    if len(digits) != CPF_LENGTH or not digits.isdigit():
        return f"expected {CPF_LENGTH} digits, got {len(digits)}"
    if len(set(digits)) == 1:
        return "all digits are the same"
    if cpf_check_digits(digits[:9]) != digits[9:]:
        return "wrong check digits"
    return None


def _cnpj_problem(chars: str) -> str | None:
    if len(chars) != CNPJ_LENGTH or not _ALNUM_CNPJ.fullmatch(chars):
        return f"expected {CNPJ_LENGTH} characters, got {len(chars)}"
    if len(set(chars)) == 1:
        return "all digits are the same"
    if cnpj_check_digits(chars[:12]) != chars[12:]:
        return "wrong check digits"
    return None


def document_kind(text: str) -> DocumentKind | None:
    """``"cpf"`` or ``"cnpj"`` by length, or None when it is neither."""
    size = len(normalize_document(text))
    return "cpf" if size == CPF_LENGTH else "cnpj" if size == CNPJ_LENGTH else None


def format_document(text: str) -> str:
    """``123.456.789-09`` / ``12.345.678/0001-95``; anything else is returned unchanged."""
    doc = normalize_document(text)
    if len(doc) == CPF_LENGTH:
        return f"{doc[:3]}.{doc[3:6]}.{doc[6:9]}-{doc[9:]}"
    if len(doc) == CNPJ_LENGTH:
        return f"{doc[:2]}.{doc[2:5]}.{doc[5:8]}/{doc[8:12]}-{doc[12:]}"
    return text


def validate_document(text: str) -> str:
    """The normalised CPF or CNPJ, or :class:`InvalidDocument` saying what is wrong with it."""
    doc = normalize_document(text)
    shown = text.strip()
    if len(doc) == CPF_LENGTH:
        problem = _cpf_problem(doc)
        if problem:
            raise InvalidDocument(f"CPF {format_document(doc)}: {problem}")
        return doc
    if len(doc) == CNPJ_LENGTH:
        problem = _cnpj_problem(doc)
        if problem:
            raise InvalidDocument(f"CNPJ {format_document(doc)}: {problem}")
        return doc
    if not doc:
        raise InvalidDocument(f"document {shown!r}: no digits" if shown else "document is empty")
    raise InvalidDocument(f"document {shown!r}: expected 11 digits (CPF) or 14 (CNPJ), got {len(doc)}")


# --- NF-e access key --------------------------------------------------------------------------------


def nfe_key_check_digit(first43: str) -> int:
    """The NF-e key's last digit: weights 2..9 from the right, 11 - (sum mod 11), 0 when that is >= 10."""
    if len(first43) != NFE_KEY_LENGTH - 1 or not first43.isdigit():
        raise ValueError(f"expected {NFE_KEY_LENGTH - 1} digits, got {len(first43)} characters")
    total = sum(int(d) * (2 + i % 8) for i, d in enumerate(reversed(first43)))
    digit = 11 - total % 11
    return 0 if digit >= 10 else digit


def normalize_nfe_key(key: str) -> str:
    """Keys are printed in groups of four ("3526 1112 ..."); separators are dropped."""
    return _SEPARATORS.sub("", key)


def is_valid_nfe_key(key: str) -> bool:
    digits = normalize_nfe_key(key)
    if len(digits) != NFE_KEY_LENGTH or not digits.isascii() or not digits.isdigit():
        return False
    return nfe_key_check_digit(digits[:43]) == int(digits[43])


def make_nfe_key(
    number: int,
    *,
    cnpj: str | None = None,
    uf: int = 35,
    year: int = 26,
    month: int = 11,
    series: int = 1,
    model: int = 55,
    emission: int = 1,
) -> str:
    """A valid 44-digit key for invoice ``number`` (simulators and tests)."""
    issuer = normalize_document(cnpj) if cnpj else make_cnpj(1)
    code = (number * 7919 + 13) % 100_000_000
    first43 = (
        f"{uf:02d}{year % 100:02d}{month:02d}{issuer}{model:02d}{series:03d}{number:09d}{emission}{code:08d}"
    )
    return first43 + str(nfe_key_check_digit(first43))


# --- generators for simulators and tests ---------------------------------------------------------


def make_cpf(n: int) -> str:
    """A valid CPF (digits only) that depends only on ``n``; different ``n`` give different CPFs."""
    base = f"{(n * 7_919_201 + 100_000_019) % 1_000_000_000:09d}"
    if len(set(base)) == 1:
        base = base[:-1] + str((int(base[-1]) + 1) % 10)
    return base + cpf_check_digits(base)


def make_cnpj(n: int, branch: int = 1) -> str:
    """A valid numeric CNPJ (digits only) for company ``n``, head office by default."""
    root = f"{(n * 9_176_407 + 10_000_019) % 100_000_000:08d}"
    base = f"{root}{branch:04d}"
    return base + cnpj_check_digits(base)
