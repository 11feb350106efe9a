"""The top line: which node, how long it has been up, and whether we are attached."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from .. import format as fmt
from ..messages import LinkState

#: how each link state is shown
BADGES: dict[LinkState, tuple[str, str]] = {
    LinkState.CONNECTING: ("◌ connecting", "bold yellow"),
    LinkState.CONNECTED: ("● connected", "bold green"),
    LinkState.RECONNECTING: ("◌ reconnecting", "bold yellow"),
    LinkState.DOWN: ("✕ daemon not running", "bold red"),
}


class StatusHeader(Widget):
    """One line: title, node id, uptime, connection state, and whether updates are paused."""

    node: reactive[str] = reactive("")
    """the node id from the daemon's ``hello`` (kept while disconnected)"""
    uptime: reactive[float | None] = reactive(None)
    """the daemon's uptime in seconds, from the last ``stats``; None when not connected"""
    state: reactive[LinkState] = reactive(LinkState.CONNECTING)
    """the link to the admin socket"""
    detail: reactive[str] = reactive("")
    """a short note after the state (the retry delay, the error)"""
    paused: reactive[bool] = reactive(False)
    """True while the figures are frozen by ``p``"""

    def watch_state(self, state: LinkState) -> None:
        for s in LinkState:
            self.set_class(s is state, f"-{s.name.lower()}")

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" chathub dash ", style="bold")
        text.append("│ node ", style="dim")
        text.append(self.node or "—", style="bold")
        text.append(" │ up ", style="dim")
        text.append(fmt.duration(self.uptime))
        text.append(" │ ", style="dim")
        label, style = BADGES[self.state]
        text.append(label, style=style)
        if self.detail:
            text.append(f" — {self.detail}", style="dim")
        if self.paused:
            text.append("  ⏸ PAUSED", style="bold reverse yellow")
        return text
