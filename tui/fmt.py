"""How times, durations and money read for people: Brazilian formats under pt_BR, ISO-like under English.

Times arrive from the daemon in UTC; people read them in the server's local time zone (``tz``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal

from tui.i18n import PT_BR, Translator

Now = Callable[[], datetime]


def system_now() -> datetime:
    return datetime.now(UTC)


def local_tz() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    return zone if zone is not None else UTC


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Formatter:
    def __init__(self, tr: Translator, now: Now = system_now, tz: tzinfo | None = None) -> None:
        self.tr = tr
        self.now = now
        self.tz = tz if tz is not None else local_tz()
        self.brazilian = tr.locale == PT_BR

    def stamp(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        local = _aware(moment).astimezone(self.tz)
        return local.strftime("%d/%m/%Y %H:%M" if self.brazilian else "%Y-%m-%d %H:%M")

    def stamp_seconds(self, moment: datetime) -> str:
        local = _aware(moment).astimezone(self.tz)
        return local.strftime("%d/%m/%Y %H:%M:%S" if self.brazilian else "%Y-%m-%d %H:%M:%S")

    def clock(self, moment: datetime) -> str:
        """Short form for log rows: the time alone today, the date too otherwise."""
        local = _aware(moment).astimezone(self.tz)
        if local.date() == self.now().astimezone(self.tz).date():
            return local.strftime("%H:%M:%S")
        return local.strftime("%d/%m %H:%M" if self.brazilian else "%m-%d %H:%M")

    def relative(self, moment: datetime | None) -> str:
        """Relative to now: "em 1m20s" / "in 1m20s" ahead, "há 5m00s" / "5m00s ago" behind."""
        if moment is None:
            return "—"
        delta = (_aware(moment) - self.now()).total_seconds()
        if abs(delta) < 1:
            return self.tr("now")
        text = duration(abs(delta))
        return (
            self.tr("in {duration}", duration=text) if delta > 0 else self.tr("{duration} ago", duration=text)
        )

    def number(self, value: int) -> str:
        text = f"{value:,}"
        return text.replace(",", ".") if self.brazilian else text

    def money(self, value: Decimal | float | int) -> str:
        """R$ 1.234,56 under pt_BR; the English form keeps the real's symbol but uses a decimal point."""
        amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        sign = "-" if amount < 0 else ""
        text = f"{abs(amount):,.2f}"
        if self.brazilian:
            text = text.replace(",", "_").replace(".", ",").replace("_", ".")
        return f"{sign}R$ {text}"

    def parse_moment(self, text: str, *, end_of_day: bool = False) -> datetime | None:
        """Reads what staff type in a date filter: a date, a date and time, or a duration back from now.

        Accepts 25/01/2026, 25/01/2026 14:00, 2026-01-25, 2026-01-25 14:00, ISO with zone, and 30m/2h/7d.
        A date alone means its start, or with ``end_of_day`` the start of the next day (an inclusive "until").
        Returns None when the text cannot be read; blank text is the caller's business.
        """
        text = text.strip()
        found = _DURATION.match(text)
        if found:
            return self.now() - timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2).lower()])
        for pattern in ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
            try:
                return datetime.strptime(text, pattern).replace(tzinfo=self.tz)
            except ValueError:
                continue
        for pattern in ("%d/%m/%Y", "%Y-%m-%d"):
            try:
                day = datetime.strptime(text, pattern).date()
            except ValueError:
                continue
            return self._day_start(day + timedelta(days=1) if end_of_day else day)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=self.tz)

    def _day_start(self, day: date) -> datetime:
        return datetime.combine(day, time(0, 0), tzinfo=self.tz)


def duration(seconds: float) -> str:
    """Compact and unambiguous in both languages: 45s, 1m20s, 2h05m, 3d04h."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
