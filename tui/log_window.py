"""A bounded window onto a log that may hold millions of rows.

The view never holds more than ``capacity`` rows. It starts at the head (newest first) where live rows are
prepended; paging back appends older pages fetched with the server's keyset cursor and, past the capacity,
drops the newest rows, which takes the window off the head: live rows are then counted, not shown, until
the user returns to the newest rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from daemon.controlapi.wire import LogPage, LogRow


class LogWindow:
    def __init__(self, capacity: int = 500) -> None:
        if capacity < 1:
            raise ValueError(f"LogWindow capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.rows: list[LogRow] = []
        """Newest first."""
        self.older_cursor: int | None = None
        """The cursor for the next older page; None at the end of history."""
        self.at_head = True
        self.unseen = 0
        """Live rows that arrived while the window was away from the head."""

    @property
    def head_id(self) -> int | None:
        return self.rows[0].id if self.rows else None

    @property
    def has_older(self) -> bool:
        return self.older_cursor is not None

    def reset(self, page: LogPage) -> None:
        """Shows the newest page (after a filter change or a "back to newest")."""
        self.rows = list(page.rows[: self.capacity])
        self.older_cursor = page.next_cursor if len(page.rows) <= self.capacity else self.rows[-1].id
        self.at_head = True
        self.unseen = 0

    def append_older(self, page: LogPage) -> int:
        """Adds an older page below; returns how many rows were dropped from the top to stay bounded."""
        tail = self.rows[-1].id if self.rows else None
        fresh = [row for row in page.rows if tail is None or row.id < tail]
        self.rows.extend(fresh)
        self.older_cursor = page.next_cursor
        overflow = len(self.rows) - self.capacity
        if overflow <= 0:
            return 0
        del self.rows[:overflow]
        self.at_head = False
        return overflow

    def prepend_live(self, rows: Iterable[LogRow]) -> int:
        """Adds live rows (already filtered) at the top when at the head; returns how many were shown."""
        head = self.head_id
        fresh = sorted(
            (row for row in rows if head is None or row.id > head), key=lambda r: r.id, reverse=True
        )
        if not fresh:
            return 0
        if not self.at_head:
            self.unseen += len(fresh)
            return 0
        self.rows[:0] = fresh
        overflow = len(self.rows) - self.capacity
        if overflow > 0:
            del self.rows[-overflow:]
            # Keyset paging: the next older page starts below the oldest row still shown.
            self.older_cursor = self.rows[-1].id
        return len(fresh)
