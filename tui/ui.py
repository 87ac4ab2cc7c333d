"""What every view shares: the language, the formats, the ok/warning/error colours, localised key labels."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.color import Color, ColorParseError
from textual.dom import DOMNode

from daemon.controlapi.wire import FlowState
from tui.fmt import Formatter
from tui.i18n import Translator

Tone = Literal["ok", "warning", "error", "muted", "plain"]

STATE_LABELS: dict[str, str] = {
    "idle": "idle",
    "running": "running",
    "backing_off": "backing off",
    "paused": "paused",
    "disabled": "disabled",
    "circuit_open": "circuit open",
    "needs_reauth": "needs re-auth",
}
STATE_TONES: dict[str, Tone] = {
    "idle": "ok",
    "running": "ok",
    "backing_off": "warning",
    "paused": "warning",
    "disabled": "muted",
    "circuit_open": "error",
    "needs_reauth": "error",
}
LEVEL_TONES: dict[str, Tone] = {
    "debug": "muted",
    "info": "plain",
    "warning": "warning",
    "error": "error",
    "critical": "error",
}
# Theme variables, so the ansi themes give plain green/yellow/red in a 16-colour terminal.
_TONE_VARIABLES = {"ok": "text-success", "warning": "text-warning", "error": "text-error"}


@dataclass(frozen=True)
class Ui:
    tr: Translator
    fmt: Formatter

    def state(self, state: FlowState | str, app: App[object]) -> Text:
        return self.toned(self.tr(STATE_LABELS.get(state, state)), STATE_TONES.get(state, "plain"), app)

    def toned(self, text: str, tone: Tone, app: App[object]) -> Text:
        return Text(text, style=tone_style(app, tone), no_wrap=True, end="")


def tone_style(app: App[object], tone: Tone) -> Style:
    if tone == "muted":
        return Style(dim=True)
    variable = _TONE_VARIABLES.get(tone)
    if variable is None:
        return Style()
    value = app.theme_variables.get(variable) or app.get_css_variables().get(variable, "")
    try:
        return Style(color=Color.parse(value).rich_color, bold=tone == "error")
    except ColorParseError:
        return Style(bold=tone == "error")


def localize_bindings(node: DOMNode, tr: Translator) -> None:
    """Footer labels come from class-level BINDINGS (English msgids); translate this instance's copy.

    Textual builds each node's binding map from BINDINGS when the node is created and offers no hook for
    the label's language, so the per-instance map is rewritten once, right after construction.
    """
    table = node._bindings.key_to_bindings
    for key, bindings in table.items():
        table[key] = [replace(b, description=tr(b.description)) if b.description else b for b in bindings]


def spawn(
    node: DOMNode, work: Callable[[], Awaitable[object]], *, group: str, exclusive: bool = False
) -> None:
    """Runs ``work`` as a worker of ``node``.

    A coroutine *function* rather than a coroutine: a worker cancelled before it starts (exclusive
    groups, shutdown) then leaves no never-awaited coroutine behind.
    """

    async def run() -> None:
        await work()

    # Textual's run_worker overloads resolve ResultType to Never for coroutine functions under mypy.
    node.run_worker(run, group=group, exclusive=exclusive)  # type: ignore[arg-type]


def one_line(text: str | None, limit: int = 200) -> str:
    """Errors can be long and multi-line; a table cell gets the first line, trimmed."""
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"
