"""The moderation screen (``m`` on the main screen): search the history as you type,
delete a message, ban, mute or purge its sender, and lift bans.

Every request goes to the daemon's admin socket on a connection of its own, in a
worker, and comes back as a message (:class:`SearchAnswered`, :class:`BansReceived`,
:class:`ActionDone`); the handlers here update the widgets. A daemon that is gone or
an error reply is said on the screen, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from chathub.admin.client import call

from ..feed import LINK_ERRORS
from ..messages import ActionDone, BansReceived, SearchAnswered
from ..widgets.bans import BansTable, lift, target, time_left
from ..widgets.hits import HitsTable, sender
from .confirm import ConfirmScreen
from .sanction import Sanction, SanctionScreen

#: seconds of quiet after a keystroke before the search is sent: one request per
#: pause in typing, not one per key
DEBOUNCE = 0.3
#: hits asked for per page (the daemon allows 1 to 200)
PAGE = 50
#: seconds between two ``bans`` requests; one is also sent at once after each action
BANS_POLL = 5.0
#: seconds between two redraws of the bans' time left
TICK = 1.0
#: longest search text typed (the daemon refuses more than 500 characters)
MAX_WORDS = 500
#: characters of a message quoted in the delete dialog
QUOTE = 80
#: what the status line says before anything is typed
HINT = ('Type to search the history: every word must occur; "a phrase", -word, '
        "a or b. Enter: to the results.")


def say(exc: BaseException) -> str:
    """One line for the status line."""
    return str(exc) or type(exc).__name__


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class ModerationScreen(Screen[None]):
    """Search results on top, the bans and mutes in force below; Escape goes back.

    Args:
        socket_path: the daemon's admin socket.
    """

    BINDINGS = [
        Binding("slash", "focus_search", "Search"),
        Binding("o", "older", "Older"),
        Binding("d", "delete", "Delete msg"),
        Binding("b", "sanction('ban')", "Ban"),
        Binding("m", "sanction('mute')", "Mute"),
        Binding("x", "sanction('purge')", "Purge"),
        Binding("u", "unban", "Unban"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, socket_path: Path) -> None:
        super().__init__()
        self.socket_path = socket_path
        #: the number of the query shown; an answer to an older one is dropped
        self.seq = 0
        #: the words of that query ("" before anything is typed)
        self.words = ""
        #: where the next page of older hits starts (None: no more)
        self.next_before: str | None = None
        #: messages waiting in Valkey, not yet searchable, at the last answer
        self.unflushed: int | None = None
        #: the status line's text, for tests
        self.status = HINT
        #: set to ask for the bans list at once
        self._bans_now = asyncio.Event()

    def compose(self) -> ComposeResult:
        yield Static(Text("Moderation", style="bold"), id="mod-title")
        yield Input(placeholder="search words", max_length=MAX_WORDS, id="search")
        yield HitsTable(id="hits")
        yield Static(HINT, id="mod-status")
        yield BansTable(id="bans")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(HitsTable).border_title = "Messages"
        self.query_one("#search", Input).focus()
        self.set_interval(TICK, self.query_one(BansTable).tick)
        self.run_bans()

    # -- searching ----------------------------------------------------------------------

    @on(Input.Changed, "#search")
    def _typed(self, event: Input.Changed) -> None:
        self._query(event.value, DEBOUNCE)

    @on(Input.Submitted, "#search")
    def _submitted(self, event: Input.Submitted) -> None:
        self._query(event.value, 0.0)
        self.query_one(HitsTable).focus()

    def _query(self, text: str, delay: float) -> None:
        """Start a new query (the previous one's answer, if late, is dropped)."""
        self.seq += 1
        self.words = text.strip()
        self.next_before = None
        if not self.words:
            self.workers.cancel_group(self, "search")
            self.query_one(HitsTable).show([])
            self._say(HINT)
            return
        self.run_search(self.seq, self.words, None, delay)

    @work(exclusive=True, group="search", exit_on_error=False)
    async def run_search(self, seq: int, words: str, before: str | None, delay: float) -> None:
        """Wait ``delay`` (cancelled by the next keystroke), then ask for one page."""
        if delay:
            await asyncio.sleep(delay)
        fields: dict[str, Any] = {"words": words, "limit": PAGE}
        if before is not None:
            fields["before"] = before
        try:
            reply = await call(self.socket_path, "search", **fields)
        except LINK_ERRORS as exc:
            self.post_message(SearchAnswered(seq, before, None, say(exc)))
            return
        self.post_message(SearchAnswered(seq, before, reply))

    def on_search_answered(self, message: SearchAnswered) -> None:
        if message.seq != self.seq:
            return  # the operator has typed since: this answers an older query
        if message.reply is None:
            self._say(f"search failed: {message.error}", error=True)
            return
        reply = message.reply
        hits = reply.get("hits") or []
        table = self.query_one(HitsTable)
        table.show(hits, append=message.before is not None)
        self.next_before = reply.get("next_before")
        self.unflushed = reply.get("unflushed")
        n = table.row_count
        parts = [f"{plural(n, 'hit')} for “{self.words}”, newest first"]
        if self.next_before:
            parts.append("o: older")
        if self.unflushed:
            parts.append(f"{plural(self.unflushed, 'newer message')} not searchable yet "
                         "(in Valkey, not yet written to PostgreSQL)")
        elif self.unflushed is None:
            parts.append("Valkey is down: messages waiting there are not searchable")
        self._say(" · ".join(parts))

    def action_focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_older(self) -> None:
        if not self.words or self.next_before is None:
            self.notify("No older results", severity="warning")
            return
        self.run_search(self.seq, self.words, self.next_before, 0.0)

    # -- bans ---------------------------------------------------------------------------

    @work(exclusive=True, group="bans", exit_on_error=False)
    async def run_bans(self) -> None:
        """Ask for the bans every :data:`BANS_POLL` seconds, and at once when told."""
        while True:
            self._bans_now.clear()
            try:
                reply = await call(self.socket_path, "bans")
            except LINK_ERRORS as exc:
                self.post_message(BansReceived(None, say(exc)))
            else:
                bans = reply.get("bans")
                self.post_message(BansReceived(bans if isinstance(bans, list) else [],
                                               None if reply.get("valkey", True) else
                                               "Valkey is down: the daemon's last copy"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BANS_POLL):
                    await self._bans_now.wait()

    def on_bans_received(self, message: BansReceived) -> None:
        table = self.query_one(BansTable)
        if message.bans is not None:
            table.sync(message.bans)
        table.border_subtitle = message.error and Text(message.error, style="bold red")

    # -- actions ------------------------------------------------------------------------

    def _hit(self) -> dict[str, Any] | None:
        hit = self.query_one(HitsTable).selected
        if hit is None:
            self.notify("No message selected: search, then pick one", severity="warning")
        return hit

    def action_delete(self) -> None:
        hit = self._hit()
        if hit is None:
            return
        mid, channel = str(hit["id"]), hit.get("channel")
        fields: dict[str, Any] = {"msg": mid}
        if channel:
            fields["channel"] = channel
        text = str(hit.get("text", ""))
        question = Text.assemble("Delete message ", (mid, "bold"), " from ",
                                 (sender(hit), "bold"), f" in {channel or 'a whisper'}?")
        detail = (f"“{text[:QUOTE]}{'…' if len(text) > QUOTE else ''}”\nIt disappears for every "
                  "client and from history; PostgreSQL keeps it for the audit.")

        def done(yes: bool | None) -> None:
            if yes:
                self._send("delete", f"message {mid}", fields)

        self.app.push_screen(ConfirmScreen(question, detail, "Delete"), done)

    def action_sanction(self, kind: str) -> None:
        hit = self._hit()
        if hit is None:
            return
        user = str(hit.get("from"))

        def done(sanction: Sanction | None) -> None:
            if sanction is not None:
                where = sanction.fields.get("channel")
                self._send(sanction.cmd, user + (f" in {where}" if where else ""),
                           sanction.fields)

        self.app.push_screen(SanctionScreen(kind, user, hit.get("channel")), done)

    def action_unban(self) -> None:
        ban = self.query_one(BansTable).selected
        if ban is None:
            self.notify("No ban selected (Tab to the bans list)", severity="warning")
            return
        cmd, fields = lift(ban)
        what = target(ban)
        verb = "Unmute" if cmd == "unmute" else "Lift the ban on"
        question = Text.assemble(f"{verb} ", (what, "bold"), "?")
        detail = f"Reason given: {ban.get('reason') or '—'}; set by {ban.get('by') or '?'}."

        def done(yes: bool | None) -> None:
            if yes:
                self._send(cmd, what, fields)

        self.app.push_screen(ConfirmScreen(question, detail, verb.split()[0]), done)

    def _send(self, cmd: str, what: str, fields: dict[str, Any]) -> None:
        self.run_worker(self._request(cmd, what, fields), group=f"{cmd}-{what}",
                        exit_on_error=False)

    async def _request(self, cmd: str, what: str, fields: dict[str, Any]) -> None:
        """Send one moderation request on a connection of its own (run as a worker)."""
        try:
            reply = await call(self.socket_path, cmd, **fields)
        except LINK_ERRORS as exc:
            self.post_message(ActionDone(cmd, what, None, say(exc)))
            return
        self.post_message(ActionDone(cmd, what, reply))

    def on_action_done(self, message: ActionDone) -> None:
        cmd, what, reply = message.cmd, message.what, message.reply
        if reply is None:
            self._say(f"{cmd} {what} failed: {message.error}", error=True)
            self.notify(f"Could not {cmd} {what}: {message.error}", severity="error")
            return
        hits = self.query_one(HitsTable)
        if cmd == "delete":
            hits.remove([str(reply.get("msg"))])
            if reply.get("deleted"):
                self._say(f"deleted {what} in {reply.get('channel')}")
            else:
                self._say(f"{what} was already deleted (or never existed)", error=True)
        elif cmd == "purge":
            ids = [str(i) for i in reply.get("ids") or []]
            hits.remove(ids)
            self._say(f"purged {plural(int(reply.get('deleted') or 0), 'message')} of {what}")
        elif cmd in ("ban", "mute"):
            ban = reply.get("ban") or {}
            until = ("until lifted" if ban.get("until") is None
                     else "for " + time_left(ban, time.time()))
            self._say(f"{'banned' if cmd == 'ban' else 'muted'} {what} {until}")
        elif reply.get("lifted"):
            self._say(f"{'unmuted' if cmd == 'unmute' else 'unbanned'} {what}")
        else:
            self._say(f"{what}: nothing was in force", error=True)
        self.notify(self.status)
        if cmd in ("ban", "mute", "unban", "unmute"):
            self._bans_now.set()

    def forget(self, ids: list[str]) -> None:
        """Messages deleted (a ``delete`` event: from here, the CLI or another operator):
        take out their rows."""
        self.query_one(HitsTable).remove(ids)

    def _say(self, text: str, error: bool = False) -> None:
        self.status = text
        self.query_one("#mod-status", Static).update(
            Text(text, style="bold red" if error else ""))
