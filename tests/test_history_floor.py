"""A channel's history says where its reader stands in that channel (its newest id),
however far traffic in other channels moved the last id issued; so an idle channel's
subscribers hold no ordering entry on the hub (real Valkey)."""

from __future__ import annotations

from chathub.backends import Accepted, Outgoing
from chathub.cluster.relay import RemoteFeed


async def test_floor_is_the_channels_newest_id_and_idle_subscribers_hold_nothing(message_cache):
    cache = message_cache
    empty = (await cache.recent_many(["quiet"]))["quiet"]
    assert (empty.floor, empty.messages) == ("0-0", [])

    [first] = await cache.accept([Outgoing("ann", "hello", channel="quiet")])
    assert isinstance(first, Accepted)
    feed = RemoteFeed(cache, "node-a")
    for i in range(20):
        # traffic elsewhere between two subscribes moves the last id issued on
        [stamped] = await cache.accept([Outgoing("bob", f"busy {i}", channel="busy")])
        assert isinstance(stamped, Accepted)
        recent = (await cache.recent_many(["quiet"]))["quiet"]
        assert recent.floor == first.message.id == recent.since
        assert recent.top == stamped.message.id != recent.floor
        feed.welcomed(object(), "quiet", recent.since)
    assert feed.fresh_entries() == 0  # nothing can reach them that their history held

    busy = (await cache.recent_many(["busy"]))["busy"]
    assert busy.floor == busy.top == busy.messages[-1].id
