"""The main screen's layout, against a fake daemon serving fixed figures (tests/fakeadmin.py).

The screen is exported as SVG (``App.export_screenshot``) and compared with
tests/snapshots/dash_main.svg (the moderation screen: dash_moderation.svg). After an intended change of the layout, look at the new
picture and regenerate it with:

    CHATHUB_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_tui_snapshot.py

(open the .svg in a browser to look at it). Clocks are taken out: the figures are
fixed, the event log's times are pinned, and the feed polls once (its interval is an
hour), so the same figures always draw the same picture.
"""

from __future__ import annotations

import html
import io
import itertools
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import chathub.tui.format as tui_format
import chathub.tui.widgets.bans as tui_bans
import pytest
from chathub.tui.app import DashApp
from chathub.tui.feed import FeedOptions
from chathub.tui.messages import LinkState
from chathub.tui.screens import DashScreen, ModerationScreen
from chathub.tui.widgets import (
    BansTable,
    ChannelsTable,
    ClientsTable,
    HitsTable,
    NodesPanel,
    StatsPanel,
    StatusHeader,
)
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.fakeadmin import FakeAdmin
from tests.fakemoderation import FakeModeration, hit
from tests.helpers import wait_for

SNAPSHOT = Path(__file__).parent / "snapshots" / "dash_main.svg"
MODERATION = Path(__file__).parent / "snapshots" / "dash_moderation.svg"
#: one poll, no reconnects: nothing changes after the first figures
STILL = FeedOptions(poll_interval=3600, min_poll_gap=0, stale_after=3600)

STATS = {
    "node": "hub-1", "uptime_s": 7384.0, "connections": 3, "users": 2,
    "messages_in": 1520, "deliveries_out": 4210, "messages_per_s": 4.5,
    "deliveries_per_s": 12.0, "broadcast_queue": 0, "whisper_queue": 0, "inbox": 0,
    "max_backlog": 2048, "rate_limit_hits": 7, "rate_limit_hits_last_minute": 1,
    "slow_consumers": 0, "kicks": 1, "errors": {}, "refusals": {}, "closes": {},
    "valkey_up": True, "postgres_up": True, "bus_resubscribes": 0, "events_dropped": 0,
    "tasks": 30, "flush_backlog": 2, "rate_limit_hits_cluster": 7, "sessions_waiting": 0,
    # heartbeats hours ago: the "beat" column shows minutes, so it holds still for one
    "cluster": [{"node": "hub-1", "connections": 3, "started": 0, "last_s": 3 * 3600},
                {"node": "hub-2", "connections": 5, "started": 0, "last_s": 2 * 3600}],
}
# connection ages with no seconds shown ("1h 02m"), so a slow run draws the same picture
CLIENTS = [
    {"user": "ann", "session": "s1", "remote_addr": "127.0.0.1", "connected_s": 3725,
     "chats_sent": 12, "whispers_sent": 1, "backlog": 0, "over_limit_s": 0.0,
     "rate_limit_hits": 0, "channels": ["general", "games"]},
    {"user": "bob", "session": "s2", "remote_addr": "127.0.0.2", "connected_s": 7215,
     "chats_sent": 3, "whispers_sent": 0, "backlog": 2048, "over_limit_s": 1.5,
     "rate_limit_hits": 7, "channels": ["general"]},
    {"user": "bob", "session": "s3", "remote_addr": "127.0.0.2", "connected_s": 104420,
     "chats_sent": 0, "whispers_sent": 0, "backlog": 0, "over_limit_s": 0.0,
     "rate_limit_hits": 0, "channels": ["general"]},
]
CHANNELS = [
    {"name": "general", "private": False, "users": 7, "subscriptions": 8,
     "nodes": {"hub-1": 3, "hub-2": 5}, "messages_per_min": 42.0, "history": 500},
    {"name": "games", "private": False, "users": 1, "subscriptions": 1,
     "nodes": {"hub-1": 1}, "messages_per_min": 3.5, "history": 40},
    {"name": "$ops", "private": True, "users": 0, "subscriptions": 0, "nodes": {},
     "messages_per_min": 0.0, "history": 0},
]
REPLIES = {
    "hello": {"protocol": 3, "version": "0.1.0", "node": "hub-1", "pid": 4242},
    "stats": STATS, "clients": {"clients": CLIENTS}, "channels": {"channels": CHANNELS},
}


async def test_main_screen_layout(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Header, figures, sparklines, clients, channels, events and nodes as drawn from
    fixed figures match the committed picture."""
    monkeypatch.setattr(tui_format, "clock", lambda ts_ms=None: "12:00:00")
    sock = short_dir / "fake.sock"
    async with FakeAdmin(sock, REPLIES) as fake:
        app = DashApp(sock, options=STILL)
        async with app.run_test(size=(140, 40)) as pilot:
            main = app.screen
            assert isinstance(main, DashScreen)
            header = main.query_one(StatusHeader)
            clients = main.query_one("#clients", ClientsTable)
            channels = main.query_one(ChannelsTable)
            await wait_for(lambda: header.state is LinkState.CONNECTED
                           and clients.row_count == 3 and channels.row_count == 3,
                           what="the fake figures on screen")
            await settle(pilot)
            svg = app.export_screenshot()
        assert fake.asked.get("channels") == 1  # one poll: nothing moved after it
    compare(svg, SNAPSHOT)


async def test_an_80x24_terminal_shows_every_figure_and_every_client(
        short_dir: Path) -> None:
    """On the smallest usual terminal the figures are whole (their labels are cut
    instead), the nodes keep their ids, and the clients and channels tables still show
    their rows."""
    sock = short_dir / "fake.sock"
    async with FakeAdmin(sock, REPLIES):
        app = DashApp(sock, options=STILL)
        async with app.run_test(size=(80, 24)) as pilot:
            main = app.screen
            clients = main.query_one("#clients", ClientsTable)
            channels = main.query_one(ChannelsTable)
            await wait_for(lambda: clients.row_count == 3 and channels.row_count == 3,
                           what="the fake figures on screen")
            await settle(pilot)
            panel = main.query_one(StatsPanel)
            console = Console(width=panel.content_region.width, file=io.StringIO(), record=True)
            console.print(panel.render())
            drawn = console.export_text()
            for label, value in panel.rows():
                shown = value.plain if isinstance(value, Text) else value
                assert shown in drawn, f"{label}'s {shown!r} is cut: {drawn}"
            nodes = main.query_one(NodesPanel)
            console = Console(width=nodes.content_region.width, file=io.StringIO(), record=True)
            console.print(nodes.render())
            assert "hub-1 *" in console.export_text(), console.export_text()
            for table in (clients, channels):  # the header and the three rows
                assert table.scrollable_content_region.height >= 4, table.region


async def settle(pilot: Pilot[None]) -> None:
    """Wait until the screen is drawn as it will stay, then lay it out.

    A DataTable sizes its columns to the rows added on its next ``Idle`` message (until
    then they are as wide as their labels), and :meth:`Pilot.pause` cannot be trusted to
    get that far: it waits for the process to look idle by its CPU time, which a busy
    machine fakes. So this waits for the tables' own pending-update flags (textual's
    private ``_require_update_dimensions`` and ``_updated_cells``: no public one says it).
    """
    screen = pilot.app.screen
    await wait_for(lambda: not any(t._require_update_dimensions or t._updated_cells
                                   for t in screen.query(DataTable)),
                   what="the tables sized to their rows")
    await pilot.pause()  # runs the screen's pending layout and repaint


def compare(svg: str, snapshot: Path) -> None:
    """Assert ``svg`` equals the committed picture (write it when asked to, or when new).

    On a difference the failure names the rows whose text differs (every class name of
    an export changes with any change, so a diff of the SVG itself says nothing), and the
    picture drawn is left beside the snapshot as ``<name>.actual.svg`` to look at.
    """
    if os.environ.get("CHATHUB_UPDATE_SNAPSHOTS") or not snapshot.exists():
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(svg)
        if not os.environ.get("CHATHUB_UPDATE_SNAPSHOTS"):
            pytest.fail(f"wrote the first {snapshot.name}: look at it, commit it, run again")
    expected = snapshot.read_text()
    if svg == expected:
        return
    actual = snapshot.with_suffix(".actual.svg")
    actual.write_text(svg)
    drawn, committed = rows_of(svg), rows_of(expected)
    changed = [f"row {i}: {a!r}\n    was {b!r}"
               for i, (a, b) in enumerate(itertools.zip_longest(drawn, committed)) if a != b]
    pytest.fail(f"the screen differs from {snapshot.name} (drawn: {actual}); if the change "
                "is intended, regenerate it (see this module's docstring).\n"
                + ("\n".join(changed) or "the same text in other colours or styles"),
                pytrace=False)


def rows_of(svg: str) -> list[str]:
    """The text of an exported screen, a string per row (top to bottom)."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for m in re.finditer(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>',
                         svg):
        rows.setdefault(float(m[2]), []).append((float(m[1]), html.unescape(m[3])))
    return ["".join(t for _, t in sorted(row)).replace("\xa0", " ")
            for _, row in sorted(rows.items())]


async def test_moderation_screen_layout(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The moderation screen with hits for "pills" (matches marked), the note on
    unflushed messages, and a ban, a channel ban and a mute, matches the committed picture."""
    monkeypatch.setattr(tui_format, "stamp", lambda ts_ms=None, now=None: "12:00:00")
    now = int(time.time() * 1000)
    # the table's clock stands still, so "time left" draws the same however long this runs
    monkeypatch.setattr(tui_bans, "time", SimpleNamespace(time=lambda: now / 1000))
    hour = 3_600_000
    bans = [  # 3h and 30s left: "3h 00m"
        {"scope": "user", "key": "mallory", "user": "mallory", "channel": None, "ip": None,
         "reason": "spam links", "until": None, "id": 1, "at": now, "by": "root"},
        {"scope": "channel", "key": "games eve", "user": "eve", "channel": "games", "ip": None,
         "reason": "", "until": None, "id": 2, "at": now, "by": "root"},
        {"scope": "mute", "key": "bob", "user": "bob", "channel": None, "ip": None,
         "reason": "shouting", "until": now + 3 * hour + 30_000, "id": 3, "at": now, "by": "ops"},
    ]
    messages = [
        hit("1700000003000-0", "general", "mallory", "buy cheap pills now, best pills"),
        hit("1700000002000-0", "games", "mallory", "pills pills pills"),
        hit("1700000001000-0", "general", "ann", "those pills ads again?"),
    ]
    sock = short_dir / "fake.sock"
    async with FakeAdmin(sock, REPLIES, FakeModeration(messages, bans, unflushed=4)):
        app = DashApp(sock, options=STILL)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("m")
            await wait_for(lambda: isinstance(app.screen, ModerationScreen), what="moderation")
            screen = app.screen
            await pilot.press(*"pills", "enter")
            hits, table = screen.query_one(HitsTable), screen.query_one(BansTable)
            await wait_for(lambda: hits.row_count == 3 and table.row_count == 3,
                           what="hits and bans on screen")
            await settle(pilot)
            svg = app.export_screenshot()
    compare(svg, MODERATION)
