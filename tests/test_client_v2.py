"""chathub.client's channel support (protocol v2) against a small fake v2 server.

The real daemon speaks protocol v1 until channels land; these tests pin what the
client sends (subscribe/unsubscribe, ``channel`` only when given, ``since`` per
channel on resubscribe) and how it reads v2 answers. The frame shapes are the
client's reading of the channels design (chathub/client/events.py): when the
daemon speaks v2, the same assertions should run against it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import ServerConnection, serve

from chathub.client import (
    Backoff,
    Chat,
    ChatClient,
    ConnectionLost,
    Gap,
    NotSubscribed,
    Shutdown,
    Subscribed,
    Unknown,
    UnknownType,
    Welcome,
)
from tests.test_client import next_of


class FakeV2:
    """Just enough of a v2 server: welcome, subscribe with since, chat per channel."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        #: channel (None: default) -> stamped chat frames, oldest first
        self.log: dict[str | None, list[dict[str, Any]]] = {None: []}
        #: every frame a client sent, per connection, in order
        self.received: list[list[dict[str, Any]]] = []
        #: query of every upgrade
        self.queries: list[dict[str, list[str]]] = []
        self.conns: set[ServerConnection] = set()
        #: answer subscribe with recovered: false
        self.lose_history = False
        #: also send the message at ``since`` again (a server whose recovery overlaps)
        self.overlap = True
        self.new_connection = asyncio.Event()
        #: answer subscribe/unsubscribe as a protocol v1 server: unknown_type
        self.v1 = False

    def stamp(self, channel: str | None, text: str, frm: str = "srv") -> dict[str, Any]:
        m = {"type": "chat", "id": f"{next(self.ids)}-0", "from": frm, "text": text, "ts": 1}
        if channel is not None:
            m["channel"] = channel
        self.log.setdefault(channel, []).append(m)
        return m

    def after(self, channel: str | None, since: str | None) -> list[dict[str, Any]]:
        msgs = self.log.get(channel, [])
        if since is None:
            return msgs[-5:]
        n = int(since.split("-")[0]) - (1 if self.overlap else 0)
        return [m for m in msgs if int(m["id"].split("-")[0]) > n]

    async def handler(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        self.queries.append(query)
        got: list[dict[str, Any]] = []
        self.received.append(got)
        since = query.get("since", [None])[0]
        welcome: dict[str, Any] = {"type": "welcome", "user": query["user"][0], "session": "s",
                                   "users": [], "history": self.after(None, since), "protocol": 2}
        if since:
            welcome["recovered"] = True
        await ws.send(json.dumps(welcome))
        self.conns.add(ws)
        self.new_connection.set()
        try:
            async for data in ws:
                f = json.loads(data)
                got.append(f)
                ref = f.get("ref")
                if self.v1 and f["type"] in ("subscribe", "unsubscribe"):
                    await ws.send(json.dumps({"type": "error", "code": "unknown_type", "ref": ref,
                                              "message": f"unknown type {f['type']!r}"}))
                elif f["type"] == "subscribe":
                    ch = f["channel"]
                    reply = {"type": "subscribed", "channel": ch, "ref": ref,
                             "history": [] if self.lose_history else self.after(ch, f.get("since")),
                             "recovered": not self.lose_history}
                    await ws.send(json.dumps(reply))
                elif f["type"] == "unsubscribe":
                    if f["channel"] not in self.log:
                        await ws.send(json.dumps({"type": "error", "code": "not_subscribed",
                                                  "message": "not subscribed", "ref": ref}))
                    else:
                        await ws.send(json.dumps({"type": "unsubscribed", "channel": f["channel"],
                                                  "ref": ref}))
                elif f["type"] == "chat":
                    m = self.stamp(f.get("channel"), f["text"], "alice")
                    await ws.send(json.dumps({**m, "ref": ref}))
        finally:
            self.conns.discard(ws)

    async def broadcast(self, frame: dict[str, Any]) -> None:
        for ws in list(self.conns):
            await ws.send(json.dumps(frame))

    async def restart_connections(self) -> None:
        """What a daemon restart looks like to a client: shutdown, close 1001."""
        self.new_connection.clear()
        for ws in list(self.conns):
            await ws.send('{"type":"shutdown"}')
            await ws.close(1001, "shutdown")


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeV2, str]]:
    server = FakeV2()
    async with serve(server.handler, "127.0.0.1", 0) as s:
        port = s.sockets[0].getsockname()[1]
        yield server, f"ws://127.0.0.1:{port}/ws"


FAST = Backoff(initial=0.05, cap=0.1)


async def test_subscribe_sends_the_v2_frame_and_channel_only_when_given(fake):
    server, url = fake
    async with ChatClient(url, user="alice", backoff=FAST) as c:
        sub = await c.subscribe("ops")
        assert isinstance(sub, Subscribed) and sub.channel == "ops" and c.channels == ["ops"]
        m = await c.chat("deploying", channel="ops")
        assert m.channel == "ops" and m.from_ == "alice"
        await c.chat("hello all")
        await c.unsubscribe("ops")
        assert c.channels == []
        with pytest.raises(NotSubscribed):
            await c.unsubscribe("never")
    sent = [{k: v for k, v in f.items() if k != "ref"} for f in server.received[0]]
    assert sent == [
        {"type": "subscribe", "channel": "ops"},
        {"type": "chat", "text": "deploying", "channel": "ops"},
        {"type": "chat", "text": "hello all"},
        {"type": "unsubscribe", "channel": "ops"},
        {"type": "unsubscribe", "channel": "never"},
    ]


async def test_reconnect_resubscribes_each_channel_from_its_own_since_without_duplicates(fake):
    """After a restart: ?since= for the default channel, since per channel in subscribe,
    and the overlapping message the server repeats is not delivered twice."""
    server, url = fake
    async with ChatClient(url, user="alice", backoff=FAST) as c:
        await c.subscribe("ops")
        await c.subscribe("dev")
        for ch, text in [("ops", "o1"), ("dev", "d1"), (None, "g1"), ("ops", "o2")]:
            await server.broadcast(server.stamp(ch, text))
        seen = [(await next_of(c, Chat)).text for _ in range(4)]
        assert seen == ["o1", "d1", "g1", "o2"]
        ids = {ch: c.since(ch) for ch in (None, "ops", "dev")}

        await server.restart_connections()
        assert isinstance(await next_of(c, Shutdown), Shutdown)
        lost = await next_of(c, ConnectionLost)
        assert lost.code == 1001
        server.stamp("ops", "o3 while away")
        server.stamp(None, "g2 while away")
        welcome = await next_of(c, Welcome)
        assert welcome.reconnected and [m.text for m in welcome.history] == ["g2 while away"]
        subs = {}
        while len(subs) < 2:
            s = await next_of(c, Subscribed)
            subs[s.channel] = [m.text for m in s.history]
        assert subs == {"ops": ["o3 while away"], "dev": []}

    assert server.queries[1]["since"] == [ids[None]]
    resub = {f["channel"]: f.get("since") for f in server.received[1] if f["type"] == "subscribe"}
    assert resub == {"ops": ids["ops"], "dev": ids["dev"]}


async def test_a_channel_the_server_cannot_recover_is_reported_as_a_gap(fake):
    server, url = fake
    async with ChatClient(url, user="alice", backoff=FAST) as c:
        await c.subscribe("ops")
        await server.broadcast(server.stamp("ops", "o1"))
        first = await next_of(c, Chat)
        server.lose_history = True
        await server.restart_connections()
        gap = await next_of(c, Gap)
        assert gap == Gap(channel="ops", since=first.id)


async def test_subscribe_against_a_protocol_v1_server_is_a_typed_unknown_type(fake):
    """A v1 daemon answers subscribe/unsubscribe with unknown_type: UnknownType, and
    the channel is not remembered for reconnects."""
    server, url = fake
    server.v1 = True
    async with ChatClient(url, user="alice") as c:
        with pytest.raises(UnknownType):
            await c.subscribe("ops")
        with pytest.raises(UnknownType):
            await c.unsubscribe("ops")
        assert c.channels == []
        assert (await c.chat("still here")).text == "still here"


async def test_a_frame_of_an_unknown_type_is_yielded_not_dropped(fake):
    server, url = fake
    async with ChatClient(url, user="alice") as c:
        await server.new_connection.wait()
        await server.broadcast({"type": "poll", "question": "lunch?"})
        await server.broadcast(server.stamp(None, "after the poll"))
        ev = await next_of(c, Unknown)
        assert ev.type == "poll" and ev.frame["question"] == "lunch?"
        assert (await next_of(c, Chat)).text == "after the poll"
