"""The figures of the last ``stats`` snapshot, laid out as a small grid."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from .. import format as fmt


def _up(value: Any) -> Text:
    if value is None:
        return Text("—")
    return Text("● up", style="green") if value else Text("✕ down", style="bold red")


class StatsPanel(Widget):
    """The node's figures from ``stats``: connections, rates, queues, limits, services."""

    stats: reactive[dict[str, Any]] = reactive(dict, always_update=True)
    """the last snapshot shown (empty before the first)"""

    def rows(self) -> list[tuple[str, Text | str]]:
        """(label, value) pairs in display order; also what tests read."""
        s = self.stats
        get = s.get
        return [
            ("connections", fmt.count(get("connections"))),
            ("users", fmt.count(get("users"))),
            ("messages/s", fmt.rate(get("messages_per_s"))),
            ("deliveries/s", fmt.rate(get("deliveries_per_s"))),
            ("broadcast queue", fmt.count(get("broadcast_queue"))),
            ("whisper queue", fmt.count(get("whisper_queue"))),
            ("largest backlog", fmt.size(get("max_backlog"))),
            ("rate-limit hits", fmt.count(get("rate_limit_hits"))),
            ("  last minute", fmt.count(get("rate_limit_hits_last_minute"))),
            ("slow consumers", fmt.count(get("slow_consumers"))),
            ("flush backlog", fmt.count(get("flush_backlog"))),
            ("sessions waiting", fmt.count(get("sessions_waiting"))),
            ("kicks", fmt.count(get("kicks"))),
            ("valkey", _up(get("valkey_up"))),
            ("postgres", _up(get("postgres_up"))),
        ]

    def value(self, label: str) -> str:
        """The shown value for ``label``, as plain text."""
        for name, value in self.rows():
            if name == label:
                return value.plain if isinstance(value, Text) else value
        raise KeyError(label)

    def render(self) -> Table:
        # On a narrow terminal the labels give way (cut with …), never the figures:
        # a value column is as wide as its widest value, the labels share the rest.
        grid = Table.grid(padding=(0, 1), expand=True)
        for _ in range(3):
            grid.add_column(style="dim", no_wrap=True, overflow="ellipsis", ratio=1)
            grid.add_column(justify="right", no_wrap=True)
        cells = self.rows()
        per_column = -(-len(cells) // 3)
        columns = [cells[i:i + per_column] for i in range(0, len(cells), per_column)]
        for i in range(per_column):
            row: list[Text | str] = []
            for col in columns:
                label, value = col[i] if i < len(col) else ("", "")
                row += [label, value]
            grid.add_row(*row)
        return grid
