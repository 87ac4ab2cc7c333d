"""Small modal questions: a SKU to push, a yes/no before a bulk action."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui.ui import Ui, localize_bindings


class AskDialog(ModalScreen[str | None]):
    """Asks for one line of text; returns it trimmed, or None. ``title``, ``placeholder``, ``action``
    and ``missing`` (said when the line is empty) come translated."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, ui: Ui, *, title: str, placeholder: str, action: str, missing: str) -> None:
        super().__init__()
        self.ui = ui
        self.texts = (title, placeholder, action, missing)
        localize_bindings(self, ui.tr)

    def compose(self) -> ComposeResult:
        title, placeholder, action, _ = self.texts
        with Vertical(id="ask-dialog", classes="dialog"):
            yield Label(title, classes="dialog-title")
            yield Input(id="answer", placeholder=placeholder)
            yield Static(id="answer-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(action, id="push", variant="primary")
                yield Button(self.ui.tr("Cancel"), id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "push":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        answer = self.query_one(Input).value.strip()
        if not answer:
            self.query_one("#answer-error", Static).update(self.texts[3])
            return
        self.dismiss(answer)


class SkuDialog(AskDialog):
    """Asks for the SKU whose stock should be pushed now."""

    def __init__(self, ui: Ui) -> None:
        tr = ui.tr
        super().__init__(
            ui,
            title=tr("Push one product's stock now"),
            placeholder=tr("SKU"),
            action=tr("Push"),
            missing=tr("Type a SKU."),
        )


class LinkDialog(AskDialog):
    """Asks for the channel's product id a never-integrated product should be linked to."""

    def __init__(self, ui: Ui, sku: str, channel: str) -> None:
        tr = ui.tr
        super().__init__(
            ui,
            title=tr("Link {sku} on {channel} to the product id", sku=sku, channel=channel),
            placeholder=tr("the channel's product id"),
            action=tr("Link"),
            missing=tr("Type the channel's product id."),
        )


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "Cancel"),
        Binding("y,s", "answer(True)", "Yes", show=False),
    ]

    def __init__(self, ui: Ui, question: str) -> None:
        super().__init__()
        self.ui = ui
        self.question = question
        localize_bindings(self, ui.tr)

    def compose(self) -> ComposeResult:
        tr = self.ui.tr
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(tr("Yes"), id="yes", variant="warning")
                yield Button(tr("No"), id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
