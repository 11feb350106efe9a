"""The HTTP API (chathub/edge/api.py) and its clients (chathub/api), against a real daemon.

Chat users are chathub.client.ChatClient. Raw HTTP (:func:`raw`) is kept for refusals and
the OpenAPI check (exact statuses, malformed requests); raw WebSocket frames
(tests.helpers.Chatter) where a message must arrive exactly once (the client drops a
repeated id, which would hide a duplicate).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from chathub.api import (
    APIClient,
    AsyncAPIClient,
    BadRequest,
    Blocked,
    RateLimited,
    Refused,
    UnknownUser,
)
from chathub.api.client import build, parse
from chathub.client import Chat, Kicked, Unsubscribed
from chathub.client import Whisper as WhisperEvent

from .helpers import Chatter, chat_client, event

KEY = "k" * 24
OTHER = "o" * 24


async def raw(port: int, data: bytes) -> tuple[int, bytes]:
    """Send ``data`` as is; the status and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(1 << 20), 10)
    while True:
        more = await asyncio.wait_for(reader.read(1 << 20), 10)
        if not more:
            break
        answer += more
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def post(path: str, body: bytes, key: str | None = KEY, extra: str = "") -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST /api/v1/{path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.fixture
async def api_daemon(daemon_factory: Any) -> Any:
    return await daemon_factory(api={"keys": [KEY, OTHER], "rate": 10000.0, "burst": 10000})


def client(port: int, key: str = KEY) -> AsyncAPIClient:
    return AsyncAPIClient(f"http://127.0.0.1:{port}", key)


async def test_api_is_off_without_keys(daemon: Any) -> None:
    """No api.keys: every API path answers 404, even with a key."""
    status, _ = await raw(daemon.port, post("publish", b'{"channel":"general"}'))
    assert status == 404
    with pytest.raises(Refused) as info:
        await client(daemon.port).channels()
    assert info.value.status == 404


async def test_publish_reaches_subscribers_with_id_and_ts(api_daemon: Any) -> None:
    """A publish is delivered to the channel's clients and stored in its history."""
    port = api_daemon.port
    async with chat_client(port, "alice") as alice:
        msg = await client(port).publish("general", "order 1234 shipped", sender="system")
        got = await event(alice, Chat)
        assert got.id == msg["id"] and got.from_ == "system"
        assert got.text == "order 1234 shipped" and got.channel == "general"
        assert msg["ts"] == int(msg["id"].split("-")[0])
        history = await client(port).history("general")
        assert [m["id"] for m in history][-1] == msg["id"]


async def test_publish_as_a_real_user_and_in_another_channel(api_daemon: Any) -> None:
    """Any valid user name may be the sender; the message goes to that channel only."""
    port = api_daemon.port
    async with chat_client(port, "bob") as bob:
        await bob.subscribe("orders")
        await client(port).publish("orders", "hi from carol", sender="carol")
        got = await event(bob, Chat)
        assert (got.channel, got.from_) == ("orders", "carol")


async def test_idempotency_key_publishes_once(api_daemon: Any) -> None:
    """A retried publish with the same idempotency_key returns the first result and
    sends nothing again, also through another daemon sharing Valkey."""
    port = api_daemon.port
    async with await Chatter.connect(port, "dave") as dave:
        first = await client(port).publish("general", "once", idempotency_key="order-1")
        again = await client(port).publish("general", "once", idempotency_key="order-1")
        assert again["id"] == first["id"] and again.get("replayed") is True
        await client(port).publish("general", "marker")
        assert (await dave.recv_type("chat"))["text"] == "once"
        assert (await dave.recv_type("chat"))["text"] == "marker"
        # a different key's namespace is its own
        other = await client(port, OTHER).publish("general", "once", idempotency_key="order-1")
        assert other["id"] != first["id"]


async def test_concurrent_retries_publish_once(api_daemon: Any) -> None:
    """Ten concurrent requests with one idempotency_key: one message, ten equal answers."""
    c = client(api_daemon.port)
    results = await asyncio.gather(*[c.publish("general", "x", idempotency_key="burst")
                                     for _ in range(10)])
    assert len({r["id"] for r in results}) == 1
    history = await c.history("general")
    assert sum(1 for m in history if m["id"] == results[0]["id"]) == 1


async def test_whisper_from_system_name(api_daemon: Any) -> None:
    """A whisper reaches the user; from a name that is not a system name it is refused."""
    port = api_daemon.port
    async with chat_client(port, "erin") as erin:
        msg = await client(port).whisper("erin", "your order shipped")
        got = await event(erin, WhisperEvent)
        assert (got.id, got.from_, got.to) == (msg["id"], "system", "erin")
        with pytest.raises(BadRequest, match="from"):
            await client(port).whisper("erin", "x", sender="erin")
    with pytest.raises(UnknownUser):
        await client(port).whisper("nobody", "hello")


async def test_users_channels_kick(api_daemon: Any) -> None:
    """users, channels and kick answer as the hub sees it; a kick with a channel takes the
    user out of that channel only, with the reason as the frame's message."""
    port = api_daemon.port
    c = client(port)
    async with chat_client(port, "fred") as fred:
        assert "fred" in await c.users()
        assert "fred" in await c.users("general")
        names = {ch["name"]: ch["members"] for ch in await c.channels()}
        assert names["general"] >= 1
        await fred.subscribe("games")
        assert await c.kick("fred", "off topic", channel="games") == 1
        out = await event(fred, Unsubscribed)
        assert (out.channel, out.reason, out.message) == ("games", "kicked", "off topic")
        assert "fred" not in await c.users("games")
        assert "fred" in await c.users("general")  # still connected
        with pytest.raises(BadRequest, match="'channel'"):
            await c.kick("fred", channel="no spaces")
        assert await c.kick("fred", "bye") == 1
        assert (await event(fred, Kicked)).reason == "bye"


async def test_moderation_applies(daemon_factory: Any) -> None:
    """A publish passes the same moderation chain as a client's chat."""
    d = await daemon_factory(api={"keys": [KEY]}, moderation={"blocklist": ["darn"]})
    with pytest.raises(Blocked):
        await client(d.port).publish("general", "darn it")


async def test_refusals(api_daemon: Any) -> None:
    """401 without or with a wrong key, 400 naming the field, 413 for a large body,
    400 for a body that is not JSON, 405 for the wrong method."""
    port = api_daemon.port
    assert (await raw(port, post("publish", b"{}", key=None)))[0] == 401
    assert (await raw(port, post("publish", b"{}", key="x" * 24)))[0] == 401
    status, body = await raw(port, post("publish", b'{"channel":"general","from":"system"}'))
    assert status == 400 and "'text'" in json.loads(body)["message"]
    status, body = await raw(port, post("publish", b"not json"))
    assert status == 400 and json.loads(body)["error"] == "bad_request"
    big = (f"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
           f"Content-Length: {70_000}\r\n\r\n").encode()
    assert (await raw(port, big))[0] == 413
    status, _ = await raw(port, f"GET /api/v1/publish HTTP/1.1\r\nHost: x\r\n"
                                f"Authorization: Bearer {KEY}\r\n\r\n".encode())
    assert status == 405
    chunked = (f"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode()
    assert (await raw(port, chunked))[0] == 400
    two = post("publish", b"{}", extra="Content-Length: 3\r\n")
    assert (await raw(port, two))[0] == 400
    # a body on a non-API path is still refused as before
    status, _ = await raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert status == 400


async def test_key_rate_budget(daemon_factory: Any) -> None:
    """Past its burst a key gets 429 with retry_after; another key is unaffected."""
    d = await daemon_factory(api={"keys": [KEY, OTHER], "rate": 0.5, "burst": 3})
    c = client(d.port)
    for _ in range(3):
        await c.channels()
    with pytest.raises(RateLimited) as info:
        await c.channels()
    assert info.value.retry_after is not None and info.value.retry_after > 0
    await client(d.port, OTHER).channels()


async def test_openapi_document_matches(api_daemon: Any) -> None:
    """Every path of openapi.json answers, and each required field is refused when missing,
    saying it is required (of a body with alternatives, ``anyOf``, the first alternative's)."""
    port = api_daemon.port
    status, body = await raw(port, b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    doc = json.loads(body)
    assert set(doc["paths"]) == {"/publish", "/whisper", "/users", "/channels", "/history",
                                 "/kick", "/delete", "/purge", "/ban", "/unban", "/mute",
                                 "/unmute", "/bans"}
    full = {"channel": "general", "text": "t", "from": "system", "to": "ghost", "user": "ghost",
            "id": "1-0", "seconds": 60}
    async with chat_client(port, "ghost"):
        for path, item in doc["paths"].items():
            name = path.strip("/")
            for method, op in item.items():
                if method == "post":
                    schema = op["requestBody"]["content"]["application/json"]["schema"]
                    required = schema["required"] + (schema["anyOf"][0]["required"]
                                                     if "anyOf" in schema else [])
                    body_ok = {k: full[k] for k in required}
                    ok = parse(await _send(port, build("h", KEY, "POST", name, body=body_ok)))
                    assert isinstance(ok, dict)
                    for field in required:
                        missing = {k: v for k, v in body_ok.items() if k != field}
                        status, err = await raw(port, build("h", KEY, "POST", name,
                                                            body=missing))
                        assert status == 400, (path, field)
                        message = json.loads(err)["message"]
                        assert f"'{field}'" in message and "required" in message, (path, message)
                else:
                    required = [p["name"] for p in op["parameters"] if p["required"]]
                    query = {k: full[k] for k in required}
                    assert isinstance(parse(await _send(port, build("h", KEY, "GET", name,
                                                                    query))), dict)
                    for field in required:
                        status, err = await raw(port, build("h", KEY, "GET", name, {}))
                        assert status == 400, (path, field)
                        message = json.loads(err)["message"]
                        assert f"'{field}'" in message and "required" in message, (path, message)


async def _send(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = await asyncio.wait_for(reader.read(1 << 20), 10)
    while more := await asyncio.wait_for(reader.read(1 << 20), 10):
        out += more
    writer.close()
    return out


async def test_sync_client(api_daemon: Any) -> None:
    """The blocking client does the same, from a thread."""
    port = api_daemon.port
    api = APIClient(f"http://127.0.0.1:{port}", KEY)
    async with chat_client(port, "gina") as gina:
        msg = await asyncio.to_thread(api.publish, "general", "sync hello")
        assert (await event(gina, Chat)).id == msg["id"]
        assert "gina" in await asyncio.to_thread(api.users)
    bad = APIClient(f"http://127.0.0.1:{port}", "z" * 24)
    with pytest.raises(Refused) as info:
        await asyncio.to_thread(bad.channels)
    assert info.value.status == 401


async def test_idempotency_holds_across_hubs(daemon_factory: Any) -> None:
    """A retry that reaches another hub sharing Valkey returns the first result; a client
    on the second hub got the message once, from the first."""
    a, b = [await daemon_factory(api={"keys": [KEY]}, hub={"node_id": f"node{i}"})
            for i in range(2)]
    async with await Chatter.connect(b.port, "hana") as hana:
        first = await client(a.port).publish("general", "cross-hub", idempotency_key="x-1")
        again = await client(b.port).publish("general", "cross-hub", idempotency_key="x-1")
        assert again["id"] == first["id"] and again["replayed"] is True
        got = await hana.recv_type("chat")
        assert got["id"] == first["id"]
        marker = await client(b.port).publish("general", "after")
        assert (await hana.recv_type("chat"))["id"] == marker["id"]  # nothing in between


async def test_api_spends_the_key_budget_not_the_senders(daemon_factory: Any) -> None:
    """A user who spent their chat budget can still be published as through the API, and
    publishing as a user through the API leaves that user's chat budget untouched."""
    from chathub.client import ChatClient
    from chathub.client import RateLimited as ChatRateLimited

    d = await daemon_factory(api={"keys": [KEY]}, ratelimit={"chat_rate": 0.1, "chat_burst": 2})
    url, c = f"ws://127.0.0.1:{d.port}/ws", client(d.port)
    async with ChatClient(url, user="ivy", reconnect=False) as ivy:
        await ivy.chat("one")
        await ivy.chat("two")
        with pytest.raises(ChatRateLimited):
            await ivy.chat("three")
        for i in range(5):  # more than the chat burst, all through
            msg = await c.publish("general", f"as ivy {i}", sender="ivy")
            assert msg["from"] == "ivy"
        with pytest.raises(ChatRateLimited):  # and ivy's own budget is still spent
            await ivy.chat("four")
    for i in range(5):
        await c.publish("general", f"as jack {i}", sender="jack")
    async with ChatClient(url, user="jack", reconnect=False) as jack:
        await jack.chat("jack one")  # the whole burst is still there
        await jack.chat("jack two")
        with pytest.raises(ChatRateLimited):
            await jack.chat("jack three")


async def test_muted_sender_is_refused(daemon_factory: Any) -> None:
    """A muted user cannot speak through the API either: 403 muted, nothing delivered."""
    from chathub.client import ServerError

    from .helpers import wait_for
    from .test_bans import cli

    d = await daemon_factory(api={"keys": [KEY]})
    out = await cli("mute", "mia", "--for", "10m", "--socket", str(d.cfg.admin_socket))
    assert out.returncode == 0, out.stderr
    await wait_for(lambda: d.node.bans.active.muted("mia") is not None, what="the mute")
    with pytest.raises(ServerError) as info:
        await client(d.port).publish("general", "hello", sender="mia")
    assert info.value.code == "muted" and info.value.status == 403  # type: ignore[attr-defined]
    await client(d.port).publish("general", "hello", sender="system")
