"""Brazilian platforms write naive local times; the offset they mean is a connector option."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def parse_offset(text: str, what: str) -> timezone:
    """``"-03:00"`` as a timezone; ``what`` names the setting in the error."""
    try:
        offset = datetime.fromisoformat(f"2000-01-01T00:00:00{text}").utcoffset()
    except ValueError:
        offset = None
    if offset is None:
        raise ValueError(f"{what} must look like '-03:00', got {text!r}")
    return timezone(offset)


def parse_local(value: Any, tz: timezone) -> datetime | None:
    """A platform date-time (naive: local time in ``tz``) as an aware datetime; None when absent or
    unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)
