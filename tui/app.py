"""``chathub dash``: a live view of one daemon, attached over its admin socket.

    DashApp("/var/lib/chathub/admin.sock").run()

The dashboard speaks only the admin protocol (docs/admin-protocol.md) through
:class:`chathub.admin.client.AdminClient`; it imports nothing else of the daemon.
docs/dashboard.md describes what it shows and its keys.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.screen import Screen

from .feed import FeedOptions
from .screens import DashScreen


class DashApp(App[None]):
    """The dashboard application: one :class:`DashScreen` on one admin socket.

    Args:
        socket_path: the daemon's admin socket (``<data_dir>/admin.sock`` by default).
        options: the feed's timings (poll interval, reconnect backoff); the
            defaults suit a person watching.
    """

    CSS_PATH = "dash.tcss"
    TITLE = "chathub dash"

    def __init__(self, socket_path: str | Path, *, options: FeedOptions | None = None) -> None:
        super().__init__()
        self.socket_path = Path(socket_path)
        self.options = options or FeedOptions()

    def get_default_screen(self) -> Screen[None]:
        return DashScreen(self.socket_path, self.options)
