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
