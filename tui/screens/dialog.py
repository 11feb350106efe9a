"""What the dialogs with fields share (the kick, ban, mute and purge dialogs)."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Button, Input


class FormDialog(ModalScreen[Any]):
    """A modal with input fields and a confirm and a cancel button.

    Enter in a field or the button whose id is :attr:`CONFIRM` calls :meth:`confirm`;
    Escape or the other button dismisses with None.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    #: the id of the button that confirms
    CONFIRM = "confirm"

    def confirm(self) -> None:
        """Dismiss with what the fields hold (or say what is wrong and stay)."""
        raise NotImplementedError

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == self.CONFIRM:
            self.confirm()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.confirm()

    def action_cancel(self) -> None:
        self.dismiss(None)
