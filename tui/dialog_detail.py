"""One log row in full: every field and the structured data, pretty-printed."""

from __future__ import annotations

import json
from typing import ClassVar

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from daemon.controlapi.wire import LogRow
from tui.ui import LEVEL_TONES, Ui, localize_bindings


class LogDetailDialog(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("enter", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, ui: Ui, row: LogRow) -> None:
        super().__init__()
        self.ui = ui
        self.row = row
        localize_bindings(self, ui.tr)

    def compose(self) -> ComposeResult:
        tr, row = self.ui.tr, self.row
        with VerticalScroll(id="detail-dialog", classes="dialog"):
            yield Label(tr("Log entry {id}", id=row.id), classes="dialog-title")
            yield Static(self._fields(), id="detail-fields")
            yield Static(
                Syntax(
                    json.dumps(row.data, indent=2, ensure_ascii=False, default=str, sort_keys=True),
                    "json",
                    theme="ansi_dark",
                    word_wrap=True,
                    background_color="default",
                ),
                id="detail-data",
            )

    def _fields(self) -> Text:
        tr, fmt, row = self.ui.tr, self.ui.fmt, self.row
        fields: list[tuple[str, str]] = [
            (tr("Time"), fmt.stamp_seconds(row.ts)),
            (tr("Level"), row.level),
            (tr("Event"), row.event),
            (tr("Channel"), row.channel or "—"),
            (tr("Flow"), row.flow or "—"),
            (tr("Run"), row.run_id or "—"),
            (tr("Entity"), row.entity or "—"),
            (tr("Entity id"), row.entity_id or "—"),
            (tr("Remote id"), row.remote_id or "—"),
        ]
        width = max(len(name) for name, _ in fields) + 2
        text = Text()
        for name, value in fields:
            text.append(f"{name}:".ljust(width), style="bold")
            if name == tr("Level"):
                text.append_text(self.ui.toned(value, LEVEL_TONES.get(value, "plain"), self.app))
            else:
                text.append(value)
            text.append("\n")
        text.append(f"{tr('Data')}:", style="bold")
        return text

    def action_close(self) -> None:
        self.dismiss(None)
