"""The client module /chathub.js embedded in another site's page, in real Chromium.

The page is served by a small HTTP server of the test on another port (another
origin than the daemon), imports the module from the daemon, and records every
event it gets in ``window.log``. Waits are on that log (``wait_for_function``),
never sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.helpers import Chatter
from tests.test_web import (  # skips without playwright, as test_web
    CHROMIUM,
    LAUNCH_ARGS,
    RECONNECT_MS,
    needs_chromium,
    pw,
)

pytestmark = needs_chromium

#: ms the page waits for an event before the test fails
WAIT_MS = 10_000

PAGE = """<!doctype html>
<meta charset="utf-8"><title>embedding chathub</title>
<script type="module">
import {{ ChatHub }} from "http://127.0.0.1:{port}/chathub.js";
window.log = [];
window.hub = new ChatHub("ws://127.0.0.1:{port}/ws", {{ user: "{user}" }},
                         {{ backoff: {{ initialMs: 200, maxMs: 1000 }} }});
for (const t of ["welcome", "message", "join", "disconnect", "gap", "shutdown", "kicked", "closed", "error"]) {{
  hub.addEventListener(t, (e) => log.push({{ type: t, detail: JSON.parse(JSON.stringify(e.detail)) }}));
}}
hub.connect();
</script>
"""


@pytest.fixture
async def site() -> AsyncIterator[Any]:
    """Serve one HTML page from 127.0.0.1 on a port of its own: another site."""
    servers: list[asyncio.Server] = []

    async def serve_page(html: str) -> str:
        body = html.encode()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"

    yield serve_page
    for s in servers:
        s.close()
        await s.wait_closed()


@pytest.fixture
async def embed(browser_ctx, site) -> Any:
    """Open the embedding page for a daemon port and user; returns the Playwright page."""
    async def open_(port: int, user: str) -> pw.Page:
        page = await browser_ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append("console: " + m.text) if m.type == "error" else None)
        page.errors = errors  # type: ignore[attr-defined]
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.sockets = sockets  # type: ignore[attr-defined]
        await page.goto(await site(PAGE.format(port=port, user=user)))
        try:
            await wait_event(page, "welcome")
        except pw.TimeoutError:
            raise AssertionError(f"no welcome; page errors: {errors}, sockets: {sockets}") from None
        return page
    return open_


@pytest.fixture(scope="module")
async def browser_ctx() -> AsyncIterator[pw.BrowserContext]:
    async with pw.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        ctx = await b.new_context()
        yield ctx
        await ctx.close()
        await b.close()


async def wait_event(page: pw.Page, type_: str, count: int = 1, timeout: int = WAIT_MS) -> None:
    await page.wait_for_function(
        f"window.log && log.filter(e => e.type === {type_!r}).length >= {count}", timeout=timeout)


async def messages(page: pw.Page) -> list[dict[str, Any]]:
    return await page.evaluate("log.filter(e => e.type === 'message').map(e => e.detail)")


async def test_the_module_connects_sends_and_receives_from_another_site(daemon, embed):
    page = await embed(daemon.port, "embedder")
    async with await Chatter.connect(daemon.port, "bob") as bob:
        sent = await page.evaluate("hub.chat('hello from a blog')")
        assert sent["from"] == "embedder" and sent["ref"].startswith("js") and sent["id"]
        assert (await bob.recv_type("chat"))["id"] == sent["id"]
        await bob.chat("hello back")
        await bob.whisper("embedder", "psst")
        await wait_event(page, "message", 3)
        got = await messages(page)
        assert [(m["type"], m["text"]) for m in got] == [
            ("chat", "hello from a blog"), ("chat", "hello back"), ("whisper", "psst")]
        assert await page.evaluate("hub.users()") == ["bob", "embedder"]
        # typed errors: the server's code, and v2 frames refused by a v1 server
        err = await page.evaluate("hub.whisper('nobody', 'hi').catch(e => [e.name, e.code])")
        assert err == ["ChatHubError", "unknown_user"]
        # channels (protocol v2): subscribe, a message in the channel, refusals typed
        assert (await page.evaluate("hub.subscribe('ops')"))["channel"] == "ops"
        ops = await page.evaluate("hub.chat('in ops', {channel: 'ops'})")
        assert ops["channel"] == "ops" and await page.evaluate("hub.lastId('ops')") == ops["id"]
        err = await page.evaluate("hub.chat('x', {channel: 'elsewhere'}).catch(e => e.code)")
        assert err == "not_subscribed"
        assert await page.evaluate("hub.lastId()") == got[-1]["id"]  # the default channel's
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_module_reconnects_after_a_restart_without_duplicates(daemon_factory, embed):
    first = await daemon_factory()
    port = first.port
    page = await embed(port, "embedder")
    ids = []
    async with await Chatter.connect(port, "bob") as bob:
        for text in ("one", "two"):
            await bob.chat(text)
            ids.append((await bob.recv_type("chat"))["id"])
    await wait_event(page, "message", 2)

    await first.stop()
    await wait_event(page, "shutdown")
    # the first disconnect is the shutdown's; the second, a reconnect refused while no daemon
    # listens: the outage is always exercised, whatever the restart's speed
    await wait_event(page, "disconnect", 2)
    await daemon_factory(server={"port": port})
    async with await Chatter.connect(port, "bob") as bob:
        await bob.chat("three")
        ids.append((await bob.recv_type("chat"))["id"])
        await wait_event(page, "welcome", 2, timeout=RECONNECT_MS)
    await page.wait_for_function(
        "log.filter(e => e.type === 'message').length"
        " + log.filter(e => e.type === 'welcome')[1].detail.history.length >= 3", timeout=WAIT_MS)
    welcomes = await page.evaluate("log.filter(e => e.type === 'welcome').map(e => e.detail)")
    assert welcomes[1]["reconnected"] is True and welcomes[1]["recovered"] is True
    delivered = [m["id"] for m in await messages(page)] + [m["id"] for m in welcomes[1]["history"]]
    assert sorted(delivered) == sorted(ids) and len(delivered) == len(set(delivered))
    assert await page.evaluate("log.filter(e => e.type === 'gap').length") == 0
    assert page.sockets[-1] == f"ws://127.0.0.1:{port}/ws?user=embedder&since={ids[1]}"  # type: ignore[attr-defined]
    assert (await page.evaluate("hub.chat('back again')"))["text"] == "back again"
    # Chromium itself logs each connection refused during the outage (the WebSocket and the
    # module's /healthz probe); nothing else may be logged, and no script error thrown
    refused = [e for e in page.errors if _refused_while_down(e, port)]  # type: ignore[attr-defined]
    assert refused and refused == page.errors  # type: ignore[attr-defined]


def _refused_while_down(error: str, port: int) -> bool:
    """Whether a console line is Chromium's own report of a connection to ``port`` refused."""
    return error in (
        "console: Failed to load resource: net::ERR_CONNECTION_REFUSED",
    ) or (error.startswith(f"console: WebSocket connection to 'ws://127.0.0.1:{port}/ws?")
          and error.endswith("failed: Error in connection establishment: "
                             "net::ERR_CONNECTION_REFUSED"))


async def test_a_kick_ends_the_module_without_reconnecting(daemon, embed):
    page = await embed(daemon.port, "embedder")
    assert await daemon.kick("embedder", "spam") == 1
    await wait_event(page, "kicked")
    assert await page.evaluate("log.find(e => e.type === 'kicked').detail.reason") == "spam"
    assert await page.evaluate("hub.connected") is False
    assert await page.evaluate("hub.chat('x').catch(e => e.code)") == "not_connected"
    assert len(page.sockets) == 1  # type: ignore[attr-defined]


V2_PAGE = """<!doctype html>
<meta charset="utf-8"><title>chathub channels</title>
<script type="module">
import {{ ChatHub }} from "http://127.0.0.1:{port}/chathub.js";
window.log = [];
window.hub = new ChatHub("{ws}", {{ user: "alice" }},
                         {{ healthUrl: null, backoff: {{ initialMs: 50, maxMs: 100 }} }});
for (const t of ["welcome", "message", "subscribed", "disconnect", "gap", "shutdown", "unknown"]) {{
  hub.addEventListener(t, (e) => log.push({{ type: t, detail: JSON.parse(JSON.stringify(e.detail)) }}));
}}
hub.connect();
</script>
"""


async def test_the_module_resubscribes_each_channel_from_its_own_since_without_duplicates(
        daemon, browser_ctx, site):
    """Against the fake protocol v2 server of test_client_v2: subscribe, channel only
    when given, resubscribe with since per channel after a restart, overlap dropped."""
    from websockets.asyncio.server import serve

    from tests.test_client_v2 import FakeV2

    server = FakeV2()
    async with serve(server.handler, "127.0.0.1", 0) as s:
        ws_url = f"ws://127.0.0.1:{s.sockets[0].getsockname()[1]}/ws"
        page = await browser_ctx.new_page()
        await page.goto(await site(V2_PAGE.format(port=daemon.port, ws=ws_url)))
        await wait_event(page, "welcome")
        await page.evaluate("hub.subscribe('ops')")
        await page.evaluate("hub.chat('deploying', {channel: 'ops'})")
        await page.evaluate("hub.chat('hello all')")
        for ch, text in [("ops", "o1"), (None, "g1")]:
            await server.broadcast(server.stamp(ch, text))
        await wait_event(page, "message", 4)
        since = {"ops": await page.evaluate("hub.lastId('ops')"), None: await page.evaluate("hub.lastId()")}

        await server.restart_connections()
        await wait_event(page, "disconnect")
        server.stamp("ops", "o2 while away")
        await wait_event(page, "subscribed", 2)
        await server.broadcast({"type": "poll", "question": "lunch?"})
        await wait_event(page, "unknown")

        sent = [{k: v for k, v in f.items() if k != "ref"} for f in server.received[0]]
        assert sent == [{"type": "subscribe", "channel": "ops"},
                        {"type": "chat", "text": "deploying", "channel": "ops"},
                        {"type": "chat", "text": "hello all"}]
        assert server.queries[1]["since"] == [since[None]]
        assert [f.get("since") for f in server.received[1]] == [since["ops"]]
        subs = await page.evaluate("log.filter(e => e.type === 'subscribed').map(e => e.detail)")
        # the fake server repeats the message at since: the module drops it
        assert [m["text"] for m in subs[1]["history"]] == ["o2 while away"]
        welcomes = await page.evaluate("log.filter(e => e.type === 'welcome').map(e => e.detail)")
        assert welcomes[1]["reconnected"] and welcomes[1]["history"] == []
        texts = [m["text"] for m in await messages(page)]
        assert texts == ["deploying", "hello all", "o1", "g1"]
