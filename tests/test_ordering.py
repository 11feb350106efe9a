"""Id order across kinds and hubs: what a client may keep as its ``?since=``.

A client resumes after the highest id it saw, so it must never see a message
before one with a smaller id meant for it (in its channel, or a whisper to it).
These tests read the raw frames on purpose: the order on the wire is the subject.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise

from tests.helpers import Chatter


def _key(frame: dict) -> tuple[int, int]:
    ms, seq = frame["id"].split("-")
    return int(ms), int(seq)


async def test_three_hubs_deliver_in_id_order(daemon_factory):
    """Senders on three hubs chat and whisper at once; every reader on every hub sees
    the chats of its channel and its whispers in id order, each once."""
    trio = [await daemon_factory(hub={"node_id": f"node{i}"}) for i in range(3)]
    readers = [await Chatter.connect(d.port, f"r{i}") for i, d in enumerate(trio)]
    senders = [await Chatter.connect(d.port, f"s{i}") for i, d in enumerate(trio)]
    n = 150

    async def send(i: int, s: Chatter) -> None:
        for k in range(n):
            if k % 5 == 4:  # whispers interleave with the chats of all three
                await s.whisper(f"r{(i + k) % 3}", f"{i}:{k}")
            else:
                await s.chat(f"{i}:{k}")
            if k % 10 == 9:
                await asyncio.sleep(0)  # let the hubs' loops take turns

    chats = sum(1 for k in range(n) if k % 5 != 4) * 3
    whispers = [sum(1 for i in range(3) for k in range(n) if k % 5 == 4 and (i + k) % 3 == r)
                for r in range(3)]

    async def receive(r: int, c: Chatter) -> list[dict]:
        seen: list[dict] = []
        while len(seen) < chats + whispers[r]:
            seen.append(await c.recv_type("chat", "whisper", timeout=30))
        return seen

    results = await asyncio.gather(*(send(i, s) for i, s in enumerate(senders)),
                                    *(receive(r, c) for r, c in enumerate(readers)))
    for seen in results[3:]:
        keys = [_key(f) for f in seen]
        assert len(set(keys)) == len(keys), "a message arrived twice"
        inversions = [(a, b) for a, b in pairwise(keys) if b < a]
        assert inversions == [], f"{len(inversions)} messages arrived after a larger id"
    await asyncio.gather(*(c.close() for c in readers + senders))


async def test_order_holds_after_a_channel_is_left_and_joined_again(daemon_factory):
    """A channel left by its last local subscriber stays subscribed on the bus for a while
    (bus.LINGER); joined again meanwhile, its traffic never stopped, and this hub's own
    messages there still wait for their echo: readers on both hubs see ids ascending."""
    pair = [await daemon_factory(hub={"node_id": f"node{i}"}) for i in range(2)]
    a = await Chatter.connect(pair[0].port, "a")
    b = await Chatter.connect(pair[1].port, "b")
    for c in (a, b):
        await c.send(type="subscribe", channel="room")
        await c.recv_type("subscribed")
    await a.send(type="unsubscribe", channel="room")
    await a.recv_type("unsubscribed")
    assert "room" in pair[0].node.bus.lingering
    await a.send(type="subscribe", channel="room")
    await a.recv_type("subscribed")
    assert "room" in pair[0].node.hub.stamping.live  # still receiving: own messages wait
    n = 60

    async def send(c: Chatter, tag: str) -> None:
        for k in range(n):
            await c.chat(f"{tag}{k}", channel="room")
            if k % 10 == 9:
                await asyncio.sleep(0)

    async def receive(c: Chatter) -> list[dict]:
        return [await c.recv_type("chat", timeout=30) for _ in range(2 * n)]

    *_, got_a, got_b = await asyncio.gather(send(a, "a"), send(b, "b"), receive(a), receive(b))
    for got in (got_a, got_b):
        keys = [_key(f) for f in got]
        assert keys == sorted(keys) and len(set(keys)) == 2 * n
    await a.close()
    await b.close()
