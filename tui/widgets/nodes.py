"""The hubs sharing this daemon's Valkey: one row per node, from ``stats.cluster``."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table
from textual.reactive import reactive
from textual.widget import Widget

from .. import format as fmt


class NodesPanel(Widget):
    """Every live node: its id, its connections and how long ago it last beat."""

    nodes: reactive[list[dict[str, Any]]] = reactive(list, always_update=True)
    """the ``cluster`` list of the last ``stats`` (empty before the first)"""
    own: reactive[str] = reactive("")
    """this daemon's node id, marked in the list"""

    def rows(self) -> list[tuple[str, str, str]]:
        """(node, connections, last heartbeat) in display order; also what tests read."""
        now = time.time() * 1000
        out = []
        for n in self.nodes:
            if not isinstance(n, dict):
                continue
            name = str(n.get("node", "?")) + (" *" if n.get("node") == self.own else "")
            last = n.get("last")
            ago = fmt.duration((now - float(last)) / 1000) if isinstance(last, (int, float)) else "—"
            out.append((name, fmt.count(n.get("connections")), ago))
        return out

    def render(self) -> Table:
        table = Table(expand=True, box=None, padding=(0, 1), show_edge=False)
        table.add_column("node", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("conns", justify="right", no_wrap=True)
        table.add_column("beat", justify="right", no_wrap=True)
        rows = self.rows()
        for row in rows:
            table.add_row(*row)
        if not rows:
            table.add_row("—", "", "")
        total = sum(int(n.get("connections") or 0) for n in self.nodes if isinstance(n, dict))
        if len(rows) > 1:
            table.add_row("total", fmt.count(total), "", style="bold")
        return table
