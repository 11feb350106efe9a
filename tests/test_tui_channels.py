"""The dashboard's channels panel and channel screen against a real in-process daemon."""

from __future__ import annotations

from chathub.tui.app import DashApp
from chathub.tui.feed import FeedOptions
from chathub.tui.screens import ChannelScreen, DashScreen, KickScreen
from chathub.tui.widgets import ChannelsTable, EventLog
from chathub.tui.widgets.channels import spark
from textual.widgets import Static

from chathub.server import Daemon
from tests.helpers import Chatter, wait_for
from tests.test_tui import FAST, SIZE, connected, logged


async def subscribe(c: Chatter, channel: str) -> None:
    await c.send(type="subscribe", channel=channel)
    assert (await c.recv_type("subscribed", "error"))["type"] == "subscribed"


def channels_of(app: DashApp) -> tuple[DashScreen, ChannelsTable]:
    main = app.screen_stack[0]
    assert isinstance(main, DashScreen)
    return main, main.query_one(ChannelsTable)


def test_spark_scales_from_zero_to_the_largest():
    assert spark([0, 0]) == "▁▁"
    assert spark([0, 5, 10]) == "▁▅█"


async def test_channels_panel_lists_sorts_and_filters(daemon: Daemon) -> None:
    """Rows per channel with users and messages/min; `s` sorts and `/` filters the focused table."""
    app = DashApp(daemon.cfg.admin_socket, options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        main, table = channels_of(app)
        await connected(app, daemon.node_id)
        async with (await Chatter.connect(daemon.port, "ann") as ann,
                    await Chatter.connect(daemon.port, "bob")):
            await subscribe(ann, "games")
            for i in range(3):
                await ann.chat(f"g{i}", channel="games")
            await wait_for(lambda: table.names() == ["games", "general"]
                           and table.get_cell("games", "rate").key > 0
                           and table.get_cell("general", "users").text == "2",
                           what="both channels with their figures")
            assert table.get_cell("games", "users").text == "1"
            await wait_for(lambda: set(table.get_cell("games", "trend").text) != {"▁"},
                           what="a trend for games")
            events = main.query_one(EventLog)
            await wait_for(lambda: any("channel games created" in line for line in events.entries),
                           what="the channel_created event in the log")
            table.focus()
            await pilot.pause()
            await pilot.press("s")
            assert table.sort_column == "users"
            assert table.names() == ["general", "games"]
            await pilot.press("slash", "g", "a", "m")
            await wait_for(lambda: table.names() == ["games"], what="the filter applied")
            assert "1 of 2" in str(table.border_title)
            assert main.query_one("#clients").filter_text == ""  # the other table is untouched
            await pilot.press("escape")
            await wait_for(lambda: table.names() == ["general", "games"], what="filter cleared")
            await pilot.press("k")  # kicks happen on a channel's screen, not here
            assert not isinstance(app.screen, KickScreen)


def title_of(screen: ChannelScreen) -> str:
    """The channel screen's title line, as plain text."""
    return str(screen.query_one("#channel-title", Static).content)


async def open_channel(app: DashApp, pilot, name: str) -> ChannelScreen:
    _, table = channels_of(app)
    await wait_for(lambda: name in table.names(), what=f"{name} listed")
    table.focus()
    table.move_cursor(row=table.names().index(name))
    await pilot.press("enter")
    await wait_for(lambda: isinstance(app.screen, ChannelScreen), what="the channel screen")
    screen = app.screen
    assert isinstance(screen, ChannelScreen) and screen.channel == name
    return screen


async def test_enter_opens_a_channel_with_members_and_live_messages(daemon: Daemon) -> None:
    """Enter on a channel: its members and its messages as they are sent; Escape goes back."""
    app = DashApp(daemon.cfg.admin_socket, options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app, daemon.node_id)
        async with (await Chatter.connect(daemon.port, "ann") as ann,
                    await Chatter.connect(daemon.port, "bob") as bob):
            await subscribe(ann, "games")
            await subscribe(bob, "games")
            await ann.chat("before", channel="games")
            screen = await open_channel(app, pilot, "games")
            await wait_for(lambda: screen.members == ["ann", "bob"], what="the members")
            await wait_for(lambda: screen.lines == ["ann: before"], what="the history")
            await bob.chat("live one", channel="games")
            await ann.chat("not here")  # general: not shown on the games screen
            await ann.chat("live two", channel="games")
            await wait_for(lambda: screen.lines[-1:] == ["ann: live two"], what="live messages")
            assert screen.lines == ["ann: before", "bob: live one", "ann: live two"]
            await bob.send(type="unsubscribe", channel="games")
            await wait_for(lambda: screen.members == ["ann"], what="bob gone from the members")
            await wait_for(lambda: "games  1 user · 1 subscription (" in title_of(screen),
                           what="one user, in the singular")
            await pilot.press("escape")
            assert isinstance(app.screen, DashScreen)


async def test_k_removes_a_member_from_the_channel_after_confirming(daemon: Daemon) -> None:
    """`k` on a member asks first; Escape cancels; confirming unsubscribes them (kicked)."""
    app = DashApp(daemon.cfg.admin_socket, options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        await connected(app, daemon.node_id)
        async with (await Chatter.connect(daemon.port, "ann") as ann,
                    await Chatter.connect(daemon.port, "bob") as bob):
            await subscribe(ann, "games")
            await subscribe(bob, "games")
            screen = await open_channel(app, pilot, "games")
            await wait_for(lambda: screen.members == ["ann", "bob"], what="the members")
            await pilot.press("down", "k")
            assert isinstance(app.screen, KickScreen)
            assert (app.screen.user, app.screen.channel) == ("bob", "games")
            await pilot.press("escape")
            assert app.screen is screen

            await pilot.press("up", "k")
            assert isinstance(app.screen, KickScreen) and app.screen.user == "ann"
            await pilot.press(*"off topic", "enter")
            frame = await ann.recv_type("unsubscribed")
            assert frame == {"type": "unsubscribed", "channel": "games", "reason": "kicked",
                             "message": "off topic"}  # the reason typed in the dialog
            await wait_for(lambda: screen.members == ["bob"], what="ann gone from the members")
            left = await bob.recv_type("leave")
            assert (left["user"], left["channel"]) == ("ann", "games")
            await ann.chat("still connected")
            assert (await ann.recv_type("chat"))["text"] == "still connected"


async def test_joins_and_leaves_are_logged_as_lines_and_refresh_the_counts(daemon: Daemon) -> None:
    """A join or leave of a channel is a readable line in the log (not the raw event) and
    updates the channel's user count at once, well before the next poll."""
    slow_poll = FeedOptions(min_poll_gap=0.05, poll_interval=60.0)  # only events refresh
    app = DashApp(daemon.cfg.admin_socket, options=slow_poll)
    async with app.run_test(size=SIZE):
        main, table = channels_of(app)
        await connected(app, daemon.node_id)
        events = main.query_one(EventLog)
        async with (await Chatter.connect(daemon.port, "ann") as ann,
                    await Chatter.connect(daemon.port, "bob") as bob):
            await subscribe(ann, "games")
            await wait_for(lambda: "games" in table.names(), what="games listed")
            await subscribe(bob, "games")
            await wait_for(lambda: table.get_cell("games", "users").text == "2",
                           what="games counted with 2 users after bob's join")
            await bob.send(type="unsubscribe", channel="games")
            await wait_for(lambda: table.get_cell("games", "users").text == "1",
                           what="games back to 1 user after bob's leave")
            await wait_for(lambda: logged(events, "- bob left games (left)"), what="bob's leave")
        assert logged(events, "+ ann joined games") and logged(events, "+ bob joined games")
        assert not [line for line in events.entries if "{'" in line], list(events.entries)
