"""examples/fastapi_app end to end: a shop signs a user in, mints a token the daemon
accepts, and announces a shipped order through the HTTP API to a client in the channel."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .helpers import Chatter

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

SECRET = "s" * 40
KEY = "shop-key-" + "k" * 20
APP = Path(__file__).parent.parent / "examples" / "fastapi_app" / "app.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("shop_example", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fetch(url: str, method: str = "GET", cookie: str | None = None) -> tuple[int, Any, str]:
    """(status, body, Set-Cookie) of one request (blocking: run it in a thread)."""
    req = urllib.request.Request(url, method=method)
    if cookie:
        req.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read().decode()
            ctype = r.headers.get("Content-Type", "")
            return r.status, json.loads(body) if "json" in ctype else body, \
                r.headers.get("Set-Cookie", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), ""


@pytest.fixture
async def shop(daemon_factory: Any) -> Any:
    """The daemon (token mode, one API key) and the shop served by uvicorn in this loop."""
    daemon = await daemon_factory(auth={"mode": "token", "secret": SECRET},
                                  api={"keys": [KEY]})
    app = load_example().create_app(f"http://127.0.0.1:{daemon.port}", SECRET, KEY)
    # Bound here, so requests wait in the backlog until uvicorn accepts them: no polling.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield daemon, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def test_shop_announces_a_shipped_order(shop: Any) -> None:
    daemon, url = shop
    status, _, _ = await asyncio.to_thread(fetch, f"{url}/token")
    assert status == 401  # not signed in: no token
    status, body, cookie = await asyncio.to_thread(fetch, f"{url}/login?user=alice")
    assert status == 200 and body == {"user": "alice"}
    cookie = cookie.split(";", 1)[0]
    status, page, _ = await asyncio.to_thread(fetch, f"{url}/", cookie=cookie)
    assert status == 200 and f"http://127.0.0.1:{daemon.port}/chathub.js" in page
    status, body, _ = await asyncio.to_thread(fetch, f"{url}/token", cookie=cookie)
    assert status == 200
    async with await Chatter.connect(daemon.port, token=body["token"]) as alice:
        assert alice.welcome["user"] == "alice"  # the daemon accepted the shop's token
        await alice.send(type="subscribe", channel="orders")
        await alice.recv_type("subscribed")
        status, shipped, _ = await asyncio.to_thread(
            fetch, f"{url}/orders/1234/ship", "POST", cookie)
        assert status == 200 and shipped["shipped"] is True
        got = await alice.recv_type("chat")
        assert (got["channel"], got["from"], got["text"]) == ("orders", "system",
                                                              "order 1234 shipped")
        assert got["id"] == shipped["message_id"]
        # shipping again (a retry) announces nothing new: the same message id
        status, again, _ = await asyncio.to_thread(
            fetch, f"{url}/orders/1234/ship", "POST", cookie)
        assert again["message_id"] == shipped["message_id"]
        await alice.send(type="chat", channel="orders", text="thanks")
        assert (await alice.recv_type("chat"))["text"] == "thanks"
