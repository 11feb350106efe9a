"""The browser client (chathub/web) in real Chromium when an operator acts on its user:
a ban (timed and until lifted), a mute, a removal from one channel and a channel deleted.

Reuses tests/test_web.py's browser and page fixtures; the operator's actions go through
the admin socket, as ``chathub ban`` / ``mute`` / ``kick --channel`` / ``channel delete``
send them.
"""

from __future__ import annotations

import re

from chathub.admin.client import call
from tests import test_web  # skips without playwright, as test_web
from tests.test_web import ChatPage, expect, needs_chromium

pytestmark = needs_chromium

# test_web's fixtures: one Chromium per module, and its chat pages
browser = test_web.browser
open_page = test_web.open_page


def chan(p: ChatPage, name: str):
    """The sidebar button of a channel."""
    return p.page.locator(f'#channels button.chan[data-view="{name}"]')


async def test_a_ban_says_banned_with_its_end_and_reason(daemon, open_page):
    """A timed ban names its end and reason; a ban until lifted says so; no reconnect."""
    alice = await open_page(daemon.port, "alice")
    sock = daemon.cfg.admin_socket
    await call(sock, "ban", user="alice", seconds=600, reason="spamming links")
    await expect(alice.page.locator("#banner-text")).to_have_text(
        re.compile(r"^You were banned by an operator until .+ \(reason: spamming links\)\. "
                   r"You will not be reconnected automatically; until then the server refuses"))
    await expect(alice.conn).to_have_text("Disconnected")
    await expect(alice.page.get_by_role("button", name="Reconnect")).to_be_focused()
    assert len(alice.sockets) == 1
    # Reconnect while the ban holds: refused, and the page says why rather than guessing
    await alice.page.get_by_role("button", name="Reconnect").click()
    await expect(alice.login_error).to_have_text(re.compile(
        r"^The server still refuses you: you were banned until .+\. Try again when the ban ends\.$"),
        timeout=test_web.RECONNECT_MS)

    await call(sock, "unban", user="alice")
    await alice.join("alice")
    await expect(alice.conn).to_have_text("Connected")
    bob = await open_page(daemon.port, "bob")
    await call(sock, "ban", user="bob", reason="")
    await expect(bob.banner).to_contain_text(
        "You were banned by an operator until an operator lifts the ban. You will not")
    await call(sock, "unban", user="bob")


async def test_a_mute_says_how_long_is_left_and_gives_the_text_back(daemon, open_page):
    """A mute is said as it happens (until when, why), before anything is sent; a refusal
    as muted reads as minutes left, not the server's milliseconds; an early unmute is said
    too."""
    alice = await open_page(daemon.port, "alice")
    notices = alice.page.locator('#messages li.notice')
    await call(daemon.cfg.admin_socket, "mute", user="alice", seconds=600, reason="cool off")
    told = re.compile(r"^An operator muted you until .+ \(reason: cool off\)\. You can read, "
                      r"but your messages will be refused\.$")
    await expect(notices).to_have_text([told])
    await expect(alice.send_error).to_have_attribute("data-code", "muted")
    await expect(alice.send_error).to_have_text(told)
    await alice.send("can I still talk?")
    await expect(alice.send_error).to_have_attribute("data-code", "muted")
    await expect(alice.send_error).to_have_text(
        re.compile(r"^You are muted by an operator: you can send again in (10|9) min\.$"))
    await expect(alice.page.locator("#text")).to_have_value("can I still talk?")
    await call(daemon.cfg.admin_socket, "unmute", user="alice")
    await expect(notices).to_have_text([told, "An operator lifted your mute: you can send again."])
    await expect(alice.send_error).to_be_hidden()
    await alice.send("can I still talk?")
    await expect(alice.texts).to_have_text(["can I still talk?"])


async def test_a_mute_that_runs_out_takes_its_note_away(daemon, open_page):
    """A mute sends no frame when it runs out: the page clears its note at the mute's end
    by itself, and sending works again."""
    alice = await open_page(daemon.port, "alice")
    await call(daemon.cfg.admin_socket, "mute", user="alice", seconds=2, reason="breathe")
    await expect(alice.send_error).to_have_attribute("data-code", "muted")
    await expect(alice.send_error).to_be_hidden(timeout=10_000)
    await alice.send("and we are back")
    await expect(alice.texts).to_have_text(["and we are back"])


async def test_removed_from_a_channel_or_its_deletion_is_said_in_the_default_channel(
        daemon, open_page):
    """A kick from #ops, the deletion of #games and a ban from #ops each leave a line saying
    what happened (with the operator's reason), and the page goes back to #general; #ops
    can be joined again after the kick."""
    alice = await open_page(daemon.port, "alice")
    for name in ("games", "ops"):
        await alice.send(f"/join {name}")
        await expect(chan(alice, name)).to_have_attribute("aria-current", "true")
    notices = alice.page.locator('#messages li.notice')

    await call(daemon.cfg.admin_socket, "kick", user="alice", channel="ops", reason="off topic")
    await expect(chan(alice, "ops")).to_have_count(0)
    await expect(chan(alice, "general")).to_have_attribute("aria-current", "true")
    kicked = "An operator removed you from #ops. You can join it again. Reason: off topic"
    await expect(notices).to_have_text([kicked])

    await call(daemon.cfg.admin_socket, "channel_delete", name="games", force=True)
    await expect(chan(alice, "games")).to_have_count(0)
    await expect(notices).to_have_text([kicked, "#games was deleted by an operator."])
    await alice.send("/join ops")
    await expect(chan(alice, "ops")).to_have_attribute("aria-current", "true")
    await alice.send("/leave")  # our own leave: no notice
    await expect(chan(alice, "ops")).to_have_count(0)
    await expect(notices).to_have_count(2)

    await alice.send("/join ops")
    await expect(chan(alice, "ops")).to_have_attribute("aria-current", "true")
    await call(daemon.cfg.admin_socket, "ban", user="alice", channel="ops", reason="spam")
    await expect(chan(alice, "ops")).to_have_count(0)
    await expect(notices.nth(2)).to_have_text(
        "You were removed from #ops by an operator and banned from it until an operator lifts "
        "the ban. Reason: spam")
    # joining again is refused for the ban, said as such (#ops is not private)
    await alice.send("/join ops")
    await expect(alice.send_error).to_have_text(
        "You may not join “ops”: an operator banned you from it.")
    await expect(chan(alice, "ops")).to_have_count(0)
