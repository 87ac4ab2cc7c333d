"""The log view's filter: what it asks ``/logs`` for, and the same test applied to live rows.

Live rows arrive unfiltered on the event stream, so the view checks each one against the filter itself;
``matches`` mirrors the server's query so history and live rows agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from daemon.controlapi.wire import Level, LogRow

LEVELS: tuple[Level, ...] = ("debug", "info", "warning", "error", "critical")
_RANK = {name: rank for rank, name in enumerate(LEVELS)}


@dataclass(frozen=True)
class LogFilter:
    channel: str | None = None
    flow: str | None = None
    level: Level | None = None
    """The least severe level shown (``warning`` shows warnings, errors and critical)."""
    entity: str | None = None
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def query(self) -> dict[str, Any]:
        """Keyword arguments for ``ControlClient.logs``: only what is set."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def matches(self, row: LogRow) -> bool:
        if self.channel is not None and row.channel != self.channel:
            return False
        if self.flow is not None and row.flow != self.flow:
            return False
        if self.level is not None and _RANK[row.level] < _RANK[self.level]:
            return False
        if self.entity is not None and row.entity != self.entity:
            return False
        ts = row.ts if row.ts.tzinfo else row.ts.replace(tzinfo=UTC)
        if self.since is not None and ts < self.since:
            return False
        if self.until is not None and ts >= self.until:
            return False
        return self.q is None or self.q.casefold() in searchable_text(row).casefold()


def searchable_text(row: LogRow) -> str:
    """What a text search looks through: the event name, ids and the structured data."""
    parts = [row.event, row.entity_id or "", row.remote_id or "", row.run_id or ""]
    if row.data:
        parts.append(json.dumps(row.data, ensure_ascii=False, default=str, sort_keys=True))
    return " ".join(parts)
