"""The browser client's channels (chathub/web) in real Chromium, against real daemons.

Reuses tests/test_web.py's browser, page fixture and helpers. Set
CHATHUB_WEB_CHANNELS_SCREENSHOT=docs/screenshot-channels.png to save the sidebar
picture used in the docs.
"""

from __future__ import annotations

import os

from chathub.edge import auth
from tests import test_web  # skips without playwright, as test_web
from tests.helpers import Chatter
from tests.test_web import RECONNECT_MS, XSS_SCRIPT, ChatPage, expect, needs_chromium

pytestmark = needs_chromium

# test_web's fixtures: one Chromium per module, and its chat pages
browser = test_web.browser
open_page = test_web.open_page

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def chan(p: ChatPage, name: str):
    """The sidebar button of a channel ("Whispers" for the whispers)."""
    view = "@whispers" if name == "Whispers" else name
    return p.page.locator(f'#channels button.chan[data-view="{view}"]')


async def join_channel(p: ChatPage, name: str) -> None:
    """Join with the composer's /join and wait until the channel is shown."""
    await p.send(f"/join {name}")
    await expect(chan(p, name)).to_have_attribute("aria-current", "true")


async def test_two_channels_keep_their_messages_users_and_unread_counts(daemon, open_page):
    """Each user sees only their channel; unread counts; a late third tab gets the history."""
    alice = await open_page(daemon.port, "alice")
    bob = await open_page(daemon.port, "bob")
    await join_channel(alice, "ops")
    await join_channel(bob, "design")
    await expect(alice.page.locator("#users li")).to_have_text(["alice you"])
    await expect(alice.page.locator("#users-label")).to_have_text("In #ops")

    await alice.send("ops: deploy at 3")
    await bob.send("design: new logo")
    await expect(alice.texts).to_have_text(["ops: deploy at 3"])
    await expect(bob.texts).to_have_text(["design: new logo"])

    # bob joins #ops from the list of public channels, with member counts
    await bob.page.locator("#join-box summary").click()
    ops = bob.page.locator('#public-channels button[data-channel="ops"]')
    await expect(ops).to_contain_text("1 user")
    await ops.click()
    await expect(chan(bob, "ops")).to_have_attribute("aria-current", "true")
    await expect(bob.texts).to_have_text(["ops: deploy at 3"])
    await expect(bob.page.locator("#users li")).to_have_text(["alice", "bob you"])
    await expect(alice.page.locator("#messages li.presence")).to_have_text(["bob joined"])

    # messages in channels not shown are counted, and the count clears on opening it
    await alice.send("ops: rollback plan ready")
    await expect(bob.texts).to_have_text(["ops: deploy at 3", "ops: rollback plan ready"])
    await bob.page.keyboard.press("Alt+ArrowUp")  # #ops -> #design
    await expect(chan(bob, "design")).to_have_attribute("aria-current", "true")
    await alice.send("ops: one")
    await alice.send("ops: two")
    await expect(chan(bob, "ops").locator(".unread")).to_have_text("2")
    await expect(chan(bob, "ops")).to_have_attribute("aria-label", "#ops, 2 unread")
    await expect(bob.texts).to_have_text(["design: new logo"])
    await bob.page.keyboard.press("Alt+ArrowDown")
    await expect(chan(bob, "ops")).to_have_attribute("aria-current", "true")
    await expect(chan(bob, "ops").locator(".unread")).to_be_hidden()
    await expect(bob.texts).to_have_text(["ops: deploy at 3", "ops: rollback plan ready", "ops: one", "ops: two"])

    # general saw none of it
    await chan(alice, "general").click()
    await expect(alice.texts).to_have_count(0)
    # whispers have their own view
    await alice.send("/w bob psst")
    await expect(chan(bob, "Whispers").locator(".unread")).to_have_text("1")
    await chan(bob, "Whispers").click()
    await expect(bob.page.locator("#messages li.whisper .text")).to_have_text(["psst"])

    # a third tab of alice, late: joins #ops and gets its history
    alice2 = await open_page(daemon.port, "alice")
    await join_channel(alice2, "ops")
    await expect(alice2.texts).to_have_text(
        ["ops: deploy at 3", "ops: rollback plan ready", "ops: one", "ops: two"])

    # /leave: the channel goes, the default one cannot
    await chan(bob, "design").click()
    await bob.send("/leave")
    await expect(chan(bob, "design")).to_have_count(0)
    await expect(chan(bob, "general")).to_have_attribute("aria-current", "true")
    await bob.send("/leave")
    await expect(bob.send_error).to_contain_text("cannot be left")

    if path := os.environ.get("CHATHUB_WEB_CHANNELS_SCREENSHOT"):
        await chan(bob, "ops").click()
        await bob.page.locator("#text").fill("")
        await alice.send("Lunch at noon?")
        await expect(chan(bob, "general").locator(".unread")).to_have_text("1")
        await bob.page.locator("#join-box").evaluate("e => { e.open = true; }")
        await expect(bob.page.locator('#public-channels button[data-channel="ops"]')).to_contain_text("2 users")
        await bob.page.screenshot(path=path)

    await bob.page.set_viewport_size({"width": 360, "height": 640})
    await expect(bob.page.locator("#text")).to_be_in_viewport()
    await expect(chan(bob, "ops")).to_be_in_viewport()
    wide = await bob.page.evaluate("document.documentElement.scrollWidth")
    assert wide <= 360, f"page is {wide}px wide in a 360px window"


async def test_sigkill_and_restart_resubscribes_every_channel_without_duplicates(spawn, open_page):
    """SIGKILL the daemon: each channel resumes with its own since, no repeats, no gap."""
    first = await spawn()
    port = first.port
    alice = await open_page(port, "alice")
    await join_channel(alice, "ops")
    await join_channel(alice, "design")
    async with await Chatter.connect(port, "bob") as bob:
        for c in ("ops", "design"):
            await bob.send(type="subscribe", channel=c)
            await bob.recv_type("subscribed")
        for text, c in (("o1", "ops"), ("d1", "design"), ("g1", None)):
            await bob.chat(text, **({"channel": c} if c else {}))
            await bob.recv_type("chat")
    await expect(alice.texts).to_have_text(["d1"])
    await expect(chan(alice, "ops").locator(".unread")).to_have_text("1")

    first.kill()
    await expect(alice.conn).to_have_text("Reconnecting…")
    await spawn(port=port)
    await expect(alice.conn).to_have_text("Connected", timeout=RECONNECT_MS)
    async with await Chatter.connect(port, "bob") as bob:
        for c in ("ops", "design"):
            await bob.send(type="subscribe", channel=c)
            await bob.recv_type("subscribed")
        for text, c in (("o2", "ops"), ("d2", "design"), ("g2", None)):
            await bob.chat(text, **({"channel": c} if c else {}))
            await bob.recv_type("chat")
        await expect(alice.texts).to_have_text(["d1", "d2"])
        await chan(alice, "ops").click()
        await expect(alice.texts).to_have_text(["o1", "o2"])
        await chan(alice, "general").click()
        await expect(alice.texts).to_have_text(["g1", "g2"])
    await alice.page.keyboard.press("Alt+ArrowDown")
    await alice.send("o3")
    await expect(alice.texts).to_have_text(["o1", "o2", "o3"])
    assert "since=" in alice.sockets[-1], alice.sockets


async def test_private_channel_refused_and_allowed_and_markup_stays_text(daemon_factory, open_page):
    """$ops: refused without the right, joined with it; a <script> name is refused as text."""
    d = await daemon_factory(auth={"mode": "token", "secret": SECRET})
    eve = await open_page(d.port)
    await eve.join(token=auth.mint("eve", SECRET, 300))
    await expect(eve.conn).to_have_text("Connected")
    await eve.page.locator("#join-box summary").click()
    await eve.page.locator("#channel-name").fill("$ops")
    await eve.page.locator("#channel-name").press("Enter")
    await expect(eve.page.locator("#channel-error")).to_have_text(
        "You may not join “$ops”: it is private and your login does not name it.")
    await expect(eve.page.locator("#channel-error")).to_have_attribute("data-code", "forbidden")
    await expect(chan(eve, "$ops")).to_have_count(0)

    await eve.page.locator("#channel-name").fill(XSS_SCRIPT)
    await eve.page.locator("#channel-name").press("Enter")
    await expect(eve.page.locator("#channel-error")).to_contain_text(f"“{XSS_SCRIPT}” is not a valid channel name")
    await expect(eve.page.locator("#channel-error *")).to_have_count(0)
    await eve.send(f"/join {XSS_SCRIPT}")
    await expect(eve.send_error).to_contain_text("is not a valid channel name")
    await expect(eve.page.locator("#send-error *, #channels script")).to_have_count(0)

    alice = await open_page(d.port)
    await alice.join(token=auth.mint("alice", SECRET, 300, ("$ops",)))
    await expect(alice.conn).to_have_text("Connected")
    await join_channel(alice, "$ops")
    await alice.send(XSS_SCRIPT)
    await expect(alice.texts).to_have_text([XSS_SCRIPT])
    await expect(alice.page.locator("#messages script")).to_have_count(0)
    await expect(alice.page.locator("#users li")).to_have_text(["alice you"])
    # the dialogs/problems lists are checked when the fixture closes the pages


async def test_long_names_in_a_narrow_window_stay_inside_it(daemon, open_page):
    """A 64-character channel and a 32-character user in a 360px window: the channel row
    scrolls the one shown into sight, "In #…" is cut with …, and nothing spills out."""
    user, long_a, long_b = "U" * 32, "a" * 64, "b" * 64
    p = await open_page(daemon.port, user, viewport=(360, 640))
    await join_channel(p, long_a)
    await join_channel(p, long_b)
    await expect(chan(p, long_b)).to_be_in_viewport(ratio=0.9)
    # one line of box: the placeholder names the channel without the keys' hint
    await expect(p.page.locator("#text")).to_have_attribute("placeholder", f"Message #{long_b}")
    title = p.page.locator("#users-title")
    await expect(p.page.locator("#users-label")).to_have_text(f"In #{long_b}")
    spill = await title.evaluate("e => e.scrollWidth - e.clientWidth")
    assert spill <= 0, f"the users heading spills {spill}px out of its pane"
    await expect(p.page.locator("#user-count")).to_be_in_viewport()
    await expect(p.page.locator("#users .badge")).to_be_in_viewport()  # "you" beside the name
    wide = await p.page.evaluate("document.documentElement.scrollWidth")
    assert wide <= 360, f"page is {wide}px wide in a 360px window"


async def test_the_open_public_list_follows_joins_and_leaves_of_my_channels(daemon, open_page):
    """With the list of public channels open, a channel this tab is in shows its new
    member count when someone joins or leaves, without pressing Refresh."""
    alice = await open_page(daemon.port, "alice")
    await join_channel(alice, "games")
    await alice.page.locator("#join-box summary").click()
    games = alice.page.locator('#public-channels button[data-channel="games"]')
    await expect(games).to_contain_text("1 user")
    bob = await open_page(daemon.port, "bob")
    await join_channel(bob, "games")
    await expect(games).to_contain_text("2 users")
    await expect(games).to_have_attribute("aria-label", "Show #games, 2 users")
    await bob.send("/leave")
    await expect(games).to_contain_text("1 user")
    await join_channel(alice, "fresh")  # not in the list when it was fetched
    await expect(alice.page.locator('#public-channels button[data-channel="fresh"]')).to_contain_text(
        "1 user")
