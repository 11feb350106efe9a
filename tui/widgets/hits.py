"""The moderation screen's search results: one row per message hit, newest first.

Rows are keyed by message id. A page of hits replaces the rows (a new query) or is
appended below them (older results); a deleted message's row is removed.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from .. import format as fmt
from .rows import Table, cursor_key

#: characters of a message's text shown in its row (the rest is cut with "…")
MAX_TEXT = 300
#: how a matched word is drawn
MARK_STYLE = "bold reverse"


def marked(text: str, marks: list[list[int]], limit: int = MAX_TEXT) -> Text:
    """``text`` with each [start, end) span of ``marks`` drawn in :data:`MARK_STYLE`,
    cut to ``limit`` characters. Spans outside the text are ignored."""
    shown = Text(text if len(text) <= limit else text[: limit - 1] + "…", no_wrap=True)
    for span in marks:
        if isinstance(span, (list, tuple)) and len(span) == 2:
            start, end = int(span[0]), min(int(span[1]), len(shown))
            if 0 <= start < end:
                shown.stylize(MARK_STYLE, start, end)
    return shown


def sender(hit: dict[str, Any]) -> str:
    """Who sent a hit (``from``, and ``→ to`` for a whisper)."""
    return str(hit.get("from", "?")) + (f" → {hit['to']}" if hit.get("to") else "")


class HitsTable(Table[Any]):
    """Search hits: id, channel, sender, time, text with the matched words marked."""

    COLUMNS = (("id", "id"), ("channel", "channel"), ("from", "from"), ("time", "time"),
               ("text", "text"))

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        #: message id -> the hit shown in that row
        self.hits: dict[str, dict[str, Any]] = {}

    def on_mount(self) -> None:
        for key, label in self.COLUMNS:
            self.add_column(label, key=key)

    def show(self, hits: list[dict[str, Any]], append: bool = False) -> None:
        """Show a page of hits: instead of the rows shown, or below them (``append``).

        A hit already shown (a page overlapping the previous one) is not added twice.
        """
        if not append:
            self.clear()
            self.hits.clear()
        for hit in hits:
            mid = str(hit.get("id", ""))
            if not mid or mid in self.hits:
                continue
            self.hits[mid] = hit
            self.add_row(mid, str(hit.get("channel") or "—"), sender(hit),
                         fmt.stamp(hit.get("ts")),
                         marked(str(hit.get("text", "")), hit.get("marks") or []), key=mid)

    def remove(self, ids: list[str]) -> int:
        """Take out the rows of these message ids (deleted); how many were shown."""
        gone = [i for i in ids if i in self.hits]
        for mid in gone:
            self.remove_row(mid)
            del self.hits[mid]
        return len(gone)

    def ids(self) -> list[str]:
        """The message ids shown, top to bottom."""
        return [str(row.key.value) for row in self.ordered_rows]

    @property
    def selected(self) -> dict[str, Any] | None:
        """The hit under the cursor, if any."""
        key = cursor_key(self)
        return None if key is None else self.hits.get(key)
