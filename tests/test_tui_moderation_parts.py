"""The moderation screen's parts that need no daemon: marked text, time left, the
request that lifts a ban, the ban/mute/purge request built from a dialog, log lines."""

from __future__ import annotations

import time

import pytest
from chathub.tui import format as fmt
from chathub.tui.screens.sanction import KINDS, build
from chathub.tui.widgets.bans import lift, time_left
from chathub.tui.widgets.events import describe
from chathub.tui.widgets.hits import MARK_STYLE, marked

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
