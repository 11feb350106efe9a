"""The hub against real clients: broadcast, whispers, presence, errors, slow consumers."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import websockets

from chathub import closecodes
from tests.helpers import Chatter, wait_for, ws_url


async def test_broadcast_reaches_every_connection_including_sender(daemon):
    """A chat reaches all 20 connected clients, the sender included, with one id."""
    clients = [await Chatter.connect(daemon.port, f"u{i}") for i in range(20)]
    await clients[0].chat("hello all", ref="r1")
    frames = [await c.recv_type("chat") for c in clients]
    assert {f["id"] for f in frames} == {frames[0]["id"]}
    assert all(f["from"] == "u0" and f["text"] == "hello all" for f in frames)
    assert frames[0]["ref"] == "r1" and "ref" not in frames[1]
    for c in clients:
        await c.close()


async def test_whisper_reaches_all_connections_of_recipient_and_sender_only(daemon):
    """A whisper goes to both tabs of the recipient and to the sender, nobody else."""
    a = await Chatter.connect(daemon.port, "alice")
    b1 = await Chatter.connect(daemon.port, "bob")
    b2 = await Chatter.connect(daemon.port, "bob")
    c = await Chatter.connect(daemon.port, "carol")
    await a.whisper("bob", "secret")
    got = [await x.recv_type("whisper") for x in (a, b1, b2)]
    assert all(g["text"] == "secret" and g["from"] == "alice" and g["to"] == "bob" for g in got)
    await c.chat("marker")
    assert (await c.recv_type("chat", "whisper"))["type"] == "chat"
    for x in (a, b1, b2, c):
        await x.close()


async def test_whisper_to_offline_user_is_unknown_user(daemon):
    """Whispering someone offline gets unknown_user with the ref."""
    async with await Chatter.connect(daemon.port, "alice") as a:
        await a.whisper("nobody", "hi", ref="w1")
        err = await a.recv_type("error")
        assert err["code"] == "unknown_user" and err["ref"] == "w1"


async def test_users_lists_online_users_sorted(daemon):
    """users answers with every online name, sorted, once per user."""
    cs = [await Chatter.connect(daemon.port, n) for n in ("zed", "amy", "amy", "bo")]
    await cs[0].send(type="users", ref="u")
    reply = await cs[0].recv_type("users")
    assert reply == {"type": "users", "users": ["amy", "bo", "zed"], "ref": "u"}
    assert cs[-1].welcome["users"] == ["amy", "bo", "zed"]
    for c in cs:
        await c.close()


async def test_join_and_leave_only_on_first_and_last_connection(daemon):
    """join on a user's first connection, leave on its last, never per tab."""
    watcher = await Chatter.connect(daemon.port, "watcher")
    t1 = await Chatter.connect(daemon.port, "tabby")
    assert (await watcher.recv_type("join"))["user"] == "tabby"
    t2 = await Chatter.connect(daemon.port, "tabby")
    await t1.close()
    await t2.chat("still here")
    assert (await watcher.recv_type("join", "leave", "chat"))["type"] == "chat"
    await t2.close()
    leave = await watcher.recv_type("join", "leave")
    assert leave["type"] == "leave" and leave["user"] == "tabby"
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
    clients = [await Chatter.connect(daemon.port, f"s{i}") for i in range(10)]
    await clients[0].chat("before shutdown")
    for c in clients:
        await c.recv_type("chat")
    await daemon.stop()
    for c in clients:
        assert (await c.recv_type("shutdown"))["type"] == "shutdown"
        with pytest.raises(websockets.ConnectionClosed):
            await c.recv()
        assert c.ws.close_code == closecodes.GOING_AWAY
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
