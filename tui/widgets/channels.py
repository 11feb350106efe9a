"""The live table of channels: users, messages per minute and its recent trend.

It is the clients table (:class:`~chathub.tui.widgets.clients.ClientsTable`) with
other columns: rows keyed by channel name, updated in place, sorted with ``s`` and
filtered with ``/`` the same way. Enter on a row opens the channel's screen.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from textual.reactive import reactive

from .. import format as fmt
from .clients import Cell, ClientsTable, Column

#: ``channels`` replies kept per channel for the trend column (one per poll)
TREND = 10
#: eight heights of a text sparkline
BLOCKS = "▁▂▃▄▅▆▇█"

COLUMNS = (
    Column("name", "channel", descending=False),
    Column("users", "users", descending=True, right=True),
    Column("rate", "msgs/min", descending=True, right=True),
    Column("trend", "trend", descending=True),
)


def spark(values: list[float]) -> str:
    """A one-line sparkline of ``values``, scaled from zero to their largest."""
    top = max(values, default=0.0)
    if top <= 0:
        return BLOCKS[0] * len(values)
    return "".join(BLOCKS[min(len(BLOCKS) - 1, int(v / top * (len(BLOCKS) - 1) + 0.5))]
                   for v in values)


def channel_cells(channel: dict[str, Any], trend: list[float]) -> dict[str, Cell]:
    """The cells of one ``channels`` entry and its recent messages/min values."""
    name = str(channel.get("name", "?"))
    users = int(channel.get("users") or 0)
    rate = float(channel.get("messages_per_min") or 0.0)
    return {  # a private channel's name starts with $: no other mark is needed
        "name": Cell(name, name.lower()),
        "users": Cell(fmt.count(users), users, right=True),
        "rate": Cell(f"{rate:,.1f}", rate, right=True),
        "trend": Cell(spark(trend), sum(trend)),
    }


class ChannelsTable(ClientsTable):
    """One row per channel (keyed by name), reconciled with each ``channels`` reply."""

    COLUMNS = COLUMNS
    TITLE = "Channels"

    sort_column: reactive[str] = reactive("name")
    """the key of the column rows are sorted by (``s`` cycles through them)"""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        #: channel -> its last :data:`TREND` messages/min values
        self.trends: dict[str, deque[float]] = {}

    def record(self, channels: list[dict[str, Any]]) -> None:
        """Append one reply's rates to each channel's trend (drop channels now gone)."""
        names = {str(c.get("name")) for c in channels}
        for name in [n for n in self.trends if n not in names]:
            del self.trends[name]
        for c in channels:
            trend = self.trends.setdefault(str(c.get("name")),
                                           deque([0.0] * TREND, maxlen=TREND))
            trend.append(float(c.get("messages_per_min") or 0.0))

    def cells_of(self, entry: dict[str, Any], now: float) -> dict[str, Cell]:
        name = str(entry.get("name"))
        return channel_cells(entry, list(self.trends.get(name, ())))

    def key_of(self, entry: dict[str, Any]) -> str:
        return str(entry.get("name"))

    def names(self) -> list[str]:
        """The channels shown, top to bottom."""
        return [str(row.key.value) for row in self.ordered_rows]

    def _matches(self, channel: dict[str, Any]) -> bool:
        return self.filter_text.lower() in str(channel.get("name", "")).lower()
