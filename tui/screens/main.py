"""The main screen: header, figures, sparklines, clients, channels, events, footer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input

from chathub.admin.client import call

from ..feed import LINK_ERRORS, Feed, FeedOptions
from ..messages import (
    ChannelsReceived,
    ClientsReceived,
    DaemonEvent,
    FeedProblem,
    KickDone,
    LinkChanged,
    LinkState,
    StatsReceived,
)
from ..widgets import (
    ChannelsTable,
    ClientsTable,
    EventLog,
    NodesPanel,
    StatsPanel,
    StatusHeader,
    Trends,
)
from .channel import ChannelScreen
from .kick import KickScreen
from .moderation import ModerationScreen


class DashScreen(Screen[None]):
    """The dashboard's one view of a daemon, fed by a :class:`~chathub.tui.feed.Feed` worker.

    The worker posts messages; the handlers here store what they carry and, unless
    updates are paused, show it. Kicks go out in their own workers.
    """

    BINDINGS = [
        Binding("k", "kick", "Kick"),
        Binding("m", "moderate", "Moderate"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("p", "pause", "Pause"),
        Binding("q", "app.quit", "Quit"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    paused: reactive[bool] = reactive(False, init=False)
    """True while figures, sparklines and the table are frozen (the log keeps going)."""
    link: reactive[LinkState] = reactive(LinkState.CONNECTING, init=False)
    """The state of the admin connection, as last reported by the feed."""

    def __init__(self, socket_path: Path, options: FeedOptions) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.options = options
        #: the last ``stats`` received (shown unless paused)
        self.latest_stats: dict[str, Any] = {}
        #: the last ``clients`` list received (shown unless paused)
        self.latest_clients: list[dict[str, Any]] = []
        #: the last ``channels`` list received (shown unless paused)
        self.latest_channels: list[dict[str, Any]] = []
        #: the table ``s`` sorts and ``/`` filters: the one that last had focus
        self.active: ClientsTable | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        with Horizontal(id="top"):
            yield StatsPanel(id="stats")
            yield Trends(id="trends")
        yield Input(placeholder="filter by name (Enter: keep, Esc: clear)", id="filter")
        with Horizontal(id="middle"):
            yield ClientsTable(id="clients")
            yield ChannelsTable(id="channels")
        with Horizontal(id="bottom"):
            yield EventLog(id="events")
            yield NodesPanel(id="nodes")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#stats").border_title = "Node"
        self.query_one("#trends").border_title = "Last 3 minutes"
        self.query_one("#events").border_title = "Events"
        self.query_one("#nodes").border_title = "Nodes (* this one)"
        self.query_one(ChannelsTable).border_title = "Channels"
        table = self.query_one("#clients", ClientsTable)
        table.border_title = "Clients"
        table.focus()
        self.active = table
        self.add_class("-stale")
        self.run_feed()

    # -- the worker ---------------------------------------------------------------------

    @work(exclusive=True, group="feed")
    async def run_feed(self) -> None:
        """Keep the admin link open for as long as the screen lives."""
        await Feed(self.socket_path, self.post_message, self.options).run()

    async def _kick(self, user: str, reason: str) -> None:
        """Send one ``kick`` on a connection of its own (run as a worker per user)."""
        fields = {"reason": reason} if reason else {}
        try:
            reply = await call(self.socket_path, "kick", user=user, **fields)
        except LINK_ERRORS as exc:
            self.post_message(KickDone(user, error=str(exc) or type(exc).__name__))
            return
        self.post_message(KickDone(user, closed=int(reply.get("closed", 0))))

    # -- messages from workers ----------------------------------------------------------

    def on_link_changed(self, message: LinkChanged) -> None:
        header = self.query_one(StatusHeader)
        log = self.query_one(EventLog)
        previous, self.link = self.link, message.state
        header.state = message.state
        if message.state is LinkState.CONNECTED:
            hello = message.hello or {}
            header.node = str(hello.get("node", ""))
            header.detail = ""
            log.note(f"connected to node {hello.get('node')} (pid {hello.get('pid')}, "
                     f"chathub {hello.get('version')})", "bold green")
            return
        header.uptime = None
        retry = f"retry in {message.retry_in:g}s" if message.retry_in else ""
        header.detail = retry
        if message.state is LinkState.RECONNECTING:
            log.note(f"lost the daemon: {message.detail}", "bold red")
        elif message.state is LinkState.DOWN and previous is not LinkState.DOWN:
            log.note(f"daemon not running: {message.detail}", "bold red")

    def on_stats_received(self, message: StatsReceived) -> None:
        self.latest_stats = message.stats
        header = self.query_one(StatusHeader)
        header.uptime = message.stats.get("uptime_s")
        header.node = str(message.stats.get("node") or header.node)
        trends = self.query_one(Trends)
        trends.record(message.stats)
        if not self.paused:
            self._show_stats(message.stats)
            trends.show()

    def on_clients_received(self, message: ClientsReceived) -> None:
        self.latest_clients = message.clients
        if not self.paused:
            self.query_one("#clients", ClientsTable).sync(message.clients)

    def on_channels_received(self, message: ChannelsReceived) -> None:
        self.latest_channels = message.channels
        table = self.query_one(ChannelsTable)
        table.record(message.channels)  # the trend keeps its time axis while paused
        if not self.paused:
            table.sync(message.channels)

    def on_daemon_event(self, message: DaemonEvent) -> None:
        self.query_one(EventLog).add_event(message.event)
        if message.event.get("event") == "delete":  # by anyone: no open screen shows them
            ids = [str(i) for i in message.event.get("ids") or []]
            for screen in self.app.screen_stack:
                if isinstance(screen, ModerationScreen):
                    screen.forget(ids)

    def on_feed_problem(self, message: FeedProblem) -> None:
        self.query_one(EventLog).note(message.text, "yellow")

    def on_kick_done(self, message: KickDone) -> None:
        if message.error is not None:
            self.query_one(EventLog).note(f"kick {message.user} failed: {message.error}", "bold red")
            self.notify(f"Could not kick {message.user}: {message.error}", severity="error")
        else:
            n = message.closed or 0
            self.notify(f"Kicked {message.user} ({n} connection{'s' if n != 1 else ''})")

    def _show_stats(self, stats: dict[str, Any]) -> None:
        self.query_one(StatsPanel).stats = stats
        nodes = self.query_one(NodesPanel)
        nodes.own = str(stats.get("node") or "")
        cluster = stats.get("cluster")
        nodes.nodes = cluster if isinstance(cluster, list) else []

    # -- state --------------------------------------------------------------------------

    def watch_paused(self, paused: bool) -> None:
        self.query_one(StatusHeader).paused = paused
        if not paused:
            self._show_stats(self.latest_stats)
            self.query_one(Trends).show()
            self.query_one("#clients", ClientsTable).sync(self.latest_clients)
            self.query_one(ChannelsTable).sync(self.latest_channels)

    def watch_link(self, state: LinkState) -> None:
        self.set_class(state is not LinkState.CONNECTED, "-stale")

    # -- actions ------------------------------------------------------------------------

    def on_descendant_focus(self, event: Any) -> None:
        if isinstance(event.widget, ClientsTable):
            self.active = event.widget

    def _table(self) -> ClientsTable:
        return self.active or self.query_one("#clients", ClientsTable)

    @on(DataTable.RowSelected, "#channels")
    def _open_channel(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.app.push_screen(ChannelScreen(self.socket_path, str(event.row_key.value),
                                           self.options))

    def action_kick(self) -> None:
        if isinstance(self.active, ChannelsTable):
            self.notify("Open a channel (Enter) to remove one of its members", severity="warning")
            return
        table = self.query_one("#clients", ClientsTable)
        client = table.selected
        if client is None:
            self.notify("No client selected", severity="warning")
            return
        user = str(client.get("user"))

        def done(reason: str | None) -> None:
            if reason is not None:
                self.run_worker(self._kick(user, reason), group=f"kick-{user}",
                                exclusive=True, exit_on_error=False)

        self.app.push_screen(KickScreen(user, table.connections_of(user)), done)

    def action_moderate(self) -> None:
        self.app.push_screen(ModerationScreen(self.socket_path))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("-shown")
        self._table().filter_text = ""
        self._table().focus()

    def action_sort(self) -> None:
        self._table().cycle_sort()

    def action_pause(self) -> None:
        self.paused = not self.paused

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._table().filter_text = event.value.strip()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.remove_class("-shown")
        self._table().focus()

