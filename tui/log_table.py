"""The log rows on screen: at most one window's worth, newest first, asking for more at either end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

from daemon.controlapi.wire import LogRow
from tui.ui import LEVEL_TONES, Ui

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ts", "Time", 11),
    ("level", "Level", 8),
    ("where", "Channel/flow", 16),
    ("event", "Event", 22),
    ("entity", "Entity", 14),
    ("data", "Data", 80),
)
_NEAR_END_ROWS = 3


class LogTable(DataTable[Text]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home", "newest", "Newest", show=False),
        Binding("end", "older", "Older", show=False),
    ]

    class WantNewest(Message):
        """Back to the head of the log (and to live rows)."""

    class WantOlder(Message):
        """The user reached the bottom: fetch the next older page."""

    def __init__(self, ui: Ui, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.ui = ui
        self.shown: dict[str, LogRow] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(self.ui.tr(label), key=key, width=width)

    @property
    def selected(self) -> LogRow | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.shown.get(key or "")

    def show_rows(self, rows: Sequence[LogRow]) -> None:
        """Redraws the window; the cursor stays on the row it was on, or on top when it was on top."""
        previous = self.selected
        follow = self.cursor_row <= 0
        self.clear()
        self.shown = {}
        for row in rows:
            key = str(row.id)
            self.shown[key] = row
            self.add_row(*self._cells(row), key=key)
        if follow or previous is None or str(previous.id) not in self.shown:
            self.move_cursor(row=0)
        else:
            self.move_cursor(row=self.get_row_index(str(previous.id)))

    def action_newest(self) -> None:
        self.post_message(self.WantNewest())

    def action_older(self) -> None:
        self.action_scroll_bottom()
        self.post_message(self.WantOlder())

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value > old_value and new_value >= self.max_scroll_y - _NEAR_END_ROWS:
            self.post_message(self.WantOlder())

    def _cells(self, row: LogRow) -> list[Text]:
        tone = LEVEL_TONES.get(row.level, "plain")
        entity = row.entity or ""
        if row.entity_id:
            entity = f"{entity}:{row.entity_id}" if entity else row.entity_id
        where = "/".join(part for part in (row.channel, row.flow) if part)
        return [
            Text(self.ui.fmt.clock(row.ts), no_wrap=True),
            self.ui.toned(row.level, tone, self.app),
            Text(where, no_wrap=True, overflow="ellipsis"),
            Text(row.event, no_wrap=True, overflow="ellipsis"),
            Text(entity, no_wrap=True, overflow="ellipsis"),
            Text(summarize(row), no_wrap=True, overflow="ellipsis"),
        ]


def summarize(row: LogRow, limit: int = 120) -> str:
    """``key=value`` pairs on one line; the whole structure is in the detail dialog."""
    parts: list[str] = []
    for key, value in row.data.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        parts.append(f"{key}={shown}")
    text = " ".join(parts).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
