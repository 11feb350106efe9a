"""A channel's history says where its reader stands in that channel (its newest id),
however far traffic in other channels moved the last id issued; so an idle channel's
subscribers hold no ordering entry on the hub (real Valkey)."""

from __future__ import annotations

import uuid

from chathub.backends import Accepted, Outgoing
from chathub.cache import MessageCache
from chathub.cluster.relay import RemoteFeed
from chathub.config import CacheConfig, ChannelsConfig, RateLimitConfig
from chathub.db.archive import Archive
from chathub.kv import KV


async def _no_archive(channel: str, ms: int, seq: int, limit: int) -> list:
    return []


async def test_floor_is_the_channels_newest_id_and_idle_subscribers_hold_nothing(valkey_url):
    kv = KV(valkey_url, timeout=2.0, prefix=f"floor{uuid.uuid4().hex[:8]}:")
    await kv.connect()
    cache = MessageCache(kv, CacheConfig(), RateLimitConfig(chat_rate=1000, chat_burst=1000),
                         "node-a", Archive(_no_archive, 50), ChannelsConfig())
    try:
        empty = (await cache.recent_many(["quiet"]))["quiet"]
        assert (empty.floor, empty.messages) == ("0-0", [])

        [first] = await cache.accept([Outgoing("ann", "hello", channel="quiet")])
        assert isinstance(first, Accepted)
        feed = RemoteFeed(cache, "node-a")
        readers = [object() for _ in range(20)]
        for i, reader in enumerate(readers):
            # traffic elsewhere between two subscribes moves the last id issued on
            stamped = await cache.accept([Outgoing("bob", f"busy {i}", channel="busy")])
            assert isinstance(stamped[0], Accepted)
            recent = (await cache.recent_many(["quiet"]))["quiet"]
            assert recent.floor == first.message.id == recent.since
            assert recent.top == stamped[0].message.id != recent.floor
            feed.welcomed(reader, "quiet", recent.since)
        assert feed.fresh_entries() == 0  # nothing can reach them that their history held

        busy = (await cache.recent_many(["busy"]))["busy"]
        assert busy.floor == busy.top == busy.messages[-1].id
    finally:
        keys = [k async for k in kv.client.scan_iter(match=f"{kv.prefix}*")]
        if keys:
            await kv.client.delete(*keys)
        await kv.close()
