"""The log filter form: a modal that returns a new LogFilter, or None when cancelled.

Dates are typed the way staff write them (25/01/2026 14:00, 2026-01-25, or "2h" back from now); a value
that cannot be read is named in the form and nothing is applied, so a typo never silently drops a filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from daemon.controlapi.wire import Level
from tui.log_filter import LEVELS, LogFilter
from tui.ui import Ui, localize_bindings


class FilterDialog(ModalScreen[LogFilter | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        ui: Ui,
        current: LogFilter,
        channels: Sequence[str],
        flows: Sequence[str],
        *,
        focus_text: bool = False,
    ) -> None:
        super().__init__()
        self.ui = ui
        self.current = current
        self.channels = channels
        self.flows = flows
        self.focus_text = focus_text
        localize_bindings(self, ui.tr)

    def compose(self) -> ComposeResult:
        tr, fmt, f = self.ui.tr, self.ui.fmt, self.current
        with Vertical(id="filter-dialog", classes="dialog"):
            yield Label(tr("Log filters"), classes="dialog-title")
            with Grid(id="filter-grid"):
                yield Label(tr("Channel"))
                yield _select("channel", self.channels, f.channel, tr("any"))
                yield Label(tr("Flow"))
                yield _select("flow", self.flows, f.flow, tr("any"))
                yield Label(tr("Level"))
                yield _select("level", LEVELS, f.level, tr("any"))
                yield Label(tr("Entity"))
                yield Input(f.entity or "", id="entity", placeholder="product, order, stock…", compact=True)
                yield Label(tr("Text"))
                yield Input(f.q or "", id="q", compact=True)
                yield Label(tr("Since"))
                hint = tr("e.g. 25/01/2026 14:00, 2026-01-25 or 2h")
                yield Input(fmt.stamp(f.since) if f.since else "", id="since", placeholder=hint, compact=True)
                yield Label(tr("Until"))
                yield Input(fmt.stamp(f.until) if f.until else "", id="until", placeholder=hint, compact=True)
            yield Static(id="filter-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(tr("Apply"), id="apply", variant="primary")
                yield Button(tr("Clear"), id="clear")
                yield Button(tr("Cancel"), id="cancel")

    def on_mount(self) -> None:
        if self.focus_text:
            self.query_one("#q", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self._apply()
        elif event.button.id == "clear":
            self.dismiss(LogFilter())
        else:
            self.dismiss(None)

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self._apply()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _apply(self) -> None:
        try:
            new = self.read()
        except ValueError as exc:
            self.query_one("#filter-error", Static).update(str(exc))
            return
        self.dismiss(new)

    def read(self) -> LogFilter:
        """The form's values as a filter; ValueError names the field that cannot be read."""
        tr, fmt = self.ui.tr, self.ui.fmt

        def text(widget_id: str) -> str | None:
            value = self.query_one(f"#{widget_id}", Input).value.strip()
            return value or None

        def moment(widget_id: str, field: str, *, end_of_day: bool) -> datetime | None:
            raw = text(widget_id)
            if raw is None:
                return None
            # A value shown back unchanged is the current filter's own moment: keep it to the second.
            current = getattr(self.current, widget_id)
            if current is not None and raw == fmt.stamp(current):
                return cast(datetime, current)
            parsed = fmt.parse_moment(raw, end_of_day=end_of_day)
            if parsed is None:
                message = "{field}: cannot read {value!r} as a date, time or duration"
                raise ValueError(tr(message, field=field, value=raw))
            return parsed

        since = moment("since", tr("Since"), end_of_day=False)
        until = moment("until", tr("Until"), end_of_day=True)
        if since is not None and until is not None and since >= until:
            raise ValueError(tr("Since must be before until."))
        level = _selected(self.query_one("#level", Select))
        return LogFilter(
            channel=_selected(self.query_one("#channel", Select)),
            flow=_selected(self.query_one("#flow", Select)),
            level=cast(Level, level) if level is not None else None,
            entity=text("entity"),
            q=text("q"),
            since=since,
            until=until,
        )


def _select(widget_id: str, values: Sequence[str], current: str | None, prompt: str) -> Select[str]:
    options = list(dict.fromkeys([*values, *([current] if current else [])]))
    return Select(
        [(value, value) for value in options],
        id=widget_id,
        prompt=prompt,
        allow_blank=True,
        value=current if current else Select.NULL,
        compact=True,
    )


def _selected(select: Select[str]) -> str | None:
    value = select.value
    return value if isinstance(value, str) else None
