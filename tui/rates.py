"""Items synced per minute over the last hour, one sparkline per channel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Label, Sparkline

from daemon.controlapi.wire import ChannelStatus, DaemonStatus
from tui.ui import Ui


class ChannelRate(Horizontal):
    def __init__(self, ui: Ui, channel: ChannelStatus) -> None:
        super().__init__(classes="rate")
        self.ui = ui
        self.channel_name = channel.name
        self._series = list(channel.synced_per_minute)

    def compose(self) -> ComposeResult:
        yield Label(self.channel_name, classes="rate-name")
        yield Sparkline(self._plot_data(), classes="rate-line")
        yield Label(self._total(), classes="rate-total")

    def show(self, channel: ChannelStatus) -> None:
        if channel.synced_per_minute == self._series:
            return
        self._series = list(channel.synced_per_minute)
        self.query_one(Sparkline).data = self._plot_data()
        self.query_one(".rate-total", Label).update(self._total())

    def _plot_data(self) -> list[float]:
        # A flat zero line still reads as "nothing synced" rather than an empty gap.
        return [float(v) for v in self._series] or [0.0]

    def _total(self) -> str:
        return self.ui.tr("{count}/h", count=self.ui.fmt.number(sum(self._series)))


class RatesPanel(VerticalScroll):
    """Rebuilt only when the set of channels changes; otherwise each sparkline's data is swapped."""

    can_focus = False

    def __init__(self, ui: Ui, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ui = ui
        self.border_title = ui.tr("Items synced per minute, last hour")
        self._names: list[str] = []

    async def show(self, status: DaemonStatus) -> None:
        names = [c.name for c in status.channels]
        if names != self._names:
            self._names = names
            await self.remove_children()
            await self.mount_all([ChannelRate(self.ui, c) for c in status.channels])
            return
        for rate, channel in zip(self.query(ChannelRate), status.channels, strict=False):
            rate.show(channel)
