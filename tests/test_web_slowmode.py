"""The browser client (chathub/web) in real Chromium when a channel is in slow mode.

Reuses tests/test_web.py's browser and page fixtures.
"""

from __future__ import annotations

import re

from chathub.admin.client import call
from tests import test_web  # skips without playwright, as test_web
from tests.test_web import expect, needs_chromium

pytestmark = needs_chromium

# test_web's fixtures: one Chromium per module, and its chat pages
browser = test_web.browser
open_page = test_web.open_page


async def test_slow_mode_refusal_says_so_and_other_channels_still_send(daemon, open_page):
    """A second message in a slowed channel is explained as slow mode with the wait, and
    its text comes back; the same user sends freely in another channel."""
    await call(daemon.cfg.admin_socket, "limits_set", channel="general",
               values={"chat_rate": 0.02, "chat_burst": 1})
    alice = await open_page(daemon.port, "alice")
    box = alice.page.locator("#text")
    await alice.send("first")
    await expect(alice.texts).to_have_text(["first"])
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
