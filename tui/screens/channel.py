"""One channel: its members and its messages as they arrive; ``k`` takes a member out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, RichLog, Static

from chathub.admin.client import call

from .. import format as fmt
from ..feed import LINK_ERRORS, FeedOptions
from ..messages import ChannelReceived, KickDone
from .kick import KickScreen

#: messages asked for on each poll (the newest; older ones were shown already)
RECENT = 50


def id_key(message_id: str) -> tuple[int, int]:
    """A message id ("<ms>-<seq>") as a sortable pair."""
    ms, _, seq = message_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


class ChannelScreen(Screen[None]):
    """A channel's members (every hub) and its live messages, polled with ``channel``
    every ``poll_interval``; opened with Enter on the channels table, left with Escape."""

    BINDINGS = [
        Binding("k", "kick", "Remove member"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, socket_path: Path, channel: str, options: FeedOptions) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.channel = channel
        self.options = options
        #: the last ``channel`` reply
        self.latest: dict[str, Any] = {}
        #: the members shown, in order
        self.members: list[str] = []
        #: the newest message id written to the log
        self.last_id: tuple[int, int] = (0, 0)
        #: the texts written to the log, oldest first (for tests and copy)
        self.lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(Text(self.channel, style="bold"), id="channel-title")
        with Horizontal(id="channel-body"):
            yield DataTable(id="members", cursor_type="row", zebra_stripes=True)
            yield RichLog(id="messages", wrap=True, markup=False, max_lines=1000)
        yield Footer()

    def on_mount(self) -> None:
        members = self.query_one("#members", DataTable)
        members.add_column("member", key="user")
        members.border_title = "Members"
        members.focus()
        self.query_one("#messages", RichLog).border_title = "Messages"
        self.run_poll()

    @work(exclusive=True, group="channel")
    async def run_poll(self) -> None:
        """Ask for the channel every ``poll_interval`` while the screen lives."""
        while True:
            try:
                reply = await call(self.socket_path, "channel", name=self.channel, recent=RECENT)
            except LINK_ERRORS as exc:
                self.post_message(ChannelReceived(None, str(exc) or type(exc).__name__))
            else:
                self.post_message(ChannelReceived(reply))
            await asyncio.sleep(self.options.poll_interval)

    def on_channel_received(self, message: ChannelReceived) -> None:
        title = self.query_one("#channel-title", Static)
        if message.channel is None:
            title.update(Text.assemble((self.channel, "bold"), "  ", (message.error or "", "red")))
            return
        info = self.latest = message.channel
        nodes = ", ".join(f"{n} {c}" for n, c in sorted((info.get("nodes") or {}).items()))
        title.update(Text.assemble(
            (self.channel, "bold"), " (private)" if info.get("private") else "",
            f"  {fmt.counted(info.get('users'), 'user')} · "
            f"{fmt.counted(info.get('subscriptions'), 'subscription')} "
            f"({nodes or '—'}) · {fmt.rate(info.get('messages_per_min'))} msgs/min"
            f" · {fmt.count(info.get('history'))} in Valkey"))
        self._sync_members([str(u) for u in info.get("members") or []])
        log = self.query_one("#messages", RichLog)
        for m in info.get("messages") or []:
            key = id_key(str(m.get("id", "")))
            if key <= self.last_id:
                continue
            self.last_id = key
            line = f"{m.get('from')}: {m.get('text')}"
            self.lines.append(line)
            log.write(Text.assemble((fmt.clock(m.get("ts")), "dim"), " ",
                                    (str(m.get("from")), "bold"), ": ", str(m.get("text"))))

    def _sync_members(self, members: list[str]) -> None:
        table = self.query_one("#members", DataTable)
        for user in [u for u in self.members if u not in members]:
            table.remove_row(user)
        for user in members:
            if user not in self.members:
                table.add_row(user, key=user)
        self.members = [u for u in self.members if u in members] + [
            u for u in members if u not in self.members]
        table.border_title = f"Members {len(members)}"

    @property
    def selected(self) -> str | None:
        """The member under the cursor."""
        table = self.query_one("#members", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_kick(self) -> None:
        user = self.selected
        if user is None:
            self.notify("No member selected", severity="warning")
            return

        def done(reason: str | None) -> None:
            if reason is not None:
                self.run_worker(self._kick(user, reason), group=f"kick-{user}",
                                exclusive=True, exit_on_error=False)

        self.app.push_screen(KickScreen(user, 0, channel=self.channel), done)

    async def _kick(self, user: str, reason: str) -> None:
        fields = {"reason": reason} if reason else {}
        try:
            reply = await call(self.socket_path, "kick", user=user, channel=self.channel, **fields)
        except LINK_ERRORS as exc:
            self.post_message(KickDone(user, error=str(exc) or type(exc).__name__,
                                       channel=self.channel))
            return
        self.post_message(KickDone(user, closed=int(reply.get("closed", 0)), channel=self.channel))

    def on_kick_done(self, message: KickDone) -> None:
        if message.error is not None:
            self.notify(f"Could not remove {message.user}: {message.error}", severity="error")
        else:
            n = message.closed or 0
            self.notify(f"Removed {message.user} from {self.channel} "
                        f"({n} connection{'s' if n != 1 else ''})")
