"""The hub with in-memory backends and fake connections: no server, milliseconds each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chathub import closecodes
from chathub.bans import Ban
from chathub.config import HubConfig
from chathub.errors import RegistrationFailed
from chathub.hub import Hub
from chathub.memory import MemoryCache, MemoryPresence
from chathub.protocol import Chat, ProtocolError, Whisper
from tests.fakes import FakeConnection, fake_client
from tests.helpers import wait_for


class BrokenRecovery(MemoryCache):
    """Recovery fails for one ``since`` value, and stamping for the text "boom", as a bug
    in the cache would."""

    async def recover(self, since, user, channel=None, whispers=True):
        if since == "1-1":
            raise RuntimeError("recovery blew up")
        return await super().recover(since, user, channel, whispers)

    async def accept(self, batch):
        if any(o.text == "boom" for o in batch):
            raise RuntimeError("stamping blew up")
        return await super().accept(batch)


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    presence = MemoryPresence()
    h = Hub(BrokenRecovery(presence), presence,
            HubConfig(write_timeout=0.2, client_queue_limit=1000, client_queue_max=100_000), "n1")
    task = asyncio.create_task(h.run())
    yield h
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def join(hub: Hub, user: str, since: str | None = None) -> FakeConnection:
    client, ws = fake_client(user)
    await hub.register(client, since)
    ws.client = client  # type: ignore[attr-defined]
    return ws


async def test_welcome_lists_users_and_join_reaches_the_others(hub):
    a = await join(hub, "alice")
    b = await join(hub, "bob")
    assert b.of_type("welcome")[0]["users"] == ["alice", "bob"]
    await wait_for(lambda: [f["user"] for f in a.of_type("join")] == ["bob"])
    assert b.of_type("join") == []
    await hub.unregister(b.client)
    await wait_for(lambda: [f["user"] for f in a.of_type("leave")] == ["bob"])


async def test_second_tab_is_no_join_and_last_tab_leaves(hub):
    a = await join(hub, "alice")
    b1 = await join(hub, "bob")
    b2 = await join(hub, "bob")
    await hub.unregister(b1.client)
    await hub.submit(a.client, Chat(text="marker"))
    await wait_for(lambda: a.of_type("chat"))
    assert [f["user"] for f in a.of_type("join")] == ["bob"] and a.of_type("leave") == []
    await hub.unregister(b2.client)
    await wait_for(lambda: [f["user"] for f in a.of_type("leave")] == ["bob"])


async def test_whisper_reaches_every_tab_of_both_and_nobody_else(hub):
    a = await join(hub, "alice")
    b1, b2 = await join(hub, "bob"), await join(hub, "bob")
    c = await join(hub, "carol")
    await hub.submit(a.client, Whisper(to="bob", text="psst", ref="w1"))
    await wait_for(lambda: all(x.of_type("whisper") for x in (a, b1, b2)))
    assert a.of_type("whisper")[0]["ref"] == "w1" and "ref" not in b1.of_type("whisper")[0]
    assert c.of_type("whisper") == []


async def test_whisper_to_nobody_is_unknown_user(hub):
    a = await join(hub, "alice")
    await hub.submit(a.client, Whisper(to="ghost", text="hello?", ref="r"))
    await wait_for(lambda: a.of_type("error"))
    assert a.of_type("error")[0]["code"] == "unknown_user"


async def test_a_burst_is_stamped_in_batches(hub):
    a = await join(hub, "alice")
    before = hub.cache.batches
    for i in range(300):
        await hub.submit(a.client, Chat(text=f"m{i}"))
    await wait_for(lambda: len(a.of_type("chat")) == 300)
    assert [f["text"] for f in a.of_type("chat")] == [f"m{i}" for i in range(300)]
    assert hub.cache.batches - before < 300 / 4, "not batched"


async def test_one_failing_registration_fails_alone(hub):
    """A batch of registrations where one blows up: that one gets 1011, the rest a welcome."""
    seed = await join(hub, "seed")
    await hub.submit(seed.client, Chat(text="x"))
    await wait_for(lambda: seed.of_type("chat"))
    clients = [fake_client(f"u{i}") for i in range(10)]
    bad, bad_ws = fake_client("bad")
    results = await asyncio.gather(*(hub.register(c, None) for c, _ in clients[:5]),
                                   hub.register(bad, "1-1"),
                                   *(hub.register(c, None) for c, _ in clients[5:]),
                                   return_exceptions=True)
    assert isinstance(results[5], RegistrationFailed)
    assert results[5].close == closecodes.INTERNAL_ERROR
    assert all(r is None for i, r in enumerate(results) if i != 5)
    assert all(ws.of_type("welcome") for _, ws in clients)
    assert bad_ws.frames() == []


async def test_a_bug_while_stamping_refuses_the_api_caller_and_the_loop_goes_on(hub):
    """An unexpected error handling a batch: the HTTP API's caller hears ``unavailable``
    (not a hang), and the next message is stamped and delivered as usual."""
    a = await join(hub, "alice")
    with pytest.raises(ProtocolError) as refused:
        await asyncio.wait_for(hub.publish("api", "general", "boom"), 2)
    assert refused.value.code == "unavailable"
    sent = await asyncio.wait_for(hub.publish("api", "general", "fine"), 2)
    await wait_for(lambda: [f["text"] for f in a.of_type("chat")] == ["fine"])
    assert a.of_type("chat")[0]["id"] == sent.id


async def test_cache_down_answers_unavailable_and_welcome_still_comes(hub):
    a = await join(hub, "alice")
    hub.cache.down = True
    await hub.submit(a.client, Chat(text="lost?", ref="r"))
    await wait_for(lambda: a.of_type("error"))
    assert a.of_type("error")[0]["code"] == "unavailable"
    b = await join(hub, "bob", since="5-5")
    assert b.of_type("welcome")[0]["recovered"] is False
    hub.cache.down = False


async def test_a_stopped_reader_is_cut_as_a_slow_consumer_and_others_receive(hub):
    a = await join(hub, "alice")
    slow = await join(hub, "slow")
    slow.transport.stalled = True
    for _ in range(50):
        await hub.submit(a.client, Chat(text="y" * 100))
    await asyncio.wait_for(slow.closed_event.wait(), 2)
    assert slow.closed[0] == closecodes.SLOW_CONSUMER
    await wait_for(lambda: len(a.of_type("chat")) == 50)


async def test_kick_with_a_long_reason_closes_with_a_short_one(hub):
    """The kicked user reads the whole reason; the others' leave says only ``kicked``."""
    victim = await join(hub, "victim")
    other = await join(hub, "other")
    assert hub.kick("victim", "中" * 100) == 1
    await asyncio.wait_for(victim.closed_event.wait(), 2)
    code, reason = victim.closed
    assert code == closecodes.KICKED and len(reason.encode()) <= 123 and reason == "中" * 41
    assert victim.of_type("kicked")[0]["reason"] == "中" * 100
    await hub.unregister(victim.client)  # as the connection's handler does once it closed
    await wait_for(lambda: other.of_type("leave"), what="the others told")
    assert [(f["user"], f["reason"]) for f in other.of_type("leave")] == [("victim", "kicked")]


async def test_whispers_and_chats_arrive_in_id_order(hub):
    """One delivery queue: a whisper stamped between two chats is read between them,
    so a client's highest id seen is a safe ``since`` (ids interleave across kinds)."""
    a = await join(hub, "alice")
    b = await join(hub, "bob")
    for i in range(30):  # one batch of mixed kinds, stamped in submit order
        msg = Whisper(to="bob", text=f"w{i}") if i % 3 == 1 else Chat(text=f"c{i}")
        await hub.submit(a.client, msg)
    await wait_for(lambda: len(b.of_type("chat")) + len(b.of_type("whisper")) == 30)
    seen = [f for f in b.frames() if f["type"] in ("chat", "whisper")]
    ids = [tuple(map(int, f["id"].split("-"))) for f in seen]
    assert ids == sorted(ids)
    assert [f["text"] for f in seen] == [f"w{i}" if i % 3 == 1 else f"c{i}" for i in range(30)]


async def test_a_resend_with_the_same_ref_is_answered_with_the_first_id(hub):
    """After a timeout the sender resends with the same ref: it gets the id the message
    was stamped with, nothing is stored twice and nobody gets it twice; the same ref
    with another text is a new message."""
    a = await join(hub, "alice")
    b = await join(hub, "bob")
    await hub.submit(a.client, Chat(text="once", ref="r1"))
    await wait_for(lambda: len(a.of_type("chat")) == 1)
    await hub.submit(a.client, Chat(text="once", ref="r1"))
    await wait_for(lambda: len(a.of_type("chat")) == 2)
    first, again = a.of_type("chat")
    assert again["id"] == first["id"] and again["ref"] == "r1"
    await hub.submit(a.client, Chat(text="other", ref="r1"))
    await wait_for(lambda: len(b.of_type("chat")) == 2)
    assert [f["text"] for f in b.of_type("chat")] == ["once", "other"]
    assert [m.text for _, m in hub.cache.entries] == ["once", "other"]
    assert hub.stats.resends == 1


async def test_a_gap_fill_delivers_an_orphan_once_and_answers_its_ref(hub):
    """A message of this hub whose stamp timed out, found later by a gap fill: it goes to
    the channel's subscribers and answers its sender's ref, once; any other message of
    this hub in the range is left alone (it went out when stamped)."""
    from chathub.protocol import Message

    a = await join(hub, "alice")
    b = await join(hub, "bob")
    hub.stamping.echoes.unsure("alice", "lost", a.client, "r9")
    lost = Message(type="chat", id="5-0", from_="alice", text="lost", ts=5, channel="general")
    other = Message(type="chat", id="6-0", from_="alice", text="sent", ts=6, channel="general")
    for _ in range(2):  # found by two gap fills: delivered once
        hub.stamping.orphan(lost)
        hub.stamping.orphan(other)
    await wait_for(lambda: b.of_type("chat"))
    hub.fanout.drain()
    assert [f["text"] for f in b.of_type("chat")] == ["lost"]
    assert [(f["text"], f.get("ref")) for f in a.of_type("chat")] == [("lost", "r9")]


async def test_two_removals_from_one_channel_at_once_are_one(hub):
    """A kick from a channel and a channel ban of the same user, at once: the connection
    is taken out once (one ``unsubscribed``, one ``leave``), with no error for the second;
    its own ``unsubscribe`` afterwards still gets ``not_subscribed``."""
    alice = await join(hub, "alice")
    bob = await join(hub, "bob")
    assert hub.kick_from("alice", "general", "spam") == 1
    assert hub.enforcement.enforce_ban(Ban("channel", "general alice", "spam", None)) == 1
    await hub.unsubscribe(alice.client, "general", ref="mine")
    await wait_for(lambda: alice.of_type("error"), what="the reply to alice's own unsubscribe")
    assert [(e["code"], e.get("ref")) for e in alice.of_type("error")] == [
        ("not_subscribed", "mine")]
    assert [(u["reason"], u["message"]) for u in alice.of_type("unsubscribed")] == [
        ("kicked", "spam")]
    await wait_for(lambda: bob.of_type("leave"), what="bob told alice left")
    assert len(bob.of_type("leave")) == 1
