"""The Channels tab: every channel and flow at a glance, with sync / pause / resume on the selected row."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.widgets import DataTable, Static

from daemon.controlapi.wire import DaemonStatus
from tui.channel_table import ChannelTable, Target
from tui.controls import Controls
from tui.rates import RatesPanel
from tui.ui import Ui, localize_bindings, spawn


class ChannelsView(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sync_selected", "Sync"),
        Binding("a", "sync_all", "Sync all"),
        Binding("p", "toggle_pause", "Pause/resume"),
    ]

    def __init__(self, ui: Ui, controls: Controls, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ui = ui
        self.controls = controls
        self.status: DaemonStatus | None = None
        localize_bindings(self, ui.tr)

    def compose(self) -> ComposeResult:
        yield ChannelTable(self.ui, id="channel-table")
        yield Static(id="channel-detail")
        yield RatesPanel(self.ui, id="rates")

    @property
    def table(self) -> ChannelTable:
        return self.query_one(ChannelTable)

    async def show(self, status: DaemonStatus) -> None:
        self.status = status
        try:
            self.table.show(status)
            self._show_detail()
            await self.query_one(RatesPanel).show(status)
        except NoMatches:
            return  # a status that arrives while the dashboard closes: its widgets are already gone

    def tick(self) -> None:
        try:
            self.table.tick()
            self._show_detail()
        except NoMatches:
            return

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#channel-detail", Static)
        target = self.table.selected
        if target is None or self.status is None:
            detail.update(self.ui.tr("No channels configured.") if self.status is not None else "")
            return
        detail.update(self._describe(self.status, target))

    def _describe(self, status: DaemonStatus, target: Target) -> Text:
        tr, fmt = self.ui.tr, self.ui.fmt
        channel = next((c for c in status.channels if c.name == target.channel), None)
        if channel is None:
            return Text()
        flow = next((f for f in channel.flows if f.flow == target.flow), None)
        parts: list[str] = [str(target)]
        failing_since = flow.failing_since if flow is not None else channel.failing_since
        if failing_since is not None:
            parts.append(tr("failing since {when}", when=fmt.stamp(failing_since)))
        if channel.circuit_open_until is not None:
            parts.append(tr("circuit open until {when}", when=fmt.stamp(channel.circuit_open_until)))
        if channel.rate_limit_per_minute:
            parts.append(
                tr(
                    "rate budget {remaining}/{limit} per min",
                    remaining=f"{channel.rate_budget_remaining:.0f}",
                    limit=f"{channel.rate_limit_per_minute:.0f}",
                )
            )
        text = Text(" · ".join(parts), no_wrap=True, overflow="ellipsis")
        error = flow.last_error if flow is not None else channel.last_error
        if error:
            text.append("\n")
            text.append_text(self.ui.toned(error.strip(), "error", self.app))
        return text

    def _selected_or_warn(self) -> Target | None:
        target = self.table.selected
        if target is None:
            self.notify(self.ui.tr("Select a channel or flow first."), severity="warning")
        return target

    def action_sync_selected(self) -> None:
        target = self._selected_or_warn()
        if target is not None:
            spawn(self, partial(self.controls.sync, target), group="actions")

    def action_sync_all(self) -> None:
        spawn(self, partial(self.controls.sync, None), group="actions")

    def action_toggle_pause(self) -> None:
        target = self._selected_or_warn()
        if target is None or self.status is None:
            return
        if is_paused(self.status, target):
            spawn(self, partial(self.controls.resume, target), group="actions")
        else:
            spawn(self, partial(self.controls.pause, target), group="actions")


def is_paused(status: DaemonStatus, target: Target) -> bool:
    for channel in status.channels:
        if channel.name != target.channel:
            continue
        if target.flow is None:
            return channel.paused or channel.state == "paused"
        return any(f.flow == target.flow and f.state == "paused" for f in channel.flows)
    return False
