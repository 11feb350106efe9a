"""A batch of chats and whispers is stamped in one Valkey call: in order, each as it
would be alone, and a message that fails alone fails alone (real Valkey)."""

from __future__ import annotations

from chathub.backends import Accepted, Failed, Limited, Outgoing, Resent, UnknownUser
from chathub.protocol import parse_id


async def test_a_mixed_batch_is_stamped_in_order_and_one_failure_stays_alone(message_cache):
    cache = message_cache
    kv = cache.kv
    await kv.client.hset(f"{kv.prefix}conns:node-a", "cid", 1)  # cid is online here
    await kv.client.rpush(cache.keys.rate("chat", "mallory"), "x")  # a key of the wrong type
    batch = [
        Outgoing("ann", "one", channel="general"),
        Outgoing("bob", "to cid", to="cid"),
        Outgoing("mallory", "breaks alone", channel="general"),
        Outgoing("ann", "two", channel="other", resend_key="s1:r1"),
        Outgoing("ann", "to nobody", to="nobody"),
        Outgoing("ann", "two", channel="other", resend_key="s1:r1"),  # the same ref again
    ]
    out = await cache.accept(batch)
    assert [type(r) for r in out] == [Accepted, Accepted, Failed, Accepted, UnknownUser, Resent]
    assert "WRONGTYPE" in out[2].error
    ids = [r.message.id for r in out if isinstance(r, Accepted)]
    assert [parse_id(i) for i in ids] == sorted(parse_id(i) for i in ids)
    assert out[5].message.id == out[3].message.id
    assert (out[1].message.to, out[3].message.channel) == ("cid", "other")
    general = (await cache.recent_many(["general"]))["general"]
    assert [m.text for m in general.messages] == ["one"]
    assert [m.text for m in (await cache.history(None, 10, "other"))] == ["two"]


async def test_budgets_hold_within_one_batch(message_cache):
    """Spending in a batch counts message by message: the third of three over a burst of
    two is refused, with a wait."""
    cache = message_cache
    cache.limits.chat_rate, cache.limits.chat_burst = 1, 2
    out = await cache.accept([Outgoing("ann", f"m{i}", channel="general") for i in range(3)])
    assert [type(r) for r in out] == [Accepted, Accepted, Limited]
    assert out[2].retry_after_ms > 0
