"""The live table of connections, updated in place by row key."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

from .. import format as fmt
from .rows import Table, cursor_key


@dataclass(frozen=True, slots=True)
class Cell:
    """A table cell: the text shown and the value it sorts by."""

    text: str
    key: Any
    right: bool = False

    def __rich__(self) -> Text:
        return Text(self.text, justify="right" if self.right else "left", no_wrap=True)


@dataclass(frozen=True)
class Column:
    """A column of the table: its key, its header, and its natural sort direction."""

    key: str
    label: str
    descending: bool
    right: bool = False


COLUMNS = (
    Column("user", "user", descending=False),
    Column("address", "address", descending=False),
    Column("age", "connected for", descending=True, right=True),
    Column("sent", "sent", descending=True, right=True),
    Column("backlog", "backlog", descending=True, right=True),
    Column("over", "over limit", descending=True, right=True),
    Column("hits", "rate-limit hits", descending=True, right=True),
    Column("channels", "channels", descending=False),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)


def cells(client: dict[str, Any], now: float) -> dict[str, Cell]:
    """The cells of one ``clients`` entry; ``now`` is epoch seconds."""
    user = str(client.get("user", "?"))
    connected_at = int(client.get("connected_at") or 0)
    sent = int(client.get("chats_sent") or 0) + int(client.get("whispers_sent") or 0)
    backlog = int(client.get("backlog") or 0)
    # seconds the backlog has stayed above client_queue_limit; past write_timeout: cut (4002)
    over = float(client.get("over_limit_s") or 0.0)
    hits = int(client.get("rate_limit_hits") or 0)
    addr = str(client.get("remote_addr") or "")
    joined = [str(c) for c in client.get("channels") or []]
    return {
        "user": Cell(user, user.lower()),
        "address": Cell(addr, addr),
        # a longer connection sorts first: the key is the negated start time
        "age": Cell(fmt.duration(now - connected_at / 1000), -connected_at, right=True),
        "sent": Cell(fmt.count(sent), sent, right=True),
        "backlog": Cell(fmt.size(backlog), backlog, right=True),
        "over": Cell(f"{over:.1f}s" if over else "", over, right=True),
        "hits": Cell(fmt.count(hits), hits, right=True),
        # the channels this connection is in, as the daemon sorts them
        "channels": Cell(" ".join(joined), " ".join(joined)),
    }


class ClientsTable(Table[Cell]):
    """One row per connection (keyed by session id), reconciled with each ``clients`` reply.

    Rows are added and removed as clients come and go and cells are updated only
    when they change, so the cursor stays on its client and nothing flickers.
    """

    sort_column: reactive[str] = reactive("user")
    """the key of the column rows are sorted by (``s`` cycles through them)"""
    filter_text: reactive[str] = reactive("")
    """show only users whose name contains this (case-insensitive)"""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        #: the last ``clients`` reply, unfiltered
        self.clients: list[dict[str, Any]] = []
        #: session id -> the client entry shown in that row
        self._shown: dict[str, dict[str, Any]] = {}
        #: session id -> the cells shown in that row
        self._cells: dict[str, dict[str, Cell]] = {}

    #: the columns, the cells of one entry, and the word in the border title
    COLUMNS: tuple[Column, ...] = COLUMNS
    TITLE = "Clients"

    def cells_of(self, entry: dict[str, Any], now: float) -> dict[str, Cell]:
        """The cells of one entry of the list shown."""
        return cells(entry, now)

    def key_of(self, entry: dict[str, Any]) -> str:
        """The row key of one entry (a session id)."""
        return str(entry.get("session"))

    def on_mount(self) -> None:
        for col in self.COLUMNS:
            self.add_column(self._label(col), key=col.key)

    # -- reading ------------------------------------------------------------------------

    def users(self) -> list[str]:
        """The users shown, top to bottom."""
        return [self._shown[str(row.key.value)]["user"] for row in self.ordered_rows]

    @property
    def selected(self) -> dict[str, Any] | None:
        """The client entry under the cursor, if any."""
        key = self._cursor_key()
        return None if key is None else self._shown.get(key)

    def connections_of(self, user: str) -> int:
        """How many connections ``user`` has in the last reply."""
        return sum(1 for c in self.clients if c.get("user") == user)

    # -- updating -----------------------------------------------------------------------

    def sync(self, clients: list[dict[str, Any]], now: float | None = None) -> None:
        """Make the rows match ``clients`` (filtered), touching only what changed."""
        self.clients = clients
        now = time.time() if now is None else now
        wanted = {self.key_of(c): c for c in clients if self._matches(c)}
        cursor = self._cursor_key()
        reorder = False
        for key in [k for k in self._cells if k not in wanted]:
            self.remove_row(key)
            del self._cells[key]
            del self._shown[key]
        for key, client in wanted.items():
            new = self.cells_of(client, now)
            old = self._cells.get(key)
            if old is None:
                self.add_row(*(new[c.key] for c in self.COLUMNS), key=key)
                reorder = True
            else:
                for col, cell in new.items():
                    if old[col] != cell:
                        self.update_cell(key, col, cell,
                                         update_width=len(cell.text) > len(old[col].text))
                        reorder = reorder or (col == self.sort_column and old[col].key != cell.key)
            self._cells[key] = new
            self._shown[key] = client
        if reorder:
            self._sort()
        self._keep_cursor(cursor)
        self._update_title()

    def cycle_sort(self) -> None:
        """Sort by the next column (wrapping around)."""
        keys = [c.key for c in self.COLUMNS]
        i = keys.index(self.sort_column)
        self.sort_column = keys[(i + 1) % len(keys)]

    def watch_sort_column(self, old: str, new: str) -> None:
        if not self.is_mounted:
            return
        for col in self.COLUMNS:
            self.columns[self._column_key(col.key)].label = self._label(col)
        cursor = self._cursor_key()
        self._sort()
        self._keep_cursor(cursor)
        self._update_title()

    def watch_filter_text(self) -> None:
        if self.is_mounted:
            self.sync(self.clients)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by that column."""
        event.stop()
        self.sort_column = str(event.column_key.value)

    # -- helpers ------------------------------------------------------------------------

    def _matches(self, client: dict[str, Any]) -> bool:
        return self.filter_text.lower() in str(client.get("user", "")).lower()

    def _label(self, col: Column) -> Text:
        arrow = ("▼" if col.descending else "▲") if col.key == self.sort_column else " "
        return Text(f"{col.label} {arrow}", justify="right" if col.right else "left")

    def _column_key(self, key: str) -> Any:
        return next(k for k in self.columns if k.value == key)

    def _sort(self) -> None:
        col = next(c for c in self.COLUMNS if c.key == self.sort_column)
        self.sort(col.key, key=lambda cell: cell.key, reverse=col.descending)

    def _cursor_key(self) -> str | None:
        return cursor_key(self)

    def _keep_cursor(self, key: str | None) -> None:
        if key is not None and key in self._cells:
            row = self.get_row_index(key)
            if row != self.cursor_row:
                self.move_cursor(row=row)

    def _update_title(self) -> None:
        total = len(self.clients)
        shown = len(self._cells)
        title = f"{self.TITLE} {shown}" if shown == total else f"{self.TITLE} {shown} of {total}"
        if self.filter_text:
            title += f" · filter “{self.filter_text}”"
        self.border_title = title
