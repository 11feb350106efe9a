"""The moderation screen's parts that need no daemon: marked text, time left, the
request that lifts a ban, the ban/mute/purge request built from a dialog, log lines;
and the dash's tables drawn again when their columns widen."""

from __future__ import annotations

import time

import pytest
from chathub.tui import format as fmt
from chathub.tui.screens.sanction import KINDS, build
from chathub.tui.widgets import BansTable, ChannelsTable, ClientsTable, HitsTable
from chathub.tui.widgets.bans import lift, time_left
from chathub.tui.widgets.events import describe
from chathub.tui.widgets.hits import MARK_STYLE, marked
from textual.app import App, ComposeResult

from tests.helpers import wait_for
from tests.test_tui_moderation import CHANNEL_BAN, IP_BAN, MUTE, T0


def test_marked_text_styles_the_spans_and_cuts_long_text():
    text = marked("cheap pills, cheap", [[0, 5], [13, 18], [40, 50]])
    assert [(s.start, s.end, str(s.style)) for s in text.spans] == [
        (0, 5, MARK_STYLE), (13, 18, MARK_STYLE)]
    assert marked("x" * 500, [], limit=10).plain == "x" * 9 + "…"


def test_time_left_and_the_request_that_lifts_each_kind():
    now = T0 / 1000
    assert time_left(MUTE, now) == "1h 00m"
    assert time_left(CHANNEL_BAN, now) == "until lifted"
    assert time_left(MUTE, now + 3601) == "expired"
    assert lift(MUTE) == ("unmute", {"user": "bob"})
    assert lift(CHANNEL_BAN) == ("unban", {"user": "eve", "channel": "games"})
    assert lift(IP_BAN) == ("unban", {"ip": "203.0.113.0/24"})
    assert lift({**CHANNEL_BAN, "scope": "user", "key": "eve", "channel": None}) == (
        "unban", {"user": "eve"})


def test_sanction_requests_from_what_was_typed():
    assert build(KINDS["ban"], "bob", "", " spam ", "").fields == {"user": "bob", "reason": "spam"}
    assert build(KINDS["ban"], "bob", "2h", "", "games").fields == {
        "user": "bob", "seconds": 7200.0, "channel": "games"}
    assert build(KINDS["purge"], "bob", "10m", "ignored", "").fields == {
        "user": "bob", "seconds": 600.0}
    with pytest.raises(ValueError, match="a mute needs a duration"):
        build(KINDS["mute"], "bob", " ", "", "")
    with pytest.raises(ValueError, match="cannot read '10x'"):
        build(KINDS["ban"], "bob", "10x", "", "")


def test_ban_and_delete_events_in_the_log():
    assert describe({"event": "ban", "scope": "user", "target": "mallory", "reason": "spam",
                     "connections": 2}) == (
        "⛔ mallory banned: spam (2 connections closed here)", "bold red")
    assert describe({"event": "delete", "channel": "general", "ids": ["1-0", "2-0"],
                     "by": "root"})[0] == "✕ 2 messages deleted in general by root"
    assert describe({"event": "delete", "channel": None, "ids": ["3-0"], "by": "root"})[0] == (
        "✕ 1 message deleted (whispers) by root")


def test_stamp_shows_a_date_for_other_days():
    day = 86400.0
    assert fmt.stamp(T0, now=T0 / 1000) == fmt.clock(T0)
    assert fmt.stamp(T0, now=T0 / 1000 + 3 * day).startswith(time.strftime("%Y-", time.localtime(T0 / 1000)))
    assert fmt.stamp(None) == "—"


@pytest.mark.parametrize("table_class", [HitsTable, BansTable, ClientsTable, ChannelsTable])
async def test_rows_drawn_before_the_columns_widen_are_drawn_again(table_class):
    """A row drawn between add_row and the table's next Idle (when it widens its columns
    to fit) is drawn again at the new widths, not left cut to the labels' widths.

    The table has a fixed height and the row fits its width, as in the dash, so no
    resize redraws it by chance."""

    class One(App[None]):
        CSS = "#t { height: 8; }"

        def compose(self) -> ComposeResult:
            yield table_class(id="t")

    wide = "x" * 16
    async with One().run_test(size=(200, 10)) as pilot:
        table = pilot.app.query_one("#t", table_class)
        await pilot.pause()
        table.add_row(wide, *[""] * (len(table.columns) - 1), key="r")
        first = "".join(s.text for s in table.render_line(1))  # drawn before the Idle
        assert first.split() != [wide], first  # the column is as wide as its label so far
        await wait_for(lambda: not table._require_update_dimensions, what="the columns widened")
        await pilot.pause()
        again = "".join(s.text for s in table.render_line(1))
        assert again.split() == [wide], again
