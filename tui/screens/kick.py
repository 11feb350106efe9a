"""The confirmation dialog shown by ``k`` before a user is kicked."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label

from .dialog import FormDialog


class KickScreen(FormDialog):
    """Asks whether to kick ``user`` (or, with ``channel``, to take them out of it);
    dismisses with the reason (possibly ``""``) or None.

    Enter in the reason field or the Kick button confirms; Escape or Cancel does not.
    """

    CONFIRM = "kick-confirm"

    def __init__(self, user: str, connections: int, channel: str | None = None) -> None:
        super().__init__()
        self.user = user
        self.connections = connections
        self.channel = channel

    def compose(self) -> ComposeResult:
        n = self.connections
        with Vertical(id="kick-dialog"):
            if self.channel is None:
                yield Label(Text.assemble("Kick ", (self.user, "bold"), "?"), id="kick-question")
                yield Label(f"This closes {n} connection{'s' if n != 1 else ''} with code 4001.",
                            id="kick-detail")
            else:
                yield Label(Text.assemble("Remove ", (self.user, "bold"), " from ",
                                          (self.channel, "bold"), "?"), id="kick-question")
                yield Label("They get 'unsubscribed' (reason kicked) and stay connected.",
                            id="kick-detail")
            yield Input(placeholder="reason (optional)", max_length=200, id="kick-reason")
            with Horizontal(id="kick-buttons"):
                yield Button("Kick", variant="error", id="kick-confirm")
                yield Button("Cancel", id="kick-cancel")

    def on_mount(self) -> None:
        self.query_one("#kick-reason", Input).focus()

    def confirm(self) -> None:
        self.dismiss(self.query_one("#kick-reason", Input).value.strip())
