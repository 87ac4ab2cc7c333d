"""F1 / ?: every key, per tab, and what the colours mean."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tui.ui import Ui, localize_bindings

SECTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Anywhere",
        (
            ("1 2 3", "Go to a tab"),
            ("ctrl+p", "Command palette (every action)"),
            ("f1 ?", "This help"),
            ("k", "Push one product's stock now, by SKU"),
            ("ctrl+r", "Reload the settings file"),
            ("↑ ↓ Enter", "Move, select with the mouse or the arrows; Enter opens details"),
            ("q", "Quit"),
        ),
    ),
    (
        "Channels tab",
        (
            ("s", "Sync the selected channel or flow now"),
            ("a", "Sync every channel now"),
            ("p", "Pause or resume the selected channel or flow"),
        ),
    ),
    (
        "Log tab",
        (
            ("f /", "Filter by channel, flow, level, entity, text, dates"),
            ("c", "Clear filters"),
            ("o End", "Load older rows (also when scrolling to the end)"),
            ("n Home", "Back to the newest rows, live"),
        ),
    ),
    (
        "Problems tab",
        (
            ("r", "Retry the selected outbox item"),
            ("R", "Retry every failed or parked item"),
            ("d", "Dismiss the selected import failure"),
            ("l", "Link the selected never-integrated product by hand"),
            ("f5", "Refresh"),
        ),
    ),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("f1,question_mark,q", "close", "Close", show=False),
    ]

    def __init__(self, ui: Ui) -> None:
        super().__init__()
        self.ui = ui
        localize_bindings(self, ui.tr)

    def compose(self) -> ComposeResult:
        tr = self.ui.tr
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Label(tr("Help"), classes="dialog-title")
            for title, keys in SECTIONS:
                table = Table.grid(padding=(0, 2))
                table.add_column(style="bold", no_wrap=True, min_width=10)
                table.add_column()
                for key, text in keys:
                    table.add_row(key, tr(text))
                yield Label(tr(title), classes="help-section")
                yield Static(table)
            yield Label(tr("Colours"), classes="help-section")
            yield Static(self._colours())

    def _colours(self) -> Text:
        ui, app = self.ui, self.app
        text = Text()
        for state in ("running", "idle", "paused", "backing_off", "circuit_open", "needs_reauth", "disabled"):
            text.append_text(ui.state(state, app))
            text.append("  ")
        text.append("\n")
        text.append(
            ui.tr("green: working · yellow: paused, backing off, pending · red: failing, needs attention")
        )
        return text

    def action_close(self) -> None:
        self.dismiss(None)
