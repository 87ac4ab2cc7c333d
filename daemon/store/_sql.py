"""Small shared pieces of SQL and value conversion used by the repositories."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation

from daemon import jsontext
from daemon.clock import parse_iso, utc_iso

NOW_SQL = "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')"
"""The same stamp the schema's defaults and triggers use."""

IN_JSON = "(SELECT value FROM json_each(?))"
"""A whole list bound as one JSON parameter: one statement, no chunking, no IN (?, ?, ...) churn."""

ENQUEUE_CONFLICT = f"""
ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
    state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
    next_attempt_at = {NOW_SQL}, changed_at = {NOW_SQL}"""
"""Coalescing, exactly as the triggers do it: a newer change folds into the queued row."""

CENTS = Decimal("0.01")


def json_list(values: Iterable[object]) -> str:
    return jsontext.dumps(list(values), default=None)


def money_text(value: Decimal) -> str:
    """Money as stored: plain decimal text with two places (never an exponent)."""
    return format(value.quantize(CENTS), "f")


def decimal_text(value: Decimal) -> str:
    return format(value, "f")


def parse_decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def stamp(moment: datetime | None) -> str | None:
    return None if moment is None else utc_iso(moment)


def parse_stamp(text: str | None) -> datetime | None:
    """Lenient: rows written by plain SQL may use 'YYYY-MM-DD HH:MM:SS'; garbage reads as None."""
    if not text:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None


def dumps(value: object) -> str:
    """JSON for payload/explanation columns; Decimals keep their exact text."""
    return jsontext.dumps(value, default=_json_default, sort_keys=True)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return utc_iso(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
