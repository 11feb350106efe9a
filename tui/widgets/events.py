"""The event log: connects, disconnects, channel joins and leaves, kicks, bans, deletions,
slow consumers, rate limits, service changes."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.text import Text
from textual.widgets import RichLog

from .. import format as fmt

#: lines kept on screen and in :attr:`EventLog.entries`
MAX_LINES = 1000
#: a user's rate-limit refusals within this many seconds share one line
RATE_LIMIT_QUIET = 5.0


def describe(event: dict[str, Any]) -> tuple[str, str]:
    """(text, style) for one pushed event."""
    name = event.get("event", "?")
    user = event.get("user", "?")
    if name == "connect":
        return f"→ {user} connected from {event.get('remote_addr', '?')}", "green"
    if name == "disconnect":
        reason = event.get("reason") or ""
        return f"← {user} disconnected ({event.get('code', '?')}{' ' + reason if reason else ''})", ""
    if name == "kick" and event.get("channel"):
        n = event.get("connections", 0)
        return (f"✕ {user} removed from {event['channel']}: {event.get('reason', '')} "
                f"({n} connection{'s' if n != 1 else ''})"), "magenta"
    if name == "join":
        return f"+ {user} joined {event.get('channel', '?')}", "dim"
    if name == "leave":
        reason = event.get("reason") or ""
        return f"- {user} left {event.get('channel', '?')}{f' ({reason})' if reason else ''}", "dim"
    if name == "channel_created":
        private = " (private)" if event.get("private") else ""
        return f"+ channel {event.get('channel')} created{private}", "cyan"
    if name == "channel_emptied":
        return f"○ channel {event.get('channel')} is empty", "dim"
    if name == "channel_deleted":
        return f"✕ channel {event.get('channel')} deleted", "bold cyan"
    if name == "kick":
        n = event.get("connections", 0)
        return (f"✕ {user} kicked: {event.get('reason', '')} "
                f"({n} connection{'s' if n != 1 else ''})"), "bold magenta"
    if name == "ban":
        n = event.get("connections", 0)
        return (f"⛔ {event.get('target', '?')} banned: {event.get('reason') or '—'} "
                f"({n} connection{'s' if n != 1 else ''} closed here)"), "bold red"
    if name == "delete":
        ids = event.get("ids") or []
        n = len(ids)
        where = f"in {event['channel']}" if event.get("channel") else "(whispers)"
        return (f"✕ {n} message{'s' if n != 1 else ''} deleted {where}"
                f" by {event.get('by') or '?'}"), "magenta"
    if name == "slow_consumer":
        return (f"⚠ {user} disconnected as a slow consumer "
                f"(backlog {fmt.size(event.get('backlog'))})"), "bold yellow"
    if name == "rate_limited":
        slow = f", slow mode in {event.get('channel')}" if event.get("slow") else ""
        return (f"⏱ {user} rate-limited ({event.get('kind', '?')}{slow}, "
                f"retry after {event.get('retry_after_ms', '?')} ms)"), "yellow"
    if name in ("valkey_down", "postgres_down"):
        return f"✕ {name.split('_')[0]} is down", "bold red"
    if name in ("valkey_up", "postgres_up"):
        return f"● {name.split('_')[0]} is up again", "bold green"
    fields = {k: v for k, v in event.items() if k not in ("event", "ts")}
    return f"{name} {fields}", "dim"


class EventLog(RichLog):
    """A scrolling log of daemon events and of the dashboard's own link changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_LINES, wrap=False, markup=False, auto_scroll=True)
        #: the plain text of each line written, oldest first
        self.entries: deque[str] = deque(maxlen=MAX_LINES)
        #: user -> (monotonic time of their last rate-limit line, refusals since)
        self._quiet: dict[str, tuple[float, int]] = {}

    def add_event(self, event: dict[str, Any]) -> None:
        """Write one daemon event (rate-limit refusals are thinned per user)."""
        text, style = describe(event)
        if event.get("event") == "rate_limited":
            user = str(event.get("user"))
            now = time.monotonic()
            last, since = self._quiet.get(user, (0.0, 0))
            if now - last < RATE_LIMIT_QUIET:
                self._quiet[user] = (last, since + 1)
                return
            self._quiet[user] = (now, 0)
            if since:
                text += f" (+{since} more)"
        self._write(event.get("ts"), text, style)

    def note(self, text: str, style: str = "dim") -> None:
        """Write a line of the dashboard's own (connected, lost the daemon, kick failed)."""
        self._write(None, text, style)

    def _write(self, ts_ms: int | None, text: str, style: str) -> None:
        line = f"{fmt.clock(ts_ms)} {text}"
        self.entries.append(line)
        self.write(Text.assemble((line[:8], "dim"), (line[8:], style)))
