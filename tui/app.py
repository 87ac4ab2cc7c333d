"""``storesync tui``: the dashboard store staff open over SSH, attached to the daemon's control socket.

The app owns the connection and hands what arrives to the three tabs; every action goes through
``Controls`` so a key, a click and the command palette do exactly the same thing.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import tzinfo
from functools import partial
from typing import ClassVar, TypeVar

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.widgets import Footer, Header, TabbedContent, TabPane

from daemon.controlapi.client import ControlClient
from daemon.controlapi.wire import ActionResult, DaemonStatus, LogRow
from tui.channel_table import Target
from tui.commands import PaletteCommand, StoresyncCommands
from tui.connection import Backoff, ClientFactory, Connection, LinkInfo, LinkState
from tui.controls import Controls
from tui.dialogs import SkuDialog
from tui.fmt import Formatter, Now, system_now
from tui.i18n import Translator, detect_locale
from tui.screen_help import HelpScreen
from tui.ui import Ui, localize_bindings, spawn
from tui.view_channels import ChannelsView, is_paused
from tui.view_log import LogView
from tui.view_problems import ProblemsView

T = TypeVar("T")
TABS = ("channels", "log", "problems")
SECONDARY_ACTIONS = frozenset({"push_stock", "reload_settings"})
"""Left out of the footer on a narrow terminal so Help and Quit stay visible (F1 and the palette list
them)."""
WIDE_FOOTER_COLUMNS = 120


def pick_theme(environ: Mapping[str, str]) -> str:
    """Plain ANSI colours unless the terminal says it has more: an old SSH client shows 16 colours."""
    chosen = environ.get("STORESYNC_THEME")
    if chosen:
        return chosen
    rich_colour = environ.get("COLORTERM", "").lower() in ("truecolor", "24bit")
    if rich_colour or "256color" in environ.get("TERM", ""):
        return "textual-dark"
    return "ansi-dark"


class StoresyncApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "storesync"
    COMMANDS = App.COMMANDS | {StoresyncCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show_tab('channels')", "Channels", show=False),
        Binding("2", "show_tab('log')", "Log", show=False),
        Binding("3", "show_tab('problems')", "Problems", show=False),
        Binding("k", "push_stock", "Push stock"),
        Binding("ctrl+r", "reload_settings", "Reload settings"),
        Binding("f1,question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        socket_path: str,
        client_factory: ClientFactory = ControlClient,
        *,
        locale: str | None = None,
        now: Now = system_now,
        tz: tzinfo | None = None,
        theme: str | None = None,
        backoff: Backoff | None = None,
        poll_interval: float = 3.0,
        tick_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        tr = Translator(locale or detect_locale(os.environ))
        self.ui = Ui(tr, Formatter(tr, now, tz))
        self.connection = Connection(
            socket_path, client_factory, self, backoff=backoff, poll_interval=poll_interval
        )
        self.controls = Controls(self.connection, tr, self._notify_outcome, after_action=self._after_action)
        self.status: DaemonStatus | None = None
        self.link = LinkInfo(LinkState.CONNECTING)
        self._tick_seconds = tick_seconds
        self._problem_signature: tuple[object, ...] | None = None
        self.theme = theme or pick_theme(os.environ)
        localize_bindings(self, tr)
        self._footer_wide: bool | None = None

    # layout --------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        tr = self.ui.tr
        yield Header(show_clock=False, icon="≡")
        with TabbedContent(initial="channels"):
            with TabPane(tr("Channels"), id="channels"):
                yield ChannelsView(self.ui, self.controls, id="channels-view")
            with TabPane(tr("Log"), id="log"):
                yield LogView(self.ui, self.connection, self._known_names, id="log-view")
            with TabPane(tr("Problems"), id="problems"):
                yield ProblemsView(self.ui, self.connection, self.controls, id="problems-view")
        yield Footer()

    def on_mount(self) -> None:
        self._show_link()
        self._fit_footer(self.size.width)
        spawn(self, self.connection.run, group="connection", exclusive=True)
        self.set_interval(self._tick_seconds, self._tick)
        self.channels_view.table.focus()

    def on_resize(self, event: events.Resize) -> None:
        self._fit_footer(event.size.width)

    def _fit_footer(self, width: int) -> None:
        """At 80 columns the footer cannot hold every key: keep the view's keys, Help and Quit."""
        wide = width >= WIDE_FOOTER_COLUMNS
        if wide == self._footer_wide:
            return
        self._footer_wide = wide
        table = self._bindings.key_to_bindings
        for key, bindings in table.items():
            table[key] = [replace(b, show=wide) if b.action in SECONDARY_ACTIONS else b for b in bindings]
        self.refresh_bindings()

    @property
    def channels_view(self) -> ChannelsView:
        return self.query_one(ChannelsView)

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    @property
    def problems_view(self) -> ProblemsView:
        return self.query_one(ProblemsView)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        event.pane.query(".main").first().focus()
        if event.pane.id == "problems" and self.link.up:
            self.problems_view.refresh_problems()

    def _tick(self) -> None:
        self.channels_view.tick()

    # connection listener ---------------------------------------------------------------------------------

    def on_link(self, info: LinkInfo) -> None:
        came_up = info.up and not self.link.up
        self.link = info
        self._show_link()
        if came_up:
            log = self.log_view
            if not log.loaded or log.error:
                log.reload()
            self.problems_view.refresh_problems()

    def on_status(self, status: DaemonStatus) -> None:
        self.status = status
        self._show_link()
        self.call_later(self.channels_view.show, status)
        # The counts alone can hide a change (one item fixed, another failed within a second), so an
        # open Problems tab re-reads on every status beat; a hidden one only when the counts move.
        signature = tuple((c.name, f.flow, f.failed) for c in status.channels for f in c.flows)
        tabs = self.query_one(TabbedContent)
        if signature != self._problem_signature or tabs.active == "problems":
            self._problem_signature = signature
            self.problems_view.refresh_problems()
        failed = sum(f.failed for c in status.channels for f in c.flows)
        label = self.ui.tr("Problems ({count})", count=failed) if failed else self.ui.tr("Problems")
        tabs.get_tab("problems").label = label

    def on_logs(self, rows: list[LogRow]) -> None:
        self.log_view.on_logs(rows)

    def _show_link(self) -> None:
        tr, info = self.ui.tr, self.link
        if info.state is LinkState.CONNECTING:
            text = tr("connecting…")
        elif info.state is LinkState.CONNECTED:
            text = tr("connected")
            if self.status is not None:
                text += f" · {self.status.version}"
        elif info.state is LinkState.POLLING:
            text = tr("connected (no live stream, polling)")
        else:
            reason = tr("the daemon is not running") if info.daemon_down else (info.reason or "")
            text = tr("disconnected: {reason} · attempt {attempt}", reason=reason, attempt=info.attempt)
        self.sub_title = text
        offline = info.state is LinkState.DISCONNECTED
        for header in self.query(Header):
            header.set_class(offline, "-offline")
            header.set_class(info.state is LinkState.POLLING, "-polling")
        for tabs in self.query(TabbedContent):
            tabs.set_class(offline, "-stale")  # what is on screen is the last known state

    # actions -------------------------------------------------------------------------------------------

    def _notify_outcome(self, message: str, title: str, severity: SeverityLevel) -> None:
        self.notify(
            message, title=title, severity=severity, markup=False, timeout=10 if severity == "error" else 5
        )

    def _after_action(self, _: ActionResult) -> None:
        self.problems_view.refresh_problems()

    def action_show_tab(self, tab: str) -> None:
        if tab in TABS:
            self.query_one(TabbedContent).active = tab

    def action_help_quit(self) -> None:
        """Ctrl+C quits, as store staff expect of a terminal program (Textual only hints at Ctrl+Q)."""
        self.exit()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.ui))

    def action_push_stock(self) -> None:
        def chosen(sku: str | None) -> None:
            if sku:
                spawn(self, partial(self.controls.push_stock, sku), group="actions")

        self.push_screen(SkuDialog(self.ui), chosen)

    def action_reload_settings(self) -> None:
        spawn(self, self.controls.reload, group="actions")

    def action_reconnect(self) -> None:
        self.connection.kick()

    def _known_names(self) -> tuple[list[str], list[str]]:
        if self.status is None:
            return [], []
        channels = [c.name for c in self.status.channels]
        flows = sorted({f.flow for c in self.status.channels for f in c.flows})
        return channels, flows

    def palette_commands(self) -> list[PaletteCommand]:
        tr, controls = self.ui.tr, self.controls
        commands = [
            PaletteCommand(
                tr("Sync now: everything"), tr("Sync every channel now"), self._spawn(controls.sync, None)
            ),
            PaletteCommand(
                tr("Push stock of one product (by SKU)…"),
                tr("Push one product's stock now, by SKU"),
                self.action_push_stock,
            ),
            PaletteCommand(
                tr("Reload settings"), tr("Reload the settings file"), self.action_reload_settings
            ),
            PaletteCommand(
                tr("Retry all failed outbox items"),
                tr("Retry every failed or parked item"),
                self.problems_view.action_retry_all,
            ),
            PaletteCommand(tr("Show channels"), "1", partial(self.action_show_tab, "channels")),
            PaletteCommand(tr("Show log"), "2", partial(self.action_show_tab, "log")),
            PaletteCommand(tr("Show problems"), "3", partial(self.action_show_tab, "problems")),
            PaletteCommand(tr("Edit log filters…"), "f", self._open_filters),
            PaletteCommand(tr("Show help"), "F1", self.action_help),
            PaletteCommand(tr("Reconnect to the daemon now"), "", self.action_reconnect),
        ]
        for target in self._targets():
            commands.append(
                PaletteCommand(
                    tr("Sync now: {target}", target=target),
                    tr("Sync the selected channel or flow now"),
                    self._spawn(controls.sync, target),
                )
            )
            if self.status is not None and is_paused(self.status, target):
                label, action = tr("Resume {target}", target=target), controls.resume
            else:
                label, action = tr("Pause {target}", target=target), controls.pause
            commands.append(
                PaletteCommand(
                    label, tr("Pause or resume the selected channel or flow"), self._spawn(action, target)
                )
            )
        return commands

    def _spawn(
        self, action: Callable[[T], Awaitable[ActionResult | None]], argument: T
    ) -> Callable[[], object]:
        """A palette callback that runs one control action in the background."""
        return lambda: spawn(self, partial(action, argument), group="actions")

    def _targets(self) -> list[Target]:
        targets: list[Target] = []
        for channel in self.status.channels if self.status is not None else []:
            targets.append(Target(channel.name))
            targets.extend(Target(channel.name, f.flow) for f in channel.flows)
        return targets

    def _open_filters(self) -> None:
        self.action_show_tab("log")
        self.log_view.action_filters()


def run(socket_path: str, *, default_locale: str | None = None) -> int:
    """Entry point of ``storesync tui``: runs until the user quits; the exit status for the shell.

    ``default_locale`` is the daemon's configured ``daemon.locale``, used when the terminal's environment
    names no language (``LANG=C.UTF-8`` over SSH); a terminal that asks for one gets it.
    """
    locale = detect_locale(os.environ, default=default_locale or "en")
    app = StoresyncApp(socket_path, locale=locale)
    app.run()
    return app.return_code or 0
