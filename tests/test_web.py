"""The browser client (chathub/web) end to end: real Chromium, real daemon, real services.

Each test opens pages with Playwright against an in-process daemon and checks what
a person would see. Waits are Playwright's auto-waiting ``expect`` assertions, never
sleeps. Set CHATHUB_WEB_SCREENSHOT=docs/screenshot.png to save the picture of the
chat test used in the docs.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chathub.edge import auth
from tests.helpers import Chatter

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: ms an expect() waits by default; a reconnect after a restart gets RECONNECT_MS
EXPECT_MS = 10_000
RECONNECT_MS = 20_000

#: every browser test module's mark: without Debian's Chromium they cannot run
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) "
           "to run the browser tests")
pytestmark = needs_chromium
pw = pytest.importorskip(
    "playwright.async_api",
    reason="playwright is not installed: .venv/bin/pip install -e '.[test]'")
expect = pw.expect
expect.set_options(timeout=EXPECT_MS)

XSS_IMG = '<img src=x onerror="alert(1)">'
XSS_SCRIPT = "<script>alert('xss')</script>"


@dataclass
class ChatPage:
    """One browser tab on the chat page, plus what it noticed along the way."""

    page: pw.Page
    #: messages of every alert/confirm/prompt the page opened (an XSS would add one)
    dialogs: list[str] = field(default_factory=list)
    #: uncaught script errors and CSP violations
    problems: list[str] = field(default_factory=list)
    #: URLs of every WebSocket the page opened, in order
    sockets: list[str] = field(default_factory=list)

    @property
    def texts(self) -> pw.Locator:
        """The text of every chat and whisper in the list, in order."""
        return self.page.locator("#messages li.msg .text")

    @property
    def conn(self) -> pw.Locator:
        return self.page.locator("#conn")

    @property
    def banner(self) -> pw.Locator:
        return self.page.locator("#banner")

    @property
    def send_error(self) -> pw.Locator:
        return self.page.locator("#send-error")

    @property
    def login_error(self) -> pw.Locator:
        return self.page.locator("#login-error")

    async def join(self, name: str = "", token: str = "") -> None:
        """Fill the login form and press Enter (does not wait for the outcome)."""
        await self.page.locator("#name").fill(name)
        await self.page.locator("#token").fill(token)
        await self.page.locator("#name").press("Enter")

    async def send(self, text: str) -> None:
        """Type into the composer and press Enter."""
        box = self.page.locator("#text")
        await box.fill(text)
        await box.press("Enter")


OpenPage = Callable[..., Awaitable[ChatPage]]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[pw.Browser]:
    """One headless Chromium for the module; each page gets its own context."""
    async with pw.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        await b.close()


@pytest.fixture
async def open_page(browser: pw.Browser) -> AsyncIterator[OpenPage]:
    """Open the chat page of a daemon, optionally joined as a user; checks for script errors."""
    pages: list[ChatPage] = []
    contexts: list[pw.BrowserContext] = []

    async def open_(port: int, user: str | None = None,
                    viewport: tuple[int, int] = (1000, 640)) -> ChatPage:
        ctx = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        contexts.append(ctx)
        page = await ctx.new_page()
        cp = ChatPage(page)
        pages.append(cp)
        page.on("dialog", lambda d: (cp.dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
        page.on("pageerror", lambda e: cp.problems.append(f"page error: {e}"))
        page.on("console", lambda m: cp.problems.append(m.text)
                if m.type == "error" and "Content Security Policy" in m.text else None)
        page.on("websocket", lambda ws: cp.sockets.append(ws.url))
        await page.goto(f"http://127.0.0.1:{port}/")
        if user is not None:
            await cp.join(user)
            await expect(cp.conn).to_have_text("Connected")
            await expect(page.locator("#text")).to_be_focused()
        return cp

    yield open_
    for ctx in contexts:
        await ctx.close()
    for cp in pages:
        assert cp.problems == [], cp.problems
        assert cp.dialogs == [], cp.dialogs


async def run_cli(*args: str) -> tuple[int, str]:
    """Run the real ``chathub`` command; return (exit code, output)."""
    script = Path(sys.executable).with_name("chathub")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from chathub.cli import app; app()"]
    proc = await asyncio.create_subprocess_exec(*cmd, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_two_users_chat_and_whisper_while_a_third_sees_only_the_chat(daemon, open_page):
    """Chat reaches three pages; a whisper (click or /w) shows on both sides only."""
    alice = await open_page(daemon.port, "alice")
    bob = await open_page(daemon.port, "bob")
    carol = await open_page(daemon.port, "carol")
    assert alice.sockets == [f"ws://127.0.0.1:{daemon.port}/ws?user=alice"]
    await expect(alice.page.locator("#users li")).to_have_text(["alice you", "bob", "carol"])
    await expect(carol.page.locator("#users li")).to_have_text(["alice", "bob", "carol you"])

    await alice.send("Morning! Is the deploy still planned for 3 pm?")
    await bob.send("Yes — I'll post here when it starts.")
    await carol.send("I'll keep an eye on the dashboards.")
    chat = ["Morning! Is the deploy still planned for 3 pm?", "Yes — I'll post here when it starts.",
            "I'll keep an eye on the dashboards."]
    for p in (alice, bob, carol):
        await expect(p.texts).to_have_text(chat)
    await expect(alice.page.locator("#messages li.own .text")).to_have_text([chat[0]])
    await expect(alice.page.locator("#messages li.msg").first.locator(".from")).to_have_text("alice")
    await expect(alice.page.locator("#messages li.msg time").first).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))

    await bob.page.get_by_role("button", name="Whisper to alice").click()
    await expect(bob.page.locator("#target")).to_contain_text("Whispering to alice")
    await expect(bob.page.locator("#text")).to_be_focused()
    await bob.send("Can you review my PR before then?")
    await alice.send("/w bob Sure, I'm on it.")
    whispers = ["Can you review my PR before then?", "Sure, I'm on it."]
    for p in (alice, bob):
        await expect(p.page.locator("#messages li.whisper .text")).to_have_text(whispers)
        await expect(p.page.locator("#messages li.whisper .kind")).to_have_text(["whisper", "whisper"])
    await expect(alice.page.locator("#messages li.whisper").first.locator(".meta")).to_contain_text("bob → alice")

    await carol.send("Dashboards look green.")
    await expect(carol.texts).to_have_text([*chat, "Dashboards look green."])
    await expect(carol.page.locator("#messages li.whisper")).to_have_count(0)
    await expect(alice.texts).to_have_text([*chat, *whispers, "Dashboards look green."])

    if path := os.environ.get("CHATHUB_WEB_SCREENSHOT"):
        await alice.page.screenshot(path=path)

    await alice.page.set_viewport_size({"width": 360, "height": 640})
    await expect(alice.page.locator("#text")).to_be_in_viewport()
    wide = await alice.page.evaluate("document.documentElement.scrollWidth")
    assert wide <= 360, f"page is {wide}px wide in a 360px window"


async def test_markup_in_messages_and_names_renders_as_literal_text(daemon, open_page):
    """<script> and <img onerror> in chat, whispers and the name field stay text."""
    bob = await open_page(daemon.port, "bob")
    async with await Chatter.connect(daemon.port, "mallory") as mallory:
        await mallory.chat(XSS_SCRIPT)
        await mallory.chat(XSS_IMG)
        await mallory.whisper("bob", XSS_IMG)
        # bob's page has mallory's three before it sends, so the order below is not a race
        await expect(bob.texts).to_have_text([XSS_SCRIPT, XSS_IMG, XSS_IMG])
        await bob.send("<b>not bold</b>")
        await expect(bob.texts).to_have_text([XSS_SCRIPT, XSS_IMG, XSS_IMG, "<b>not bold</b>"])
    await expect(bob.page.locator("#messages img, #messages script, #messages b")).to_have_count(0)

    eve = await open_page(daemon.port)
    await eve.join(XSS_IMG)
    await expect(eve.login_error).to_contain_text(f"“{XSS_IMG}” is not a valid name")
    await expect(eve.page.locator("#login-error *")).to_have_count(0)
    await expect(eve.page.locator("#name")).to_be_focused()
    assert eve.sockets == []
    # the dialogs/problems lists are checked when the fixture closes the pages


async def test_right_to_left_text_reads_right_to_left(daemon, open_page):
    """A Hebrew or Arabic message (and the box while typing one) takes its own direction,
    so its punctuation stays at its end; an English one stays left to right."""
    bob = await open_page(daemon.port, "bob")
    rtl = ["שלום, מה שלומך?", "مرحبا بالعالم!"]
    for text in [*rtl, "hello 👋"]:
        await bob.send(text)
    await expect(bob.texts).to_have_text([*rtl, "hello 👋"])
    dirs = await bob.texts.evaluate_all("els => els.map(e => e.matches(':dir(rtl)') ? 'rtl' : 'ltr')")
    assert dirs == ["rtl", "rtl", "ltr"]
    box = bob.page.locator("#text")
    await box.fill(rtl[0])
    assert await box.evaluate("e => e.matches(':dir(rtl)')")


async def test_kick_shows_a_notice_and_does_not_reconnect_by_itself(daemon, open_page):
    """Kicked (admin call, then the real CLI): a notice, no auto-reconnect, a button."""
    alice = await open_page(daemon.port, "alice")
    closed = daemon.kick("alice", "flooding the channel")
    assert (await closed if inspect.isawaitable(closed) else closed) == 1
    await expect(alice.banner).to_contain_text("disconnected by an operator (reason: flooding the channel)")
    await expect(alice.conn).to_have_text("Disconnected")
    reconnect = alice.page.get_by_role("button", name="Reconnect")
    await expect(reconnect).to_be_focused()

    # Through the admin socket, as an operator would: alice did not come back by herself.
    socket = str(daemon.cfg.admin_socket)
    code, out = await run_cli("kick", "alice", "--socket", socket)
    assert (code, "closed 0 connections of alice" in out) == (1, True), out
    assert len(alice.sockets) == 1

    await reconnect.click()
    await expect(alice.conn).to_have_text("Connected")
    await expect(alice.banner).to_be_hidden()
    code, out = await run_cli("kick", "alice", "--reason", "second warning", "--socket", socket)
    assert code == 0, out
    await expect(alice.banner).to_contain_text("second warning")
    await expect(alice.conn).to_have_text("Disconnected")


async def test_reconnects_after_a_daemon_restart_without_duplicates(daemon_factory, open_page):
    """Daemon stops: the page says it reconnects, then resumes with ?since= and no repeats."""
    first = await daemon_factory()
    port = first.port
    alice = await open_page(port, "alice")
    async with await Chatter.connect(port, "bob") as bob:
        ids = []
        for text in ("one", "two"):
            await bob.chat(text)
            ids.append((await bob.recv_type("chat"))["id"])
    await expect(alice.texts).to_have_text(["one", "two"])

    await first.stop()
    await expect(alice.banner).to_contain_text("The server is restarting")
    await expect(alice.banner).to_contain_text("Reconnecting")
    await expect(alice.conn).to_have_text("Reconnecting…")

    await daemon_factory(server={"port": port})
    async with await Chatter.connect(port, "bob") as bob:
        await bob.chat("three")
        await bob.recv_type("chat")
        await expect(alice.conn).to_have_text("Connected", timeout=RECONNECT_MS)
        await expect(alice.texts).to_have_text(["one", "two", "three"])
    await expect(alice.banner).to_be_hidden()
    await expect(alice.page.locator("#messages li.notice")).to_contain_text(["Reconnected"])
    assert alice.sockets[-1].endswith(f"&since={ids[-1]}"), alice.sockets
    await alice.send("four")
    await expect(alice.texts).to_have_text(["one", "two", "three", "four"])


async def test_names_refused_by_the_client_or_the_server_show_an_error(daemon_factory, open_page):
    """An invalid name is refused on the page; a refused token shows a message; a good one joins."""
    secret = "a-test-secret-that-is-long-enough-for-hs256"
    d = await daemon_factory(auth={"mode": "token", "secret": secret})
    page = await open_page(d.port)

    await page.join("two words")
    await expect(page.login_error).to_contain_text("“two words” is not a valid name")
    await expect(page.page.locator("#name")).to_have_attribute("aria-invalid", "true")
    assert page.sockets == []

    await page.join("alice")  # valid, but this server wants a token: HTTP 401
    await expect(page.login_error).to_contain_text("The server refused the connection")
    await page.join(token="not.a.token")
    await expect(page.login_error).to_contain_text("The server refused the connection")
    assert len(page.sockets) == 2 and "token=not.a.token" in page.sockets[1]

    await page.join(token=auth.mint("tokenuser", secret, 300))
    await expect(page.conn).to_have_text("Connected")
    await expect(page.page.locator("#me")).to_have_text("tokenuser")
    assert "?token=" in page.sockets[-1] and "user=" not in page.sockets[-1]


async def test_scrolling_up_loads_older_history_until_the_beginning(daemon_factory, open_page):
    """Older messages load on scrolling up, in order and without repeats, to the start."""
    d = await daemon_factory(cache={"history_on_join": 5})
    async with await Chatter.connect(d.port, "bob") as bob:
        for i in range(120):
            await bob.chat(f"msg {i:03d}")
        for _ in range(120):
            await bob.recv_type("chat")
    alice = await open_page(d.port, "alice", viewport=(900, 700))
    # 5 from the welcome do not fill the window, so one page is fetched at once
    await expect(alice.texts).to_have_count(55)
    scroller = alice.page.locator("#scroller")
    for expected in (105, 120):
        await scroller.evaluate("e => { e.scrollTop = 0; }")
        await expect(alice.texts).to_have_count(expected)
    await scroller.evaluate("e => { e.scrollTop = 0; }")
    await expect(alice.page.locator("#older-state")).to_have_text("This is the beginning of the history.")
    assert await alice.texts.all_text_contents() == [f"msg {i:03d}" for i in range(120)]


async def test_server_errors_are_shown_next_to_the_composer(daemon_factory, open_page):
    """too_long, unknown_user, blocked, bad_request and rate_limited are explained in place."""
    d = await daemon_factory(server={"max_text_chars": 40},
                             ratelimit={"chat_rate": 0.2, "chat_burst": 2},
                             moderation={"blocklist": ["spoilers"]})
    alice = await open_page(d.port, "alice")
    box = alice.page.locator("#text")

    await alice.send("x" * 41)
    await expect(alice.send_error).to_have_attribute("data-code", "too_long")
    await expect(alice.send_error).to_contain_text("longer than 40 characters")
    await expect(box).to_have_value("x" * 41)  # the text comes back to fix and resend

    await alice.send("/w nobody are you there?")
    await expect(alice.send_error).to_have_text("nobody is not online; the whisper was not delivered.")

    await alice.send("no spoilers please")
    await expect(alice.send_error).to_have_attribute("data-code", "blocked")

    await alice.send("tab\tok but \x01 is not")
    await expect(alice.send_error).to_have_attribute("data-code", "bad_request")
    await expect(alice.send_error).to_contain_text("control characters")

    for text in ("first", "second"):
        await alice.send(text)
    await expect(alice.texts).to_have_text(["first", "second"])
    await expect(alice.send_error).to_be_hidden()
    await alice.send("third")
    await expect(alice.send_error).to_have_attribute("data-code", "rate_limited")
    await expect(alice.send_error).to_contain_text(re.compile(r"wait \d+(\.\d)? s, then send again"))
    await expect(box).to_have_value("third")
