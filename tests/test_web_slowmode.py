"""The browser client (chathub/web) in real Chromium when a channel is in slow mode.

Reuses tests/test_web.py's browser and page fixtures.
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


async def slowed_alice(daemon, open_page) -> ChatPage:
    """#general in slow mode (one message per 50 s); alice has just sent "first" there."""
    await call(daemon.cfg.admin_socket, "limits_set", channel="general",
               values={"chat_rate": 0.02, "chat_burst": 1})
    alice = await open_page(daemon.port, "alice")
    await alice.send("first")
    await expect(alice.texts).to_have_text(["first"])
    return alice


async def test_slow_mode_refusal_says_so_and_other_channels_still_send(daemon, open_page):
    """A second message in a slowed channel is explained as slow mode with the wait, and
    its text comes back; the same user sends freely in another channel."""
    alice = await slowed_alice(daemon, open_page)
    box = alice.page.locator("#text")
    await alice.send("second")
    await expect(alice.send_error).to_have_attribute("data-code", "rate_limited")
    await expect(alice.send_error).to_contain_text(
        re.compile(r"^This channel is in slow mode: wait \d+(\.\d)? s, then send again\.$"))
    await expect(box).to_have_value("second")

    await alice.send("/join ops")
    await expect(alice.page.locator('#channels button.chan[data-view="ops"]')).to_have_attribute(
        "aria-current", "true")
    for text in ("one", "two", "three"):
        await alice.send(text)
    await expect(alice.texts).to_have_text(["one", "two", "three"])
    await expect(alice.send_error).to_be_hidden()


async def test_a_second_refused_message_is_kept_aside_and_can_be_put_back(daemon, open_page):
    """Two messages sent in a row and both refused: the first goes back into the box, the
    second, which the box cannot also hold, stays on the page with a button to put it
    back once the box is free."""
    alice = await slowed_alice(daemon, open_page)
    box = alice.page.locator("#text")
    # Enter twice in quick succession: both are sent before either refusal comes back
    await alice.page.evaluate("""texts => {
        const box = document.getElementById("text");
        for (const t of texts) { box.value = t; document.getElementById("composer").requestSubmit(); }
    }""", ["second", "third"])
    await expect(box).to_have_value("second")
    unsent = alice.page.locator("#messages li.unsent")
    await expect(unsent).to_have_count(1)
    await expect(unsent.locator(".unsent-text")).to_have_text("Not sent: “third”")
    put_back = unsent.get_by_role("button", name="Put back in the box")
    await put_back.click()  # the box still holds "second": it is not overwritten
    await expect(alice.send_error).to_contain_text("Send or clear the message box first")
    await expect(box).to_have_value("second")
    await box.fill("")
    await put_back.click()
    await expect(box).to_have_value("third")
    await expect(unsent).to_have_count(0)
    await expect(alice.texts).to_have_text(["first"])
