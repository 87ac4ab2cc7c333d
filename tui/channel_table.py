"""One row per channel and one per flow under it, updated in place so the cursor never jumps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.widgets import DataTable

from daemon.controlapi.wire import ChannelStatus, DaemonStatus, FlowStatus
from tui.ui import Tone, Ui, one_line


@dataclass(frozen=True)
class Target:
    """What an action applies to: a whole channel (flow None) or one of its flows."""

    channel: str
    flow: str | None = None

    @property
    def key(self) -> str:
        return self.channel if self.flow is None else f"{self.channel}/{self.flow}"

    def __str__(self) -> str:
        return self.key


COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("target", "Channel / flow", None),
    ("state", "State", 15),
    ("next", "Next run", 10),
    ("done", "Done/failed", None),
    ("pending", "Pending", None),
    ("failed", "Failed", None),
    ("error", "Last error", 40),
    ("last_run", "Last run", 16),
    ("last_ok", "Last success", 16),
)


class ChannelTable(DataTable[Text]):
    def __init__(self, ui: Ui, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="main", cursor_type="row", zebra_stripes=True)
        self.ui = ui
        self.targets: dict[str, Target] = {}
        self._status: DaemonStatus | None = None

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(self.ui.tr(label), key=key, width=width)

    @property
    def selected(self) -> Target | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.targets.get(key or "")

    def show(self, status: DaemonStatus) -> None:
        self._status = status
        rows = list(self._rows(status))
        keys = [key for key, _, _ in rows]
        if keys == list(self.targets):
            for key, _, cells in rows:
                for (column, _, _), cell in zip(COLUMNS, cells, strict=True):
                    if self.get_cell(key, column) != cell:
                        self.update_cell(key, column, cell)
            return
        selected = self.selected
        self.clear()
        self.targets = {}
        for key, target, cells in rows:
            self.targets[key] = target
            self.add_row(*cells, key=key)
        if selected is not None and selected.key in self.targets:
            self.move_cursor(row=self.get_row_index(selected.key))

    def tick(self) -> None:
        """Re-renders the relative "next run" column as time passes."""
        if self._status is not None:
            self.show(self._status)

    def _rows(self, status: DaemonStatus) -> list[tuple[str, Target, list[Text]]]:
        rows: list[tuple[str, Target, list[Text]]] = []
        for channel in status.channels:
            target = Target(channel.name)
            rows.append((target.key, target, self._channel_cells(channel)))
            for flow in channel.flows:
                sub = Target(channel.name, flow.flow)
                rows.append((sub.key, sub, self._flow_cells(flow)))
        return rows

    def _channel_cells(self, channel: ChannelStatus) -> list[Text]:
        flows = channel.flows
        next_runs = [f.next_run_at for f in flows if f.next_run_at is not None]
        return self._cells(
            Text(channel.name, style="bold", no_wrap=True),
            self.ui.state(channel.state, self.app),
            min(next_runs) if next_runs else None,
            sum(f.items_done_last_run for f in flows),
            sum(f.items_failed_last_run for f in flows),
            sum(f.pending for f in flows),
            sum(f.failed for f in flows),
            channel.last_error,
            _latest(f.last_run_at for f in flows),
            _latest(f.last_ok_at for f in flows),
        )

    def _flow_cells(self, flow: FlowStatus) -> list[Text]:
        return self._cells(
            Text("  " + flow.flow, no_wrap=True),
            self.ui.state(flow.state, self.app),
            flow.next_run_at,
            flow.items_done_last_run,
            flow.items_failed_last_run,
            flow.pending,
            flow.failed,
            flow.last_error,
            flow.last_run_at,
            flow.last_ok_at,
        )

    def _cells(
        self,
        label: Text,
        state: Text,
        next_run: datetime | None,
        done: int,
        failed_last: int,
        pending: int,
        failed: int,
        error: str | None,
        last_run: datetime | None,
        last_ok: datetime | None,
    ) -> list[Text]:
        fmt = self.ui.fmt
        done_text = Text(f"{fmt.number(done)}/", no_wrap=True, end="")
        done_text.append_text(self._toned(fmt.number(failed_last), "error" if failed_last else "plain"))
        return [
            label,
            state,
            Text(fmt.relative(next_run), no_wrap=True),
            done_text,
            self._toned(fmt.number(pending), "warning" if pending else "plain"),
            self._toned(fmt.number(failed), "error" if failed else "plain"),
            self._toned(one_line(error, 120), "error"),
            Text(fmt.stamp(last_run), no_wrap=True),
            Text(fmt.stamp(last_ok), no_wrap=True),
        ]

    def _toned(self, text: str, tone: Tone) -> Text:
        return self.ui.toned(text, tone, self.app)


def _latest(moments: Iterable[datetime | None]) -> datetime | None:
    values = [m for m in moments if m is not None]
    return max(values) if values else None
