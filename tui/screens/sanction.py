"""The dialog that bans, mutes or purges a user from the moderation screen.

It asks for what the request needs (a duration, a reason, a channel), checks the
duration before anything is sent, and dismisses with a :class:`Sanction`: the admin
command and its fields, as docs/admin-protocol.md defines them. It is also the
confirmation: nothing is sent unless its button is pressed (or Enter in a field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label

from chathub.durations import parse_duration

from .dialog import FormDialog

#: longest reason typed (the daemon keeps 200 characters)
MAX_REASON = 200
#: longest duration typed ("90m", "1.5h": a few characters)
MAX_DURATION = 20
#: longest channel name typed (the daemon checks the name itself)
MAX_CHANNEL = 100


@dataclass(frozen=True)
class Kind:
    """What one kind of sanction asks for and says."""

    cmd: str
    verb: str
    detail: str
    #: a duration must be given (a ban without one lasts until lifted)
    needs_duration: bool
    #: the label above the duration field, and its placeholder
    duration_label: str
    duration_hint: str
    reason: bool
    channel: bool


KINDS = {
    "ban": Kind("ban", "Ban", "Their connections close on every hub (4004) and they are refused "
                "until the ban ends. With a channel, they are only taken out of it.",
                False, "For how long", "30s, 10m, 2h, 7d; empty: until lifted", True, True),
    "mute": Kind("mute", "Mute", "They stay connected and can read; their chats and whispers "
                 "are refused (muted) on every hub.",
                 True, "For how long", "30s, 10m, 2h, 7d", True, False),
    "purge": Kind("purge", "Purge", "Every message they sent in that window is deleted for "
                  "everyone, in history too (kept in PostgreSQL for the audit).",
                  True, "Their messages of the last", "10m, 2h, 1d", False, True),
}


@dataclass(frozen=True)
class Sanction:
    """A request to send: ``cmd`` and its ``fields`` (``user`` and the rest)."""

    cmd: str
    fields: dict[str, Any] = field(default_factory=dict)


def build(kind: Kind, user: str, duration: str, reason: str, channel: str) -> Sanction:
    """The request for what was typed.

    Raises:
        ValueError: the duration cannot be read, or is missing where it is needed
            (one line for the dialog).
    """
    fields: dict[str, Any] = {"user": user}
    if duration.strip():
        fields["seconds"] = parse_duration(duration)
    elif kind.needs_duration:
        raise ValueError(f"a {kind.cmd} needs a duration, such as 10m")
    if kind.reason and reason.strip():
        fields["reason"] = reason.strip()[:MAX_REASON]
    if kind.channel and channel.strip():
        fields["channel"] = channel.strip()
    return Sanction(kind.cmd, fields)


class SanctionScreen(FormDialog):
    """Asks whether to ban, mute (``kind``) or purge ``user``; ``channel`` is the channel
    of the selected message, offered as a hint. Dismisses with the :class:`Sanction`
    to send, or None (Escape, Cancel). A duration that cannot be read is said in the
    dialog, which stays open."""

    CONFIRM = "sanction-confirm"

    def __init__(self, kind: str, user: str, channel: str | None = None) -> None:
        super().__init__()
        self.kind = KINDS[kind]
        self.user = user
        self.channel = channel

    def compose(self) -> ComposeResult:
        k = self.kind
        question = (Text.assemble("Purge ", (self.user, "bold"), "'s messages?") if k.cmd == "purge"
                    else Text.assemble(f"{k.verb} ", (self.user, "bold"), "?"))
        with Vertical(id="sanction-dialog", classes="dialog"):
            yield Label(question, id="sanction-question")
            yield Label(k.detail, classes="dialog-detail")
            yield Label(k.duration_label, classes="field-label")
            yield Input(placeholder=k.duration_hint, max_length=MAX_DURATION, id="sanction-duration")
            if k.reason:
                yield Label("Reason (optional; they are shown it)", classes="field-label")
                yield Input(max_length=MAX_REASON, id="sanction-reason")
            if k.channel:
                yield Label("Channel (optional)", classes="field-label")
                hint = f"empty: every channel; this message is in {self.channel}"
                yield Input(placeholder=hint if self.channel else "empty: every channel",
                            max_length=MAX_CHANNEL, id="sanction-channel")
            yield Label("", id="sanction-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(k.verb, variant="error", id="sanction-confirm")
                yield Button("Cancel", id="sanction-cancel")

    def on_mount(self) -> None:
        self.query_one("#sanction-duration", Input).focus()

    def _value(self, name: str) -> str:
        found = self.query(f"#sanction-{name}")
        return found.first(Input).value if found else ""

    def confirm(self) -> None:
        try:
            sanction = build(self.kind, self.user, self._value("duration"),
                             self._value("reason"), self._value("channel"))
        except ValueError as exc:
            self.query_one("#sanction-error", Label).update(Text(str(exc), style="bold red"))
            self.query_one("#sanction-duration", Input).focus()
            return
        self.dismiss(sanction)
