"""The hub against real clients: broadcast, whispers, presence, errors, slow consumers.

Behaviour is tested through chathub.client.ChatClient. Raw frames (tests.helpers.Chatter,
raw sockets) stay where they are the point: malformed and binary frames, an oversized
frame's close code, a spoofed ``from``, refused upgrades, a client that stops reading
(a socket that never reads), a window of chats pipelined without waiting for replies,
and chats sent with no wait for their echo right before closing.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import websockets

from chathub import closecodes
from chathub.client import Chat, Closed, Join, Leave, Shutdown, UnknownUser, Whisper
from tests.helpers import Chatter, chat_client, connected, event, wait_for, ws_url


async def test_broadcast_reaches_every_connection_including_sender(daemon):
    """A chat reaches all 20 connected clients, the sender included, with one id."""
    clients = [await connected(daemon.port, f"u{i}") for i in range(20)]
    sent = await clients[0].chat("hello all")
    got = [await event(c, Chat) for c in clients]
    assert {m.id for m in got} == {sent.id}
    assert all(m.from_ == "u0" and m.text == "hello all" for m in got)
    assert got[0].ref is not None and got[1].ref is None  # the ref only on the sender's copy
    await asyncio.gather(*(c.close() for c in clients))


async def test_whisper_reaches_all_connections_of_recipient_and_sender_only(daemon):
    """A whisper goes to both tabs of the recipient and to the sender, nobody else."""
    a, b1, b2, c = [await connected(daemon.port, n) for n in ("alice", "bob", "bob", "carol")]
    await a.whisper("bob", "secret")
    got = [await event(x, Whisper) for x in (a, b1, b2)]
    assert all((g.text, g.from_, g.to) == ("secret", "alice", "bob") for g in got)
    await c.chat("marker")
    assert isinstance(await event(c, Chat, Whisper), Chat)
    await asyncio.gather(*(x.close() for x in (a, b1, b2, c)))


async def test_whisper_to_offline_user_is_unknown_user(daemon):
    """Whispering someone offline is refused with unknown_user, matched to the request."""
    async with chat_client(daemon.port, "alice") as a:
        with pytest.raises(UnknownUser):
            await a.whisper("nobody", "hi")


async def test_users_lists_online_users_sorted(daemon):
    """users answers with every online name, sorted, once per user."""
    cs = [await connected(daemon.port, n) for n in ("zed", "amy", "amy", "bo")]
    assert await cs[0].users() == ["amy", "bo", "zed"]
    assert cs[-1].welcome.users == ["amy", "bo", "zed"]
    await asyncio.gather(*(c.close() for c in cs))


async def test_join_and_leave_only_on_first_and_last_connection(daemon):
    """join on a user's first connection, leave on its last, never per tab."""
    watcher = await connected(daemon.port, "watcher")
    t1 = await connected(daemon.port, "tabby")
    assert (await event(watcher, Join)).user == "tabby"
    t2 = await connected(daemon.port, "tabby")
    await t1.close()
    await t2.chat("still here")
    assert isinstance(await event(watcher, Join, Leave, Chat), Chat)
    await t2.close()
    leave = await event(watcher, Join, Leave)
    assert isinstance(leave, Leave) and leave.user == "tabby"
    await watcher.close()


@pytest.mark.parametrize("frame, code", [
    ("not json", "bad_request"),
    ("[1,2]", "bad_request"),
    ('{"type": 5}', "bad_request"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"type": "chat"}', "bad_request"),
    ('{"type": "chat", "text": 42}', "bad_request"),
    ('{"type": "chat", "text": "   "}', "bad_request"),
    ('{"type": "chat", "text": "bell\\u0007"}', "bad_request"),
    ('{"type": "chat", "text": "' + "x" * 2001 + '"}', "too_long"),
    ('{"type": "whisper", "to": "bad name", "text": "x"}', "bad_request"),
    ('{"type": "history", "limit": 1000}', "bad_request"),
    ('{"type": "history", "before": "yesterday"}', "bad_request"),
])
async def test_bad_frames_get_error_and_connection_stays_open(daemon, frame, code):
    """Every malformed frame gets its error code, and the connection keeps working."""
    async with await Chatter.connect(daemon.port, "alice") as a:
        await a.ws.send(frame)
        err = await a.recv_type("error")
        assert err["code"] == code
        await a.chat("after")
        assert (await a.recv_type("chat"))["text"] == "after"


async def test_binary_frame_is_bad_request(daemon):
    """A binary frame gets bad_request, not a close."""
    async with await Chatter.connect(daemon.port, "alice") as a:
        await a.ws.send(b"\x00\x01")
        assert (await a.recv_type("error"))["code"] == "bad_request"


async def test_oversized_frame_closes_with_1009(daemon):
    """A frame above max_message_bytes closes the connection with 1009."""
    a = await Chatter.connect(daemon.port, "alice")
    await a.ws.send("x" * (daemon.cfg.server.max_message_bytes + 1))
    with pytest.raises(websockets.ConnectionClosed):
        await a.recv(timeout=5)
    assert a.ws.close_code == closecodes.MESSAGE_TOO_BIG


async def test_spoofed_from_is_ignored(daemon):
    """A client cannot speak as someone else: from is always the server's idea."""
    async with await Chatter.connect(daemon.port, "mallory") as m:
        await m.send(type="chat", text="I am alice", **{"from": "alice"})
        assert (await m.recv_type("chat"))["from"] == "mallory"


@pytest.mark.parametrize("query", [{}, {"user": ""}, {"user": "a b"}, {"user": "x" * 33},
                                   {"user": "ok", "since": "nope"}])
async def test_bad_user_name_refused_before_upgrade_with_400(daemon, query):
    """A missing or invalid name is an HTTP 400 with a reason, before any WebSocket."""
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(ws_url(daemon.port, **query))
    assert info.value.response.status_code == 400
    assert b"name" in info.value.response.body or b"since" in info.value.response.body


async def test_stalled_client_closed_as_slow_consumer_others_get_everything_in_order(daemon_factory, db):
    """A client that stops reading is closed with 4002; 50 others receive every message in order."""
    daemon = await daemon_factory(hub={"client_queue_limit": 64 * 1024})
    # A raw TCP client that completes the handshake, then never reads again.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    stalled.connect(("127.0.0.1", daemon.port))
    stalled.sendall(
        b"GET /ws?user=stalled HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    await wait_for(lambda: "stalled" in daemon.node.hub.users(), what="stalled client registered")
    others = [await Chatter.connect(daemon.port, f"r{i}") for i in range(50)]
    sender = await Chatter.connect(daemon.port, "sender")
    n, window = 1200, 10
    payload = "y" * 800

    async def send_all():
        for start in range(0, n, window):  # closed loop: at most `window` messages in flight
            for i in range(start, start + window):
                await sender.chat(f"{i}:{payload}")
            for _ in range(window):
                await sender.recv_type("chat")

    async def receive_all(c):
        seen = []
        while len(seen) < n:
            f = await c.recv_type("chat", timeout=20)
            seen.append(int(f["text"].split(":")[0]))
        return seen

    results = await asyncio.gather(send_all(), *(receive_all(c) for c in others))
    for seen in results[1:]:
        assert seen == list(range(n))
    await wait_for(lambda: daemon.node.hub.stats.slow_consumers == 1, what="slow consumer counted")
    await wait_for(lambda: "stalled" not in daemon.node.hub.users(), timeout=15, what="stalled client removed")
    stalled.close()
    row = None

    async def recorded():
        nonlocal row
        row = await db.fetchrow("SELECT close_code, close_reason FROM sessions WHERE user_name='stalled'")
        return row is not None

    await wait_for(recorded, what="stalled session recorded")
    assert row["close_code"] == closecodes.SLOW_CONSUMER and row["close_reason"] == "slow consumer"
    for c in [*others, sender]:
        await c.close()


async def test_graceful_shutdown_tells_clients_and_records_sessions(daemon_factory, db):
    """stop(): every client gets shutdown then 1001, and every session is in PostgreSQL."""
    daemon = await daemon_factory()
    clients = [await connected(daemon.port, f"s{i}") for i in range(10)]
    await clients[0].chat("before shutdown")
    for c in clients:
        await event(c, Chat)
    await daemon.stop()
    for c in clients:
        assert isinstance(await event(c), Shutdown)  # the next event, nothing before it
        closed = await event(c)
        assert isinstance(closed, Closed) and closed.code == closecodes.GOING_AWAY
        await c.close()
    rows = await db.fetch("SELECT close_code, close_reason FROM sessions")
    assert len(rows) == 10
    assert {(r["close_code"], r["close_reason"]) for r in rows} == {(1001, "shutdown")}
    assert await db.fetchval("SELECT count(*) FROM messages WHERE text='before shutdown'") == 1


async def test_healthz_reports_ok(daemon):
    """/healthz answers 200 with status and connections while everything is up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["status"] == "ok"


async def test_message_sent_just_before_closing_is_delivered_and_counted(daemon, db):
    """A chat sent right before the sender closes still reaches others and its session row."""
    watcher = await Chatter.connect(daemon.port, "watcher")
    for i in range(10):
        s = await Chatter.connect(daemon.port, f"quick{i}")
        await s.chat(f"bye {i}")
        await s.close()
        assert (await watcher.recv_type("chat"))["text"] == f"bye {i}"

    async def all_counted() -> bool:
        return await db.fetchval("SELECT count(*) FROM sessions WHERE chats_sent = 1") == 10

    await wait_for(all_counted, what="ten sessions with chats_sent = 1")
    await watcher.close()
