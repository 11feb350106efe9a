"""The browser client removes a deleted message from view (chathub delete), in real
Chromium against a real daemon. Reuses tests/test_web.py's browser and page fixtures."""

from __future__ import annotations

from chathub.admin.client import call
from tests import test_web  # skips without playwright, as test_web
from tests.helpers import Chatter
from tests.test_web import expect, needs_chromium

pytestmark = needs_chromium

# test_web's fixtures: one Chromium per module, and its chat pages
browser = test_web.browser
open_page = test_web.open_page


async def test_deleted_messages_leave_the_page(daemon, open_page):
    """A deleted chat disappears from every page showing it, a deleted whisper from both of
    its views; a page opened afterwards never shows them; the rest stays."""
    alice = await open_page(daemon.port, "alice")
    bob = await open_page(daemon.port, "bob")
    async with await Chatter.connect(daemon.port, "spammer") as spammer:
        ids = {}
        for text in ("hello", "BUY PILLS", "see you"):
            await spammer.chat(text, ref=text)
            ids[text] = (await spammer.recv_type("chat"))["id"]
        await spammer.whisper("alice", "psst, pills", ref="w")
        whisper = (await spammer.recv_type("whisper"))["id"]
    for p in (alice, bob):
        await expect(p.texts).to_have_text(["hello", "BUY PILLS", "see you"]
                                           + (["psst, pills"] if p is alice else []))
    reply = await call(daemon.cfg.admin_socket, "delete", msg=ids["BUY PILLS"])
    assert reply["deleted"] is True
    assert (await call(daemon.cfg.admin_socket, "delete", msg=whisper))["deleted"] is True
    for p in (alice, bob):
        await expect(p.texts).to_have_text(["hello", "see you"])
    await expect(alice.page.locator(f'li[data-id="{whisper}"]')).to_have_count(0)
    carol = await open_page(daemon.port, "carol")
    await expect(carol.texts).to_have_text(["hello", "see you"])
    assert not alice.problems and not bob.problems
