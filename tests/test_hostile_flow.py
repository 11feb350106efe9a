"""Clients that make the server work or buffer for them: frame floods, pongs and replies
they never read, connections left open after a protocol error. Against a live daemon."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from chathub import closecodes
from chathub.peer import Client
from tests.helpers import Chatter, wait_for
from tests.test_hostile import Bystanders, client_frame, close_code_in

#: the frame budget of the flood tests: well above what the bystanders send (about 100
#: chats a second from one of them) and far below a flood
BUDGET = 300


def handshake(user: str) -> bytes:
    return (f"GET /ws?user={user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


async def open_raw(port: int, user: str, rcvbuf: int | None = None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw WebSocket connection after its 101; ``rcvbuf`` shrinks the kernel's receive
    buffer, so a client that does not read stops the server's writes early."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(handshake(user))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def server_side(d: Any, user: str) -> Client:
    """The hub's :class:`Client` for ``user``, once it is registered."""
    await wait_for(lambda: any(c.user == user for c in d.node.hub.clients()), what=f"{user} registered")
    return next(c for c in d.node.hub.clients() if c.user == user)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := await asyncio.wait_for(reader.read(65536), 10):
        data += chunk
    return data


def fragments(n: int) -> bytes:
    """A text message begun and never finished: ``n`` one-byte continuation frames."""
    return client_frame(0x1, b"{", fin=False) + client_frame(0x0, b" ", fin=False) * n


FLOODS = {
    "pings": client_frame(0x9, b"") * (3 * BUDGET),
    "bad frames": client_frame(0x1, b"x") * (3 * BUDGET),
    "one-byte fragments": fragments(3 * BUDGET),
}


@pytest.mark.parametrize("flood", FLOODS.values(), ids=list(FLOODS))
async def test_a_frame_flood_is_closed_with_1008_and_others_keep_receiving(daemon_factory, flood):
    """Three times the frame budget in one go: the flooder gets 1008 and is dropped; the
    bystanders get every chat, in order."""
    d = await daemon_factory(server={"max_frames_per_second": BUDGET})
    async with Bystanders(d.port):
        reader, writer = await open_raw(d.port, "flooder")
        try:
            writer.write(flood)
            assert close_code_in(await read_to_end(reader)) == closecodes.POLICY_VIOLATION
        finally:
            writer.close()
    await wait_for(lambda: d.node.hub.connection_count == 0, what="flooder gone")
    assert d.figures().hub_running


async def test_a_burst_over_the_budget_is_slowed_not_refused(daemon_factory):
    """One and a half budgets of requests at once: every one is answered, nothing is closed."""
    d = await daemon_factory(server={"max_frames_per_second": BUDGET})
    n = BUDGET * 3 // 2
    async with await Chatter.connect(d.port, "eager") as eager:
        for i in range(n):  # queued by the client, reach the server as one or a few reads
            asyncio.ensure_future(eager.send(type="users", ref=str(i)))
        refs = []
        while len(refs) < n:
            f = await eager.recv_type("users", "error")
            assert f["type"] == "users", f
            refs.append(int(f["ref"]))
        assert sorted(refs) == list(range(n))
        await eager.chat("still open")
        assert (await eager.recv_type("chat"))["text"] == "still open"


async def peak_backlog_until_closed(client, what: str) -> int:
    """Watch a server-side client until it is closed; the largest backlog seen (bytes)."""
    most = 0

    def closed() -> bool:
        nonlocal most
        most = max(most, client.backlog())
        return client.close_code is not None

    await wait_for(closed, timeout=20, what=what)
    return most


async def test_pongs_a_client_never_reads_stop_at_the_backlog_limit(daemon_factory):
    """A client that pings without reading: the server stops reading it once its backlog of
    pongs passes client_queue_limit, and cuts it as a slow consumer (4002)."""
    limit = 64 * 1024
    d = await daemon_factory(server={"max_frames_per_second": 0, "socket_send_buffer": 4096},
                             hub={"client_queue_limit": limit, "write_timeout": 0.5})
    reader, writer = await open_raw(d.port, "pinger", rcvbuf=4096)
    try:
        client = await server_side(d, "pinger")
        # 16 MiB of pings, bounded; the server would answer every one if it read them all
        writer.write(client_frame(0x9, b"p" * 125) * (16 * 1024 * 1024 // 131))
        most = await peak_backlog_until_closed(client, "pinger cut")
        assert client.close_code == closecodes.SLOW_CONSUMER
        # the limit plus what one read of pings asks for (256 KiB), never the whole flood
        assert most < limit + 512 * 1024
    finally:
        writer.close()
    await wait_for(lambda: d.node.hub.connection_count == 0, what="pinger gone")


async def test_replies_a_client_never_reads_are_capped_at_client_queue_max(daemon_factory):
    """History pages asked for and never read: no backlog passes client_queue_max; the
    reply that would is not written and the client is closed with 4002."""
    cap = 256 * 1024
    d = await daemon_factory(server={"max_frames_per_second": 0, "socket_send_buffer": 4096},
                             hub={"client_queue_limit": 64 * 1024, "client_queue_max": cap})
    async with await Chatter.connect(d.port, "writer") as w:
        for i in range(100):  # about 190 KB of history
            await w.chat(f"{i} " + "x" * 1900)
        for _ in range(100):
            await w.recv_type("chat")
    reader, writer = await open_raw(d.port, "hoarder", rcvbuf=4096)
    try:
        client = await server_side(d, "hoarder")
        ask = client_frame(0x1, json.dumps({"type": "history", "limit": 100}).encode())
        writer.write(ask * 10)  # ten pages of about 190 KB each, in one read
        most = await peak_backlog_until_closed(client, "hoarder cut")
        assert client.close_code == closecodes.SLOW_CONSUMER
        assert most <= cap
    finally:
        writer.close()


FAILURES = {
    "frame too big": client_frame(0x1, b"x" * 40000),
    "bad opcode": bytes([0x83, 0x80]) + b"\0\0\0\0",
    "unmasked frame": bytes([0x81, 0x01]) + b"x",
}


@pytest.mark.parametrize("payload", FAILURES.values(), ids=list(FAILURES))
async def test_a_failed_connection_the_peer_keeps_open_is_cut(daemon_factory, payload):
    """After a protocol error the server closes its side; a peer that never closes its own
    is dropped at the close timeout instead of holding its slot and its presence."""
    d = await daemon_factory()
    reader, writer = await open_raw(d.port, "lingerer")
    try:
        await server_side(d, "lingerer")
        writer.write(payload)
        await wait_for(lambda: d.node.hub.connection_count == 0, what="the failed connection dropped")
        data = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 10):  # EOF: the server is done
            data += chunk
        assert close_code_in(data) in (closecodes.MESSAGE_TOO_BIG, closecodes.PROTOCOL_ERROR)
    finally:
        writer.close()


async def test_many_asking_for_the_channel_list_cost_one_listing_at_a_time(daemon_factory):
    """Twenty connections ask for ``channels`` while a listing runs: each gets an answer,
    and Valkey lists twice (the running listing and one for all who asked during it),
    not twenty times."""
    d = await daemon_factory()
    presence = d.node.hub.presence
    real = presence.channels
    held = asyncio.Event()
    calls = 0

    async def counted(private: bool = False) -> list[tuple[str, int, bool]]:
        nonlocal calls
        calls += 1
        await held.wait()  # the first listing is slow: everyone else asks meanwhile
        return await real(private)

    presence.channels = counted
    askers = [await Chatter.connect(d.port, f"asker{i}") for i in range(20)]
    try:
        await askers[0].send(type="channels", ref="first")
        await wait_for(lambda: calls == 1, what="the first listing running")
        for i, a in enumerate(askers[1:]):
            await a.send(type="channels", ref=str(i))
        await wait_for(lambda: sum(c.frames_received for c in d.node.hub.clients()) >= 20,
                       what="every request read")
        held.set()
        for a in askers:
            assert (await a.recv_type("channels"))["channels"][0]["name"] == "general"
        assert calls == 2
    finally:
        await asyncio.gather(*(a.close() for a in askers))


async def test_connections_that_end_together_leave_in_one_round_trip(daemon_factory):
    """Fifty connections close while the hub is busy with another departure: the hub takes
    them as one batch (one presence round trip), and all are gone from ``users``."""
    d = await daemon_factory()
    presence = d.node.hub.presence
    real = presence.disconnect_many
    held = asyncio.Event()
    batches: list[int] = []

    async def counted(users: list[str]) -> list[bool]:
        batches.append(len(users))
        if len(batches) == 1:
            await held.wait()  # the first departure is slow: the others queue behind it
        return await real(users)

    presence.disconnect_many = counted
    stayer = await Chatter.connect(d.port, "stayer")
    leavers = [await Chatter.connect(d.port, f"leaver{i}") for i in range(51)]
    await leavers[0].close()
    await wait_for(lambda: batches == [1], what="the first departure under way")
    await asyncio.gather(*(c.close() for c in leavers[1:]))
    await wait_for(lambda: d.node.hub.inbox_depth() >= 50, what="the other fifty queued")
    held.set()
    await wait_for(lambda: d.node.hub.connection_count == 1, what="fifty gone")
    assert batches == [1, 50]
    await stayer.send(type="users", ref="who")
    assert (await stayer.recv_type("users"))["users"] == ["stayer"]
    await stayer.close()
