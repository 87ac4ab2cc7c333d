"""The log rows on screen, drawn with Textual's line API.

Only the lines in view are rendered, each from cells formatted once per row, so redrawing after a burst
of live rows costs the same whether the window holds 50 rows or 500 (a DataTable re-measures every cell
on each rebuild). The header stays on the first line; the cursor keeps to its row when rows arrive above.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from daemon.controlapi.wire import LogRow
from tui.ui import LEVEL_TONES, Tone, Ui, tone_style

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ts", "Time", 11),
    ("level", "Level", 8),
    ("where", "Channel/flow", 16),
    ("event", "Event", 22),
    ("entity", "Entity", 14),
    ("data", "Data", 100),
)
GAP = 2
_NEAR_END_ROWS = 3
Cell = tuple[str, Tone]


class LogTable(ScrollView, can_focus=True):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"log-table--header", "log-table--cursor"}
    DEFAULT_CSS = """
    LogTable > .log-table--header {
        text-style: bold;
        color: $text-accent;
    }
    LogTable > .log-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    LogTable:blur > .log-table--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
        text-style: $block-cursor-blurred-text-style;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("ctrl+home", "first", "Top", show=False),
        Binding("enter", "select", "Details", show=False),
        Binding("home", "newest", "Newest", show=False),
        Binding("end", "older", "Older", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True)

    class WantNewest(Message):
        """Back to the head of the log (and to live rows)."""

    class WantOlder(Message):
        """The user reached the bottom: fetch the next older page."""

    class Highlighted(Message):
        def __init__(self, row: LogRow) -> None:
            super().__init__()
            self.row = row

    class Selected(Message):
        """Enter or a double click on a row: show it in full."""

        def __init__(self, row: LogRow) -> None:
            super().__init__()
            self.row = row

    def __init__(self, ui: Ui, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.ui = ui
        self.rows: list[LogRow] = []
        self._cells: dict[int, list[Cell]] = {}
        self._width = sum(width for _, _, width in COLUMNS) + GAP * (len(COLUMNS) - 1) + 1

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @property
    def selected(self) -> LogRow | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def cell_text(self, index: int, column: str) -> str:
        """What a row shows in a column (for tests and screen readers of the code)."""
        keys = [key for key, _, _ in COLUMNS]
        return self._cells_of(self.rows[index])[keys.index(column)][0]

    def show_rows(self, rows: Sequence[LogRow]) -> None:
        """Shows a new window; the cursor stays on its row (on top when it was on top)."""
        previous = self.selected
        following = self.cursor <= 0 and self.scroll_y <= 0
        old_index = self.cursor
        self.rows = list(rows)
        self._cells = {row.id: self._cells.get(row.id) or self._format(row) for row in self.rows}
        self.virtual_size = Size(self._width, len(self.rows) + 1)
        index = 0
        if not following and previous is not None:
            index = next((i for i, row in enumerate(self.rows) if row.id == previous.id), 0)
            # Rows arrived above: scroll by as much so what the user is reading stays put.
            if index > old_index:
                self.scroll_to(y=self.scroll_y + index - old_index, animate=False, immediate=True)
        self.set_reactive(LogTable.cursor, index)
        if following or not rows:
            self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()

    # -- keys and mouse --

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor + direction * max(1, self.scrollable_content_region.height - 2))

    def action_first(self) -> None:
        self._move(0)

    def action_select(self) -> None:
        row = self.selected
        if row is not None:
            self.post_message(self.Selected(row))

    def action_newest(self) -> None:
        self.post_message(self.WantNewest())

    def action_older(self) -> None:
        self._move(len(self.rows) - 1)
        self.post_message(self.WantOlder())

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        index = int(self.scroll_y) + event.y - 1
        if 0 <= index < len(self.rows):
            self._move(index)
            if event.chain >= 2:
                self.action_select()

    def _move(self, index: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(index, len(self.rows) - 1))

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        row = self.selected
        if row is None:
            return
        self.post_message(self.Highlighted(row))
        if new != old and new == len(self.rows) - 1 and new > 0:
            self.post_message(self.WantOlder())

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value > old_value and new_value >= self.max_scroll_y - _NEAR_END_ROWS:
            self.post_message(self.WantOlder())

    # -- drawing --

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("log-table--header")
            cells: list[Cell] = [(self.ui.tr(label), "plain") for _, label, _ in COLUMNS]
            return self._strip(cells, base + header).crop_extend(scroll_x, scroll_x + width, base)
        index = scroll_y + y - 1
        if index >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[index]
        style = base
        if index == self.cursor:
            style = base + self.get_component_rich_style("log-table--cursor")
        strip = self._strip(self._cells_of(row), style)
        return strip.crop_extend(scroll_x, scroll_x + width, style)

    def _strip(self, cells: list[Cell], style: Style) -> Strip:
        segments: list[Segment] = [Segment(" ", style)]
        for (text, tone), (_, _, width) in zip(cells, COLUMNS, strict=True):
            cell_style = style + tone_style(self.app, tone) if tone != "plain" else style
            segments.append(Segment(set_cell_size(text, width), cell_style))
            segments.append(Segment(" " * GAP, style))
        return Strip(segments)

    def _cells_of(self, row: LogRow) -> list[Cell]:
        cells = self._cells.get(row.id)
        if cells is None:
            cells = self._cells[row.id] = self._format(row)
        return cells

    def _format(self, row: LogRow) -> list[Cell]:
        entity = row.entity or ""
        if row.entity_id:
            entity = f"{entity}:{row.entity_id}" if entity else row.entity_id
        where = "/".join(part for part in (row.channel, row.flow) if part)
        return [
            (self.ui.fmt.clock(row.ts), "plain"),
            (row.level, LEVEL_TONES.get(row.level, "plain")),
            (_fit(where, 16), "plain"),
            (_fit(row.event, 22), "plain"),
            (_fit(entity, 14), "plain"),
            (summarize(row), "plain"),
        ]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def summarize(row: LogRow, limit: int = 100) -> str:
    """``key=value`` pairs on one line; the whole structure is in the detail dialog."""
    parts: list[str] = []
    for key, value in row.data.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        parts.append(f"{key}={shown}")
    text = " ".join(parts).replace("\n", " ")
    return _fit(text, limit)
