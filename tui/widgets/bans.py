"""The moderation screen's list of bans and mutes in force, with the time each has left.

Rows are keyed by scope and target and reconciled with each ``bans`` reply in place,
so the cursor stays on its entry; :meth:`BansTable.tick` redraws the time left.
"""

from __future__ import annotations

import time
from typing import Any

from .. import format as fmt
from .rows import Table, cursor_key


def target(ban: dict[str, Any]) -> str:
    """What an entry keeps out: ``bob``, ``bob in games`` or ``203.0.113.0/24``."""
    if ban.get("scope") == "ip":
        return str(ban.get("ip") or ban.get("key"))
    user = str(ban.get("user") or ban.get("key"))
    return f"{user} in {ban['channel']}" if ban.get("channel") else user


def time_left(ban: dict[str, Any], now: float) -> str:
    """``9m 58s``, ``until lifted`` or ``expired``; ``now`` is epoch seconds."""
    until = ban.get("until")
    if until is None:
        return "until lifted"
    left = int(until) / 1000 - now
    return fmt.duration(left) if left > 0 else "expired"


def lift(ban: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The admin request that lifts an entry: (``unban`` or ``unmute``, its fields)."""
    scope = ban.get("scope")
    if scope == "ip":
        return "unban", {"ip": str(ban.get("ip") or ban.get("key"))}
    if scope == "mute":
        return "unmute", {"user": str(ban.get("user"))}
    fields = {"user": str(ban.get("user"))}
    if scope == "channel":
        fields["channel"] = str(ban.get("channel"))
    return "unban", fields


def row_key(ban: dict[str, Any]) -> str:
    return f"{ban.get('scope')}:{ban.get('key')}"


class BansTable(Table[Any]):
    """Every ban and mute in force: scope, target, reason, by whom, time left."""

    COLUMNS = (("scope", "scope"), ("target", "target"), ("reason", "reason"), ("by", "by"),
               ("left", "time left"))

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        #: row key -> the entry shown in that row, oldest first
        self.bans: dict[str, dict[str, Any]] = {}

    def on_mount(self) -> None:
        for key, label in self.COLUMNS:
            self.add_column(label, key=key)
        self._title()

    def sync(self, bans: list[dict[str, Any]], now: float | None = None) -> None:
        """Make the rows match one ``bans`` reply, touching only what changed."""
        now = time.time() if now is None else now
        wanted = {row_key(b): b for b in bans}
        for key in [k for k in self.bans if k not in wanted]:
            self.remove_row(key)
            del self.bans[key]
        for key, ban in wanted.items():
            if key not in self.bans:
                self.add_row(str(ban.get("scope")), target(ban), str(ban.get("reason") or ""),
                             str(ban.get("by") or ""), time_left(ban, now),
                             key=key)
            elif ban != self.bans[key]:  # the same target banned again: new reason, new end
                for col, value in (("reason", str(ban.get("reason") or "")),
                                   ("by", str(ban.get("by") or ""))):
                    self.update_cell(key, col, value, update_width=True)
            self.bans[key] = ban
        self.tick(now)
        self._title()

    def tick(self, now: float | None = None) -> None:
        """Redraw every entry's time left (called each second)."""
        now = time.time() if now is None else now
        for key, ban in self.bans.items():
            self.update_cell(key, "left", time_left(ban, now),
                             update_width=True)

    def left(self) -> dict[str, str]:
        """Target -> the time left as drawn (for tests and copy)."""
        return {target(b): str(self.get_cell(k, "left")) for k, b in self.bans.items()}

    @property
    def selected(self) -> dict[str, Any] | None:
        """The entry under the cursor, if any."""
        key = cursor_key(self)
        return None if key is None else self.bans.get(key)

    def _title(self) -> None:
        self.border_title = f"Bans and mutes {len(self.bans)}"
