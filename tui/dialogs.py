"""Small modal questions: a SKU to push, a yes/no before a bulk action."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui.ui import Ui, localize_bindings


class SkuDialog(ModalScreen[str | None]):
    """Asks for the SKU whose stock should be pushed now; returns it trimmed, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, ui: Ui) -> None:
        super().__init__()
        self.ui = ui
        localize_bindings(self, ui.tr)

    def compose(self) -> ComposeResult:
        tr = self.ui.tr
        with Vertical(id="sku-dialog", classes="dialog"):
            yield Label(tr("Push one product's stock now"), classes="dialog-title")
            yield Input(id="sku", placeholder=tr("SKU"))
            yield Static(id="sku-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(tr("Push"), id="push", variant="primary")
                yield Button(tr("Cancel"), id="cancel")

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
        sku = self.query_one(Input).value.strip()
        if not sku:
            self.query_one("#sku-error", Static).update(self.ui.tr("Type a SKU."))
            return
        self.dismiss(sku)


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
