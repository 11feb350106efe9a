"""The dashboard (tui/) against a real in-process daemon, driven with Textual's Pilot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from chathub.tui.app import DashApp
from chathub.tui.feed import Feed, FeedOptions
from chathub.tui.messages import LinkChanged, LinkState
from chathub.tui.screens import DashScreen, KickScreen
from chathub.tui.widgets import ClientsTable, EventLog, NodesPanel, StatsPanel, StatusHeader, Trends

from chathub.server import Daemon
from tests.conftest import DaemonFactory
from tests.helpers import Chatter, wait_for

#: short timings so that reconnects and refreshes do not slow the suite
FAST = FeedOptions(min_poll_gap=0.05, retry_min=0.05, retry_max=0.3)
SIZE = (160, 45)


def dash(socket: Path) -> DashApp:
    return DashApp(socket, options=FAST)


def parts(app: DashApp) -> tuple[DashScreen, StatusHeader, ClientsTable, EventLog]:
    """The main screen and the widgets tests read (also while a modal is on top)."""
    main = app.screen_stack[0]
    assert isinstance(main, DashScreen)
    return main, main.query_one(StatusHeader), main.query_one(ClientsTable), main.query_one(EventLog)


def logged(log: EventLog, text: str) -> bool:
    return any(text in line for line in log.entries)


async def connected(app: DashApp, node: str) -> None:
    """Wait until the dashboard is attached to ``node`` and its subscription is live."""
    _, header, _, _ = parts(app)
    await wait_for(lambda: header.state is LinkState.CONNECTED and header.node == node,
                   what=f"the dashboard subscribed to {node}")


async def test_header_and_figures_follow_the_daemon(daemon: Daemon) -> None:
    """The header names the node and its uptime; figures, sparklines and the log update."""
    app = dash(daemon.cfg.admin_socket)
    async with app.run_test(size=SIZE):
        main, header, _, log = parts(app)
        await connected(app, daemon.node_id)
        panel, trends = main.query_one(StatsPanel), main.query_one(Trends)
        async with await Chatter.connect(daemon.port, "alice") as alice:
            for i in range(5):
                await alice.chat(f"hello {i}")
            await wait_for(lambda: panel.value("connections") == "1"
                           and panel.stats.get("messages_in", 0) >= 5, what="stats figures")
            await wait_for(lambda: max(trends.samples["messages_per_s"]) > 0,
                           what="a messages/s sample")
            assert panel.value("users") == "1"
            assert panel.value("valkey") == "● up" and panel.value("postgres") == "● up"
            assert header.uptime is not None
            rendered = header.render().plain
            assert daemon.node_id in rendered and "connected" in rendered
            assert logged(log, "connected to node") and logged(log, "alice connected from")


async def test_rows_come_and_go_in_place(daemon: Daemon) -> None:
    """Rows are added and removed by session key, never by clearing; the cursor keeps its client."""
    app = dash(daemon.cfg.admin_socket)
    async with app.run_test(size=SIZE) as pilot:
        _, _, table, log = parts(app)

        def no_clear(*args: Any, **kwargs: Any) -> ClientsTable:
            raise AssertionError("the clients table was cleared")

        table.clear = no_clear  # type: ignore[method-assign]
        await connected(app, daemon.node_id)
        alice = await Chatter.connect(daemon.port, "alice")
        bob = await Chatter.connect(daemon.port, "bob")
        await wait_for(lambda: table.users() == ["alice", "bob"], what="two rows")
        await pilot.press("down")
        assert table.selected is not None and table.selected["user"] == "bob"

        aaron = await Chatter.connect(daemon.port, "aaron")  # sorts above the cursor
        await wait_for(lambda: table.users() == ["aaron", "alice", "bob"], what="a third row")
        assert table.selected["user"] == "bob"

        await bob.chat("one")
        await bob.chat("two")
        bob_key = bob.welcome["session"]
        await wait_for(lambda: table.get_cell(bob_key, "sent").text == "2", what="bob's sent count")
        await bob.send(type="subscribe", channel="games")
        await wait_for(lambda: table.get_cell(bob_key, "channels").text == "games general",
                       what="bob's channels, games added")
        assert table.get_cell(alice.welcome["session"], "channels").text == "general"

        await aaron.close()
        await wait_for(lambda: table.users() == ["alice", "bob"], what="aaron's row removed")
        assert table.selected["user"] == "bob"
        await bob.close()
        await wait_for(lambda: table.users() == ["alice"], what="bob's row removed")
        assert logged(log, "bob disconnected")
        await alice.close()
        await wait_for(lambda: table.row_count == 0, what="an empty table")


async def test_sort_filter_and_pause_keys(daemon: Daemon) -> None:
    """`s` cycles the sort column, `/` filters by name, `p` freezes the table until pressed again."""
    app = dash(daemon.cfg.admin_socket)
    async with app.run_test(size=SIZE) as pilot:
        main, header, table, _ = parts(app)
        await connected(app, daemon.node_id)
        async with (await Chatter.connect(daemon.port, "alice"),
                    await Chatter.connect(daemon.port, "bob") as bob):
            for i in range(3):
                await bob.chat(f"b{i}")
            await wait_for(lambda: table.users() == ["alice", "bob"]
                           and table.get_cell(bob.welcome["session"], "sent").text == "3",
                           what="both rows, bob's messages counted")
            await pilot.press("s", "s", "s")
            assert table.sort_column == "sent"
            assert table.users() == ["bob", "alice"]
            assert "sent ▼" in str(table.ordered_columns[3].label)

            await pilot.press("slash", "b", "o")
            await wait_for(lambda: table.users() == ["bob"], what="the filter applied")
            assert table.border_title is not None and "1 of 2" in str(table.border_title)
            await pilot.press("escape")
            await wait_for(lambda: table.users() == ["bob", "alice"], what="the filter cleared")
            assert table.has_focus

            await pilot.press("p")
            assert main.paused and header.paused
            async with await Chatter.connect(daemon.port, "carol"):
                await wait_for(lambda: len(main.latest_clients) == 3, what="carol in the feed")
                assert table.users() == ["bob", "alice"]
                await pilot.press("p")
                await wait_for(lambda: sorted(table.users()) == ["alice", "bob", "carol"],
                               what="the table updated after unpausing")


async def test_kick_with_confirmation(daemon: Daemon) -> None:
    """`k` asks first; Escape cancels; confirming sends kick and the client gets 4001."""
    app = dash(daemon.cfg.admin_socket)
    async with app.run_test(size=SIZE) as pilot:
        _, _, table, log = parts(app)
        await connected(app, daemon.node_id)
        alice = await Chatter.connect(daemon.port, "alice")
        bob = await Chatter.connect(daemon.port, "bob")
        await wait_for(lambda: table.users() == ["alice", "bob"], what="two rows")

        await pilot.press("down", "k")
        assert isinstance(app.screen, KickScreen) and app.screen.user == "bob"
        await pilot.press("escape")
        assert not isinstance(app.screen, KickScreen)

        await pilot.press("up", "k")
        assert isinstance(app.screen, KickScreen) and app.screen.user == "alice"
        await pilot.press(*"spam", "enter")
        frame = await alice.recv_type("kicked")
        assert frame["reason"] == "spam"
        await alice.ws.wait_closed()
        assert alice.ws.close_code == 4001
        await wait_for(lambda: table.users() == ["bob"], what="alice's row removed")
        await wait_for(lambda: logged(log, "alice kicked: spam"), what="the kick event")
        assert bob.ws.close_code is None  # the cancelled kick sent nothing
        await bob.close()


async def test_survives_a_daemon_restart(daemon: Daemon, daemon_factory: DaemonFactory) -> None:
    """When the daemon stops the dashboard says so, then reconnects to its successor."""
    socket = daemon.cfg.admin_socket
    app = dash(socket)
    async with app.run_test(size=SIZE):
        main, header, table, log = parts(app)
        await connected(app, daemon.node_id)
        alice = await Chatter.connect(daemon.port, "alice")
        await wait_for(lambda: table.users() == ["alice"], what="alice's row")

        await daemon.stop()
        await wait_for(lambda: header.state is LinkState.DOWN, what="the daemon reported down")
        assert "daemon not running" in header.render().plain
        assert logged(log, "lost the daemon")
        assert main.has_class("-stale")
        await alice.ws.wait_closed()

        successor = await daemon_factory(admin={"socket": str(socket)}, hub={"node_id": "second"})
        await connected(app, "second")
        assert not main.has_class("-stale")
        await wait_for(lambda: table.row_count == 0, what="the old rows gone")
        async with await Chatter.connect(successor.port, "bob"):
            await wait_for(lambda: table.users() == ["bob"], what="bob on the new daemon")
        assert logged(log, "connected to node second")


async def test_waits_for_a_daemon_that_is_not_there(short_dir: Path) -> None:
    """With nothing on the socket the dashboard says so, keeps retrying, and keys do not fail."""
    app = dash(short_dir / "nobody.sock")
    async with app.run_test(size=SIZE) as pilot:
        _, header, table, log = parts(app)
        await wait_for(lambda: header.state is LinkState.DOWN, what="daemon not running")
        await pilot.press("k", "s", "p", "p")
        assert not isinstance(app.screen, KickScreen)
        assert table.row_count == 0
        assert logged(log, "daemon not running")
        assert "retry in" in header.render().plain


async def test_feed_backs_off_between_attempts(short_dir: Path) -> None:
    """The feed retries a missing daemon with a doubling delay, capped at retry_max."""
    posted: list[LinkChanged] = []
    opts = FeedOptions(retry_min=0.01, retry_max=0.04)
    feed = Feed(short_dir / "nobody.sock",
                lambda m: posted.append(m) if isinstance(m, LinkChanged) else None, opts)
    task = asyncio.create_task(feed.run())
    try:
        await wait_for(lambda: len(posted) >= 6, what="five failed attempts")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert posted[0].state is LinkState.CONNECTING
    assert all(m.state is LinkState.DOWN for m in posted[1:])
    assert [m.retry_in for m in posted[1:6]] == [0.01, 0.02, 0.04, 0.04, 0.04]


async def test_nodes_panel_lists_every_hub(daemon_factory: DaemonFactory) -> None:
    """Two hubs on one Valkey: the nodes panel lists both, marks this one, and sums connections."""
    here = await daemon_factory(hub={"node_id": "dash-a"})
    there = await daemon_factory(hub={"node_id": "dash-b"})
    app = dash(here.cfg.admin_socket)
    async with app.run_test(size=SIZE):
        main, _, _, _ = parts(app)
        await connected(app, "dash-a")
        panel = main.query_one(NodesPanel)
        async with await Chatter.connect(there.port, "far"), await Chatter.connect(there.port, "away"):
            await there.node.nodes.beat()  # a heartbeat now instead of within node_ttl / 3
            await wait_for(lambda: [(r[0], r[1]) for r in panel.rows()] == [("dash-a *", "0"), ("dash-b", "2")],
                           what="both nodes listed with their connections")


def test_clients_table_shows_backlog_and_time_over_limit():
    """The backlog column shows bytes; the over-limit column seconds, blank while under it."""
    from tui.widgets.clients import cells

    behind = cells({"user": "u", "session": "s", "backlog": 3 << 20, "over_limit_s": 2.46}, 0.0)
    assert (behind["backlog"].text, behind["over"].text) == ("3.0 MB", "2.5s")
    assert cells({"user": "u", "session": "s", "backlog": 10}, 0.0)["over"].text == ""
