"""The Problems tab: what did not go through, why, and the buttons to try again or let go.

Four kinds in one table (one cursor, one set of keys): outbox items that failed or were parked, remote
records (orders) that could not be imported, products never integrated with a channel, and parcels a
carrier returned, lost or does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from daemon.controlapi.wire import ImportFailure, NeverIntegrated, OutboxItem, Parcel, Problems
from tui.channel_table import Target
from tui.connection import Connection, describe_error
from tui.controls import Controls
from tui.dialogs import ConfirmDialog, LinkDialog
from tui.ui import Tone, Ui, localize_bindings, one_line, spawn

COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("kind", "Kind", 16),
    ("channel", "Channel", 10),
    ("item", "Item", 22),
    ("state", "State", 11),
    ("attempts", "Attempts", None),
    ("when", "Time", 16),
    ("error", "Error", 60),
)
PULL_FLOW_OF_ENTITY = {"order": "orders", "ticket": "tickets", "tracking": "tracking"}


@dataclass(frozen=True)
class Problem:
    kind: str
    channel: str
    item: OutboxItem | ImportFailure | NeverIntegrated | Parcel

    @property
    def error(self) -> str:
        item = self.item
        if isinstance(item, OutboxItem):
            return item.last_error or ""
        if isinstance(item, ImportFailure):
            return item.error
        if isinstance(item, Parcel):
            return item.event or ""
        return ""


def problem_rows(problems: Problems) -> list[tuple[str, Problem]]:
    rows: list[tuple[str, Problem]] = []
    for item in problems.outbox:
        rows.append((f"outbox:{item.id}", Problem("outbox", item.channel, item)))
    for failure in problems.import_failures:
        rows.append((f"import:{failure.id}", Problem("import", failure.channel, failure)))
    for product in problems.never_integrated:
        key = f"never:{product.channel}:{product.product_id}"
        rows.append((key, Problem("never integrated", product.channel, product)))
    for parcel in problems.parcels:
        rows.append((f"parcel:{parcel.shipment_id}", Problem("parcel", parcel.channel, parcel)))
    return rows


class ProblemsView(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry"),
        Binding("R", "retry_all", "Retry all"),
        Binding("d", "dismiss", "Dismiss"),
        Binding("l", "link", "Link by hand", show=False),
        Binding("f5", "refresh", "Refresh", show=False),
    ]

    def __init__(self, ui: Ui, connection: Connection, controls: Controls, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ui = ui
        self.connection = connection
        self.controls = controls
        self.problems: Problems | None = None
        self.rows: dict[str, Problem] = {}
        self._load_failed = False
        localize_bindings(self, ui.tr)

    def compose(self) -> ComposeResult:
        yield Static(id="problems-summary")
        yield DataTable[Text](id="problems-table", classes="main", cursor_type="row", zebra_stripes=True)
        yield Static(id="problems-detail")

    def on_mount(self) -> None:
        table = self.table
        for key, label, width in COLUMNS:
            table.add_column(self.ui.tr(label), key=key, width=width)

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#problems-table", DataTable)

    @property
    def selected(self) -> Problem | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(key or "")

    # loading -------------------------------------------------------------------------------------------

    def refresh_problems(self) -> None:
        spawn(self, self._load, group="problems-load", exclusive=True)

    async def _load(self) -> None:
        try:
            problems = await self.connection.call(lambda c: c.problems())
        except Exception as exc:  # shown in the summary line; refreshed again on the next status change
            self._load_failed = True
            self.query_one("#problems-summary", Static).update(
                self.ui.toned(
                    self.ui.tr("Could not load problems: {error}", error=describe_error(exc)),
                    "error",
                    self.app,
                )
            )
            return
        self.show(problems)

    def show(self, problems: Problems) -> None:
        if problems == self.problems and not self._load_failed:
            return  # re-read on every status beat while open: rebuild only on a change (keeps the scroll)
        self._load_failed = False
        self.problems = problems
        table = self.table
        previous = self.selected
        previous_key = next((k for k, p in self.rows.items() if p == previous), None)
        table.clear()
        self.rows = dict(problem_rows(problems))
        for key, problem in self.rows.items():
            table.add_row(*self._cells(problem), key=key)
        if previous_key in self.rows:
            table.move_cursor(row=table.get_row_index(previous_key))
        self._show_summary(problems)
        self._show_detail()

    def _show_summary(self, problems: Problems) -> None:
        failed = sum(1 for i in problems.outbox if i.state == "failed")
        parked = sum(1 for i in problems.outbox if i.state == "parked")
        imports, never = len(problems.import_failures), len(problems.never_integrated)
        text = self.ui.tr(
            "Outbox: {failed} failed, {parked} parked · Import: {imports} · Never integrated: {never}",
            failed=failed,
            parked=parked,
            imports=imports,
            never=never,
        )
        if problems.parcels:
            text += self.ui.tr(" · Parcels: {parcels}", parcels=len(problems.parcels))
        warn = parked or never or problems.parcels
        tone: Tone = "error" if failed or imports else ("warning" if warn else "ok")
        if not self.rows:
            text = self.ui.tr("No problems.")
        self.query_one("#problems-summary", Static).update(self.ui.toned(text, tone, self.app))

    def _cells(self, problem: Problem) -> list[Text]:
        tr, fmt = self.ui.tr, self.ui.fmt
        item = problem.item
        state, attempts, when = "", "", None
        state_tone: Tone = "plain"
        if isinstance(item, OutboxItem):
            label = f"{item.entity} {item.sku or item.entity_id}"
            state, attempts, when = item.state, str(item.attempts), item.changed_at
            state_tone = "error" if item.state == "failed" else "warning"
        elif isinstance(item, ImportFailure):
            label = f"{item.entity} {item.remote_id}"
            state, attempts, when = item.state, str(item.attempts), item.last_seen_at
            state_tone = "error"
        elif isinstance(item, Parcel):
            label = tr("order {number} · {code}", number=item.order_number, code=item.tracking_code)
            state, when = item.status, item.since
            state_tone = "warning"
        else:
            label = f"{item.sku} {item.name}"
            state_tone = "warning"
        return [
            self.ui.toned(tr(problem.kind), state_tone, self.app),
            Text(problem.channel, no_wrap=True),
            Text(label, no_wrap=True, overflow="ellipsis"),
            self.ui.toned(tr(state) if state else "", state_tone, self.app),
            Text(attempts, no_wrap=True),
            Text(fmt.stamp(when) if isinstance(when, datetime) else "", no_wrap=True),
            Text(one_line(problem.error), no_wrap=True, overflow="ellipsis"),
        ]

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        problem = self.selected
        detail = self.query_one("#problems-detail", Static)
        if problem is None or not problem.error:
            detail.update("")
            return
        detail.update(self.ui.toned(problem.error.strip(), "error", self.app))

    # actions -------------------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.refresh_problems()

    def action_retry(self) -> None:
        problem = self.selected
        if problem is None:
            self.notify(self.ui.tr("Select a row first."), severity="warning")
            return
        item = problem.item
        if isinstance(item, OutboxItem):
            spawn(self, partial(self.controls.retry_outbox, [item.id]), group="actions")
        elif isinstance(item, ImportFailure):
            # Import failures are retried on the pull flow's next pass: run that pass now.
            flow = PULL_FLOW_OF_ENTITY.get(item.entity, f"{item.entity}s")
            spawn(self, partial(self.controls.sync, Target(item.channel, flow)), group="actions")
        elif isinstance(item, Parcel):
            self.notify(self.ui.tr("A parcel is asked about again on its carrier's next tracking run."))
        else:
            spawn(self, partial(self.controls.sync, Target(item.channel, "products")), group="actions")

    def action_retry_all(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                spawn(self, partial(self.controls.retry_outbox, None), group="actions")

        self.app.push_screen(
            ConfirmDialog(self.ui, self.ui.tr("Retry all failed and parked outbox items?")), answered
        )

    def action_link(self) -> None:
        """A never-integrated product: ask for the channel's product id and link it to that."""
        problem = self.selected
        if problem is None or not isinstance(problem.item, NeverIntegrated):
            message = self.ui.tr("Only never-integrated products can be linked by hand.")
            self.notify(message, severity="warning")
            return
        product = problem.item

        def chosen(remote_id: str | None) -> None:
            if remote_id:
                link = partial(self.controls.link_product, product.sku, product.channel, remote_id)
                spawn(self, link, group="actions")

        self.app.push_screen(LinkDialog(self.ui, product.sku, product.channel), chosen)

    def action_dismiss(self) -> None:
        problem = self.selected
        if problem is None or not isinstance(problem.item, ImportFailure):
            self.notify(self.ui.tr("Only import failures can be dismissed."), severity="warning")
            return
        spawn(self, partial(self.controls.dismiss_import_failure, problem.item.id), group="actions")
