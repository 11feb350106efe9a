"""chathub's use of websockets internals (chathub/wsconnection.py), against a real daemon."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from chathub.wsconnection import NO_HEADERS, FrameList, TrackedConnection
from tests.helpers import Chatter


def server_side(daemon: Any, user: str) -> TrackedConnection:
    (client,) = [c for c in daemon.node.hub.clients() if c.user == user]
    return client.ws


async def test_an_admitted_connection_keeps_no_handshake_headers(daemon):
    """After the welcome the request and response headers are gone; the connection works."""
    async with (await Chatter.connect(daemon.port, "alice") as alice,
                await Chatter.connect(daemon.port, "bob") as bob):
        ws = server_side(daemon, "alice")
        assert ws.request is not None and ws.request.headers is NO_HEADERS
        assert ws.response is not None and ws.response.headers is NO_HEADERS
        assert len(NO_HEADERS) == 0
        assert ws.request.path.startswith("/ws")
        await alice.chat("still here")
        got = await bob.recv_type("chat")
        assert got["text"] == "still here"


async def test_drain_waiters_in_a_list_still_wake_a_paused_writer(daemon):
    """websockets' flow control with chathub's list of drain waiters: a send that waits for
    a full buffer finishes once the peer reads."""
    async with await Chatter.connect(daemon.port, "carol"):
        ws = server_side(daemon, "carol")
        assert isinstance(ws.drain_waiters, list)
        ws.pause_writing()  # as the transport does past its high-water mark
        sending = asyncio.ensure_future(ws.drain())
        await asyncio.sleep(0)
        assert len(ws.drain_waiters) == 1 and not sending.done()
        ws.resume_writing()
        await asyncio.wait_for(sending, 5.0)  # seconds: resuming wakes it at once
        assert ws.drain_waiters == []


def test_frame_list_behaves_as_the_deque_it_replaces():
    """append, popleft and extendleft(reversed(...)) as websockets' SimpleQueue uses them."""
    ours, theirs = FrameList(), collections.deque()
    for q in (ours, theirs):
        q.append(1)
        q.append(2)
        q.extendleft(reversed([7, 8, 9]))
        q.append(3)
    assert list(ours) == list(theirs) == [7, 8, 9, 1, 2, 3]
    assert [ours.popleft() for _ in range(6)] == [theirs.popleft() for _ in range(6)]
    assert not ours


async def test_fragmented_messages_arrive_whole_through_the_frame_list(daemon):
    """A chat sent in three fragments is one message to the daemon."""
    async with (await Chatter.connect(daemon.port, "dave") as dave,
                await Chatter.connect(daemon.port, "erin") as erin):
        assert isinstance(server_side(daemon, "dave").recv_messages.frames.queue, FrameList)
        await dave.ws.send(iter(['{"type":"chat",', '"text":"in three', ' parts"}']))
        got = await erin.recv_type("chat")
        assert got["text"] == "in three parts"
