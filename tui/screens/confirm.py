"""A yes-or-no dialog: the moderation screen asks it before a delete or an unban."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmScreen(ModalScreen[bool]):
    """Asks ``question`` (with a line of ``detail``); dismisses with True on ``y`` or the
    ``action`` button, False on ``n``, Escape or Cancel. The focus starts on Cancel, so
    a stray Enter does not confirm."""

    BINDINGS = [
        Binding("y", "confirm", "Yes"),
        Binding("n,escape", "cancel", "No"),
    ]

    def __init__(self, question: str | Text, detail: str, action: str) -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.action = action

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Label(self.question, id="confirm-question")
            yield Label(self.detail, id="confirm-detail", classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.action} (y)", variant="error", id="confirm-yes")
                yield Button("Cancel (n)", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm-yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
