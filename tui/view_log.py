"""The Log tab: the live sync log, newest first, filtered on the server and paged back by keyset cursor.

Only a bounded window is ever on screen (``LogWindow``), so a log of millions of rows costs the same as a
small one. Live rows are buffered and drawn a few times a second, not once each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from daemon.controlapi.client import ControlClient
from daemon.controlapi.wire import LogPage, LogRow
from tui.connection import Connection, describe_error
from tui.dialog_detail import LogDetailDialog
from tui.dialog_filter import FilterDialog
from tui.log_filter import LogFilter
from tui.log_table import LogTable
from tui.log_window import LogWindow
from tui.ui import Ui, localize_bindings, spawn

PAGE_SIZE = 200
WINDOW_ROWS = 500
FLUSH_SECONDS = 0.25
FILL_ROWS = 50
"""A screenful: fewer rows than this after a request means "ask again" (see ``_fill``)."""
MAX_HOPS = 10


class LogView(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "filters", "Filters"),
        Binding("slash", "search", "Search"),
        Binding("c", "clear_filters", "Clear filters", show=False),
        Binding("o", "older", "Older"),
        Binding("n", "newest", "Newest"),
    ]

    def __init__(
        self,
        ui: Ui,
        connection: Connection,
        known: Callable[[], tuple[Sequence[str], Sequence[str]]],
        *,
        page_size: int = PAGE_SIZE,
        window_rows: int = WINDOW_ROWS,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.ui = ui
        self.connection = connection
        self.known = known
        """(channel names, flow names) for the filter form's choices."""
        self.page_size = page_size
        self.filter = LogFilter()
        self.window = LogWindow(window_rows)
        self.loading = False
        self.loaded = False
        self.error: str | None = None
        self._live: list[LogRow] = []
        self._generation = 0
        localize_bindings(self, ui.tr)

    def compose(self) -> ComposeResult:
        yield Static(id="log-status")
        yield LogTable(self.ui, id="log-table", classes="main")

    def on_mount(self) -> None:
        self.set_interval(FLUSH_SECONDS, self.flush_live)
        self._show_status()

    @property
    def table(self) -> LogTable:
        return self.query_one(LogTable)

    # loading -------------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Back to the newest page under the current filter (also the first load)."""
        self._generation += 1
        self.loading = True
        self._show_status()
        spawn(self, partial(self._load_head, self._generation), group="log-load", exclusive=True)

    async def _load_head(self, generation: int) -> None:
        page = await self._fetch(self._page_request(None))
        if generation != self._generation:
            return
        if page is not None:
            self.loaded = True
            self.window.reset(page)
            # Live rows that raced the page: keep only the newer ones.
            self.window.prepend_live(self._take_live())
            self.table.show_rows(self.window.rows)
            await self._fill(generation, len(page.rows))
        if generation == self._generation:
            self.loading = False
            self._show_status()

    def load_older(self) -> None:
        if self.loading or not self.loaded or not self.window.has_older:
            return
        self.loading = True
        self._show_status()
        spawn(self, partial(self._load_older, self._generation), group="log-load", exclusive=False)

    async def _load_older(self, generation: int) -> None:
        await self._fill(generation, 0)
        if generation == self._generation:
            self.loading = False
            self._show_status()

    async def _fill(self, generation: int, gained: int) -> None:
        """Fetches older pages until ``FILL_ROWS`` rows arrived, history ends, or ``MAX_HOPS`` requests.

        The server stops a sparse search at a time budget and answers with a short (even empty) page
        and a cursor to go on from; asking again a bounded number of times fills the screen without
        ever walking the whole log.
        """
        for _ in range(MAX_HOPS):
            if gained >= FILL_ROWS or not self.window.has_older:
                return
            page = await self._fetch(self._page_request(self.window.older_cursor))
            if page is None or generation != self._generation:
                return
            self.window.append_older(page)
            self.table.show_rows(self.window.rows)
            gained += len(page.rows)

    def _page_request(self, cursor: int | None) -> Callable[[ControlClient], Awaitable[LogPage]]:
        """One ``/logs`` page under the current filter, bound now (the filter may change meanwhile)."""
        query, limit = self.filter.query(), self.page_size

        def request(client: ControlClient) -> Awaitable[LogPage]:
            return client.logs(**query, cursor=cursor, limit=limit)

        return request

    async def _fetch(self, request: Callable[[ControlClient], Awaitable[LogPage]]) -> LogPage | None:
        try:
            page = await self.connection.call(request)
        except Exception as exc:  # shown in the status line; the user can retry with "n"
            self.error = self.ui.tr("Could not load the log: {error}", error=describe_error(exc))
            self.loading = False
            return None
        self.error = None
        return page

    # live rows -----------------------------------------------------------------------------------------

    def on_logs(self, rows: list[LogRow]) -> None:
        self._live.extend(rows)
        if len(self._live) > 10 * self.window.capacity:
            # Far more than fit on screen arrived between two draws: keep only the newest.
            del self._live[: len(self._live) - self.window.capacity]

    def _take_live(self) -> list[LogRow]:
        rows = [row for row in self._live if self.filter.matches(row)]
        self._live.clear()
        return rows

    def flush_live(self) -> None:
        if self.loading or not self._live or not self.loaded:
            return
        unseen = self.window.unseen
        shown = self.window.prepend_live(self._take_live())
        if shown:
            self.table.show_rows(self.window.rows)
        if shown or self.window.unseen != unseen:
            self._show_status()

    # status line ---------------------------------------------------------------------------------------

    def _show_status(self) -> None:
        tr, f = self.ui.tr, self.filter
        parts: list[str] = [describe_filter(f, self.ui) if not f.empty else tr("no filters")]
        if self.error:
            parts.append(self.error)
        elif self.loading:
            parts.append(tr("loading…"))
        parts.append(tr("live") if self.window.at_head else tr("history"))
        parts.append(tr("{count} rows shown", count=self.ui.fmt.number(len(self.window.rows))))
        if self.window.unseen:
            parts.append(tr("{count} new, press Home", count=self.ui.fmt.number(self.window.unseen)))
        if self.loaded and not self.window.has_older:
            parts.append(tr("end of history"))
        self.query_one("#log-status", Static).update(" · ".join(parts))

    # user actions --------------------------------------------------------------------------------------

    def set_filter(self, new: LogFilter | None) -> None:
        if new is None or new == self.filter:
            return
        self.filter = new
        self._live.clear()
        self.reload()

    def action_filters(self, focus_text: bool = False) -> None:
        channels, flows = self.known()
        self.app.push_screen(
            FilterDialog(self.ui, self.filter, channels, flows, focus_text=focus_text), self.set_filter
        )

    def action_search(self) -> None:
        self.action_filters(focus_text=True)

    def action_clear_filters(self) -> None:
        self.set_filter(LogFilter())

    def action_older(self) -> None:
        self.load_older()

    def action_newest(self) -> None:
        self.reload()

    def on_log_table_want_older(self, _: LogTable.WantOlder) -> None:
        self.load_older()

    def on_log_table_want_newest(self, _: LogTable.WantNewest) -> None:
        self.reload()

    def on_log_table_selected(self, event: LogTable.Selected) -> None:
        self.app.push_screen(LogDetailDialog(self.ui, event.row))


def describe_filter(f: LogFilter, ui: Ui) -> str:
    tr, fmt = ui.tr, ui.fmt
    parts: list[str] = []
    if f.channel:
        parts.append(f"{tr('Channel')}={f.channel}")
    if f.flow:
        parts.append(f"{tr('Flow')}={f.flow}")
    if f.level:
        parts.append(f"{tr('Level')}≥{f.level}")
    if f.entity:
        parts.append(f"{tr('Entity')}={f.entity}")
    if f.q:
        parts.append(f'{tr("Text")}="{f.q}"')
    if f.since:
        parts.append(f"{tr('Since')} {fmt.stamp(f.since)}")
    if f.until:
        parts.append(f"{tr('Until')} {fmt.stamp(f.until)}")
    return " ".join(parts)
