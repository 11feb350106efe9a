"""The dashboard's moderation screen (``m``): search as you type, delete, ban, mute,
purge and unban, each confirmed first.

Most tests run against the fake daemon (tests/fakeadmin.py with
tests/fakemoderation.py) and assert the requests the screen sent; the last two run
search, ban and unban, and delete and purge, against a real daemon and real WebSocket
clients.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from chathub.tui import format as fmt
from chathub.tui.app import DashApp
from chathub.tui.messages import LinkState, SearchAnswered
from chathub.tui.screens import ConfirmScreen, DashScreen, ModerationScreen, SanctionScreen
from chathub.tui.screens import moderation as mod
from chathub.tui.widgets import BansTable, HitsTable
from chathub.tui.widgets.hits import MARK_STYLE
from textual.widgets import Input, Label
from textual.worker import WorkerState

from chathub.admin.client import call
from chathub.server import Daemon
from tests.fakeadmin import FakeAdmin
from tests.fakemoderation import FakeModeration, hit
from tests.helpers import Chatter, wait_for
from tests.test_bans import admits, closed_banned, refused
from tests.test_delete import history, said
from tests.test_tui import FAST, SIZE, connected, logged, parts
from tests.test_tui_snapshot import REPLIES, STILL

#: a minute ago, so that purge windows of an hour hold these messages
T0 = int(time.time() * 1000) - 60_000


def corpus() -> list[dict[str, Any]]:
    return [hit(f"{T0 + 3}-0", "general", "mallory", "buy cheap pills now"),
            hit(f"{T0 + 2}-0", "games", "mallory", "cheap pills here, cheap"),
            hit(f"{T0 + 1}-0", "general", "ann", "pills are bad for you")]


MUTE = {"scope": "mute", "key": "bob", "user": "bob", "channel": None, "ip": None,
        "reason": "shouting", "until": T0 + 3_600_000, "id": 1, "at": T0, "by": "root"}
CHANNEL_BAN = {"scope": "channel", "key": "games eve", "user": "eve", "channel": "games",
               "ip": None, "reason": "", "until": None, "id": 2, "at": T0, "by": "root"}
IP_BAN = {"scope": "ip", "key": "203.0.113.0/24", "user": None, "channel": None,
          "ip": "203.0.113.0/24", "reason": "abuse", "until": None, "id": 3, "at": T0, "by": "root"}


# -- against the fake daemon --------------------------------------------------------------


async def open_moderation(app: DashApp, pilot: Any) -> ModerationScreen:
    """Press ``m`` on the main screen; the moderation screen, its search box focused."""
    await wait_for(lambda: isinstance(app.screen, DashScreen), what="the main screen")
    await pilot.press("m")
    await wait_for(lambda: isinstance(app.screen, ModerationScreen), what="the moderation screen")
    screen = app.screen
    assert isinstance(screen, ModerationScreen)
    await wait_for(lambda: screen.query_one("#search", Input).has_focus, what="the search box")
    return screen


async def search(pilot: Any, screen: ModerationScreen, words: str, ids: list[str]) -> HitsTable:
    """Type ``words`` and Enter; wait for exactly ``ids``; the results have the focus."""
    await pilot.press(*words, "enter")
    table = screen.query_one(HitsTable)
    await wait_for(lambda: table.ids() == ids, what=f"the hits for {words!r}")
    assert table.has_focus
    return table


def no_failed_workers(app: DashApp) -> None:
    """Workers run with exit_on_error=False: check none of them ended in an exception."""
    failed = [w for w in app.workers if w.state is WorkerState.ERROR]
    assert not failed, f"workers failed: {[(w.name, w.error) for w in failed]}"


@pytest.fixture
async def fake(short_dir: Path) -> FakeAdmin:
    async with FakeAdmin(short_dir / "fake.sock", REPLIES, FakeModeration(corpus())) as f:
        yield f


def moderation_of(fake: FakeAdmin) -> FakeModeration:
    assert fake.moderation is not None
    return fake.moderation


async def test_m_opens_the_screen_and_escape_goes_back(fake: FakeAdmin) -> None:
    """`m` on the main screen opens moderation (listed in the footer); Escape returns."""
    app = DashApp(fake.path, options=STILL)
    async with app.run_test(size=SIZE) as pilot:
        main = app.screen
        assert "m" in {b.key for b in main.BINDINGS}
        screen = await open_moderation(app, pilot)
        assert screen.status == mod.HINT
        await wait_for(lambda: fake.sent("bans") != [], what="the bans asked for")
        await pilot.press("escape")
        assert app.screen is main
        await wait_for(lambda: not [w for w in app.workers if w.node is screen
                                    and not w.is_finished], what="the screen's workers ended")
        no_failed_workers(app)


async def test_results_follow_typing_with_one_search_per_pause(
        fake: FakeAdmin, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys typed in a row send one search, for the whole word; hits show the matched
    words marked and say how many messages are not searchable yet; clearing the box
    clears the results without asking."""
    moderation_of(fake).unflushed = 3
    monkeypatch.setattr(mod, "DEBOUNCE", 1.0)  # wider than any pause between pilot keys
    app = DashApp(fake.path, options=STILL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_moderation(app, pilot)
        table = screen.query_one(HitsTable)
        await pilot.press(*"cheap")
        await wait_for(lambda: table.ids() == [f"{T0 + 3}-0", f"{T0 + 2}-0"], what="two hits")
        assert fake.sent("search") == [{"words": "cheap", "limit": mod.PAGE}]
        text = table.get_cell(f"{T0 + 2}-0", "text")
        assert text.plain == "cheap pills here, cheap"
        assert [(s.start, s.end) for s in text.spans if str(s.style) == MARK_STYLE] == [
            (0, 5), (18, 23)]
        # the time as the table draws it: HH:MM:SS today, with the date once T0 is yesterday
        assert [str(c) for c in table.get_row(f"{T0 + 2}-0")[:4]] == [
            f"{T0 + 2}-0", "games", "mallory", fmt.stamp(T0 + 2)]
        assert "2 hits for “cheap”" in screen.status
        assert "3 newer messages not searchable yet" in screen.status

        await pilot.press(*["backspace"] * 5)
        await wait_for(lambda: table.row_count == 0, what="the results cleared")
        assert screen.status == mod.HINT
        await pilot.pause(1.2)  # longer than DEBOUNCE: a search would have gone out
        assert len(fake.sent("search")) == 1
        no_failed_workers(app)


async def test_a_late_answer_to_an_older_query_is_dropped(fake: FakeAdmin) -> None:
    """The answer to a query the operator has since changed never replaces the newer
    one's results, whether it arrives late or was already on its way."""
    moderation_of(fake).delays["cheap"] = 0.5
    late = moderation_of(fake).answered.setdefault("cheap", asyncio.Event())
    app = DashApp(fake.path, options=STILL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_moderation(app, pilot)
        box = screen.query_one("#search", Input)
        await pilot.press(*"cheap", "enter")
        box.value = "bad"
        await pilot.press("enter")
        table = screen.query_one(HitsTable)
        await wait_for(lambda: table.ids() == [f"{T0 + 1}-0"], what="the hits for 'bad'")
        await asyncio.wait_for(late.wait(), 5)  # the fake has answered "cheap"
        await pilot.pause()
        assert table.ids() == [f"{T0 + 1}-0"]
        screen.post_message(SearchAnswered(screen.seq - 1, None, {"hits": corpus()}))
        await pilot.pause()
        assert table.ids() == [f"{T0 + 1}-0"] and "“bad”" in screen.status
        no_failed_workers(app)


async def test_o_pages_to_older_results(short_dir: Path) -> None:
    """A full page offers older hits: `o` asks from the last id and appends them."""
    many = [hit(f"{T0 + i}-0", "general", "spammer", f"spam number {i}") for i in range(60)]
    async with FakeAdmin(short_dir / "fake.sock", REPLIES, FakeModeration(many)) as fake:
        app = DashApp(fake.path, options=STILL)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_moderation(app, pilot)
            newest = [f"{T0 + i}-0" for i in range(59, -1, -1)]
            table = await search(pilot, screen, "spam", newest[:50])
            assert "o: older" in screen.status
            await pilot.press("o")
            await wait_for(lambda: table.ids() == newest, what="all 60 hits")
            assert fake.sent("search")[-1] == {"words": "spam", "limit": mod.PAGE,
                                               "before": f"{T0 + 10}-0"}
            assert "60 hits" in screen.status and "o: older" not in screen.status
            await pilot.press("o")
            await pilot.pause()
            assert len(fake.sent("search")) == 2
            no_failed_workers(app)


async def test_delete_asks_first_and_removes_the_row(fake: FakeAdmin) -> None:
    """`d` asks; `n` sends nothing; `y` sends delete with the message's id and channel
    and the row goes. A message deleted meanwhile is said so, and its row goes too."""
    app = DashApp(fake.path, options=STILL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_moderation(app, pilot)
        first, second, third = (f"{T0 + i}-0" for i in (3, 2, 1))
        table = await search(pilot, screen, "pills", [first, second, third])
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert first in str(app.screen.question) and "mallory" in str(app.screen.question)
        await pilot.press("n")
        assert app.screen is screen
        await pilot.press("enter")  # a stray Enter on the dialog's default button cancels
        await pilot.press("d", "enter")
        assert app.screen is screen and fake.sent("delete") == []

        await pilot.press("d", "y")
        await wait_for(lambda: table.ids() == [second, third], what="the row removed")
        assert fake.sent("delete") == [{"msg": first, "channel": "general"}]
        assert screen.status == f"deleted message {first} in general"

        moderation_of(fake).messages = [m for m in moderation_of(fake).messages
                                        if m["id"] != second]  # deleted by someone else
        await pilot.press("d", "y")
        await wait_for(lambda: table.ids() == [third], what="the stale row removed")
        assert "already deleted" in screen.status
        no_failed_workers(app)


async def test_messages_deleted_elsewhere_leave_the_results(fake: FakeAdmin) -> None:
    """A ``delete`` event (the CLI, another operator) takes the rows of its ids out."""
    app = DashApp(fake.path, options=STILL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_moderation(app, pilot)
        table = await search(pilot, screen, "pills",
                             [f"{T0 + 3}-0", f"{T0 + 2}-0", f"{T0 + 1}-0"])
        await wait_for(lambda: parts(app)[1].state is LinkState.CONNECTED, what="subscribed")
        assert await fake.push({"event": "delete", "channel": "general",
                                "ids": [f"{T0 + 3}-0", f"{T0 + 1}-0"], "by": "root"}) == 1
        await wait_for(lambda: table.ids() == [f"{T0 + 2}-0"], what="two rows gone")
        assert logged(parts(app)[3], "2 messages deleted in general by root")
        no_failed_workers(app)


async def test_ban_dialog_checks_the_duration_then_bans(fake: FakeAdmin) -> None:
    """`b` on a hit asks for duration, reason and channel; a duration that cannot be read
    is said in the dialog and nothing is sent; the ban then shows in the list with its
    time left ticking down."""
    app = DashApp(fake.path, options=STILL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_moderation(app, pilot)
        await search(pilot, screen, "cheap", [f"{T0 + 3}-0", f"{T0 + 2}-0"])
        await pilot.press("down", "b")
        dialog = app.screen
        assert isinstance(dialog, SanctionScreen) and dialog.user == "mallory"
        assert dialog.channel == "games"
        await pilot.press(*"10x", "enter")
        error = dialog.query_one("#sanction-error", Label)
        assert "cannot read '10x'" in str(error.render())
        assert app.screen is dialog and fake.sent("ban") == []

        dialog.query_one("#sanction-duration", Input).value = "10m"
        await pilot.press("tab", *"spam", "tab", *"games", "enter")
        bans = screen.query_one(BansTable)
        await wait_for(lambda: "mallory in games" in bans.left(), what="the ban listed")
        assert fake.sent("ban") == [{"user": "mallory", "seconds": 600.0, "reason": "spam",
                                     "channel": "games"}]
        assert screen.status.startswith("banned mallory in games for 9m 5")
        shown = bans.left()["mallory in games"]
        assert shown.startswith("9m 5")
        await wait_for(lambda: bans.left()["mallory in games"] != shown, what="a tick")
        assert [str(c) for c in bans.get_row("channel:games mallory")[:4]] == [
            "channel", "mallory in games", "spam", "tester"]
        no_failed_workers(app)


async def test_mute_needs_a_duration_and_purge_removes_the_hits(fake: FakeAdmin) -> None:
    """`m` refuses an empty duration in the dialog, then mutes (no channel asked);
    `x` purges the sender's messages of a window and their rows go."""
    app = DashApp(fake.path, options=STILL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_moderation(app, pilot)
        table = await search(pilot, screen, "pills",
                             [f"{T0 + 3}-0", f"{T0 + 2}-0", f"{T0 + 1}-0"])
        await pilot.press("m")
        dialog = app.screen
        assert isinstance(dialog, SanctionScreen) and not dialog.query("#sanction-channel")
        await pilot.press("enter")
        assert "a mute needs a duration" in str(dialog.query_one("#sanction-error", Label).render())
        await pilot.press(*"30s", "enter")
        await wait_for(lambda: "mallory" in screen.query_one(BansTable).left(),
                       what="the mute listed")
        assert fake.sent("mute") == [{"user": "mallory", "seconds": 30.0}]

        await pilot.press("x")
        assert isinstance(app.screen, SanctionScreen) and app.screen.kind.cmd == "purge"
        await pilot.press(*"1h", "enter")
        await wait_for(lambda: table.ids() == [f"{T0 + 1}-0"], what="mallory's rows gone")
        assert fake.sent("purge") == [{"user": "mallory", "seconds": 3600.0}]
        assert screen.status == "purged 2 messages of mallory"
        no_failed_workers(app)


async def test_unban_from_the_list_asks_first(short_dir: Path) -> None:
    """`u` on the bans list asks; `y` lifts with the request that fits each kind."""
    moderation = FakeModeration([], bans=[MUTE, CHANNEL_BAN, IP_BAN])
    async with FakeAdmin(short_dir / "fake.sock", REPLIES, moderation) as fake:
        app = DashApp(fake.path, options=STILL)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_moderation(app, pilot)
            bans = screen.query_one(BansTable)
            await wait_for(lambda: bans.row_count == 3, what="three entries")
            left = bans.left()
            assert left["eve in games"] == left["203.0.113.0/24"] == "until lifted"
            assert re.fullmatch(r"\d+m \d\ds", left["bob"]), left  # under the hour it was set for
            bans.focus()
            await pilot.press("down", "u")
            assert isinstance(app.screen, ConfirmScreen)
            assert "eve in games" in str(app.screen.question)
            await pilot.press("escape")
            assert fake.sent("unban") == []
            await pilot.press("u", "y")
            await wait_for(lambda: set(bans.left()) == {"bob", "203.0.113.0/24"},
                           what="eve's ban gone")
            assert fake.sent("unban") == [{"user": "eve", "channel": "games"}]
            await pilot.press("up", "u", "y")
            await wait_for(lambda: set(bans.left()) == {"203.0.113.0/24"}, what="bob's mute gone")
            assert fake.sent("unmute") == [{"user": "bob"}]
            await pilot.press("u", "y")
            await wait_for(lambda: bans.row_count == 0, what="an empty list")
            assert fake.sent("unban")[-1] == {"ip": "203.0.113.0/24"}
            assert screen.status == "unbanned 203.0.113.0/24"
            no_failed_workers(app)


async def test_error_replies_and_a_missing_daemon_are_said_on_the_screen(
        fake: FakeAdmin) -> None:
    """An error reply and a daemon that went away show in the status line; the screen
    keeps working and no worker fails."""
    moderation_of(fake).errors["ban"] = "Valkey is unavailable: try again"
    app = DashApp(fake.path, options=STILL)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_moderation(app, pilot)
        await search(pilot, screen, "cheap", [f"{T0 + 3}-0", f"{T0 + 2}-0"])
        await pilot.press("b", "enter")
        await wait_for(lambda: "failed" in screen.status, what="the error said")
        assert screen.status == "ban mallory failed: Valkey is unavailable: try again"
        assert app.screen is screen

        await fake.__aexit__(None, None, None)  # the daemon goes away
        await pilot.press("slash", *"pills", "enter")  # focusing selects the old words
        await wait_for(lambda: "search failed" in screen.status, what=f"the search error, not {screen.status!r}")
        assert "no chathub daemon answers on" in screen.status
        await pilot.press("d", "y")
        await wait_for(lambda: "delete" in screen.status, what="the delete error")
        assert "no chathub daemon answers on" in screen.status
        no_failed_workers(app)


# -- against a real daemon ----------------------------------------------------------------


async def test_search_ban_and_unban_against_a_real_daemon(daemon: Daemon) -> None:
    """A spammer's message found by typing, its sender banned from the screen (closed
    4004, refused with 403), listed with time left, then unbanned (admitted again)."""
    sock = daemon.cfg.admin_socket
    async with await Chatter.connect(daemon.port, "mallory") as mallory:
        await mallory.chat("buy cheap pills now")
        mid = (await mallory.recv_type("chat"))["id"]

        async def searchable() -> bool:  # the flusher writes it to PostgreSQL (0.2 s here)
            return bool((await call(sock, "search", words="pills"))["hits"])

        await wait_for(searchable, what="the message in PostgreSQL")
        app = DashApp(sock, options=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await connected(app, daemon.node_id)
            screen = await open_moderation(app, pilot)
            table = await search(pilot, screen, "cheap pills", [mid])
            assert str(table.get_cell(mid, "from")) == "mallory"
            assert str(table.get_cell(mid, "channel")) == "general"

            await pilot.press("b", *"10m", "tab", *"spam", "enter")
            frame = await closed_banned(mallory)
            assert frame["reason"] == "spam" and frame["until"] is not None
            bans = screen.query_one(BansTable)
            await wait_for(lambda: "mallory" in bans.left(), what="the ban listed")
            assert bans.left()["mallory"].startswith("9m 5")
            status, body = await refused(daemon.port, "mallory")
            assert status == 403 and "spam" in body
            log = parts(app)[3]
            await wait_for(lambda: logged(log, "mallory banned: spam (1 connection closed here)"),
                           what="the ban event in the main screen's log")

            bans.focus()
            await pilot.press("u", "y")
            await wait_for(lambda: bans.row_count == 0, what="the ban lifted")
            assert await admits(daemon.port, "mallory")
            actions = (await call(sock, "audit"))["actions"]
            assert [a["action"] for a in actions][:2] == ["unban", "ban"]
            no_failed_workers(app)


async def test_delete_and_purge_against_a_real_daemon(daemon: Daemon) -> None:
    """A message deleted from the screen and a sender purged from it are gone: another
    connected client gets each ``delete`` frame, search no longer finds them, history no
    longer returns them; another user's message stays."""
    sock = daemon.cfg.admin_socket
    async with await Chatter.connect(daemon.port, "mallory") as mallory, \
            await Chatter.connect(daemon.port, "ann") as ann, \
            await Chatter.connect(daemon.port, "bob") as bob:
        first = await said(mallory, "buy cheap pills now")
        second = await said(mallory, "cheap pills here, cheap")
        kept = await said(ann, "pills are bad for you")

        async def searchable() -> bool:  # the flusher writes them to PostgreSQL (0.2 s here)
            return len((await call(sock, "search", words="pills"))["hits"]) == 3

        await wait_for(searchable, what="the messages in PostgreSQL")
        app = DashApp(sock, options=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await connected(app, daemon.node_id)
            screen = await open_moderation(app, pilot)
            table = await search(pilot, screen, "pills", [kept, second, first])

            await pilot.press("down", "down", "d")
            assert isinstance(app.screen, ConfirmScreen) and first in str(app.screen.question)
            await pilot.press("y")
            assert await bob.recv_type("delete") == {"type": "delete", "id": first,
                                                     "channel": "general"}
            await wait_for(lambda: table.ids() == [kept, second], what="the row removed")
            assert screen.status == f"deleted message {first} in general"

            assert table.selected is not None and table.selected["id"] == second
            await pilot.press("x")  # on mallory's other message
            assert isinstance(app.screen, SanctionScreen) and app.screen.user == "mallory"
            await pilot.press(*"1h", "enter")
            assert await bob.recv_type("delete") == {"type": "delete", "id": second,
                                                     "channel": "general"}
            await wait_for(lambda: table.ids() == [kept], what="mallory's rows gone")
            assert screen.status == "purged 1 message of mallory"
            no_failed_workers(app)

        hits = (await call(sock, "search", words="pills"))["hits"]
        assert [h["id"] for h in hits] == [kept]
        assert await history(bob) == ["pills are bad for you"]
        assert [a["action"] for a in (await call(sock, "audit"))["actions"]][:2] == [
            "purge", "delete"]


async def test_ban_dialog_fits_an_80x24_terminal_and_reaches_its_buttons(fake: FakeAdmin) -> None:
    """On 80x24 the ban dialog, the tallest, is shown whole: its question, its three
    fields and its buttons; Tab reaches the Ban button and Enter on it bans."""
    app = DashApp(fake.path, options=STILL)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_moderation(app, pilot)
        await search(pilot, screen, "cheap", [f"{T0 + 3}-0", f"{T0 + 2}-0"])
        await pilot.press("b")
        dialog = app.screen
        assert isinstance(dialog, SanctionScreen)
        await pilot.pause()
        box = dialog.query_one("#sanction-dialog")
        assert box.region.bottom <= 24, box.region
        assert box.max_scroll_y == 0  # all of it shown: the question, the fields, the buttons
        await pilot.press(*"1h", "tab", "tab", "tab")
        button = dialog.query_one("#sanction-confirm")
        assert button.has_focus
        await pilot.pause()
        assert box.content_region.contains_region(button.region), (box.content_region, button.region)
        await pilot.press("enter")
        await wait_for(lambda: fake.sent("ban") != [], what="the ban sent")
        assert fake.sent("ban") == [{"user": "mallory", "seconds": 3600.0}]
