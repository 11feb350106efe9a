"""Node liveness around a Valkey outage (real Valkey): nobody is reaped for having been
unable to beat while Valkey was down, and a node found missing writes itself back."""

from __future__ import annotations

import time

import valkey.asyncio as valkey

from chathub.cluster.nodes import NodeWatch
from chathub.cluster.presence import Presence
from chathub.errors import CacheUnavailable
from chathub.keys import Keys
from chathub.kv import KV
from tests.faultproxy import FaultProxy
from tests.helpers import wait_for

TTL = 1.0  # seconds: short, so that the quiet period after an outage is short too


async def test_a_node_missing_from_nodes_says_so_once_and_is_back(valkey_url, key_prefix):
    kv = KV(valkey_url, 2.0, key_prefix)
    await kv.connect()
    rejoined: list[int] = []
    watch = NodeWatch(kv, "here", TTL, lambda: 0, on_rejoined=lambda: rejoined.append(1))
    try:
        await watch.beat()
        assert rejoined == []  # the first beat adds the entry: that is joining, not rejoining
        await kv.client.hdel(kv.key("nodes"), "here")  # reaped by another hub, or lost
        await watch.beat()
        assert rejoined == [1]
        await watch.beat()
        assert rejoined == [1]
        assert await kv.client.hexists(kv.key("nodes"), "here")
    finally:
        await kv.close()


async def test_no_node_is_reaped_within_a_ttl_of_valkey_coming_back(tcp_valkey, key_prefix):
    """A node whose heartbeat expired while Valkey was down is left alone for one TTL
    after this node's Valkey came back (it beats within a third of that when alive);
    one that stays silent is reaped after."""
    direct = valkey.Valkey(host=tcp_valkey[0], port=tcp_valkey[1], decode_responses=True)

    async with FaultProxy(*tcp_valkey) as proxy:
        kv = KV(f"redis://127.0.0.1:{proxy.port}", 0.5, key_prefix)
        await kv.connect()
        watch = NodeWatch(kv, "here", TTL, lambda: 0)
        try:
            await watch.beat()
            await direct.hset(kv.key("nodes"), "there", 0)  # a node with no heartbeat key
            proxy.cut()
            try:
                await kv.call(kv.client.ping)
            except CacheUnavailable:
                pass
            await direct.hdel(kv.key("nodes"), "here")  # as if lost with Valkey's data
            await wait_for(lambda: kv.up, timeout=10, what="Valkey back")
            back = time.monotonic()
            assert await watch.reap() == {}  # within the TTL: "there" may be about to beat
            await wait_for(lambda: direct.hexists(kv.key("nodes"), "here"), what="beat on return")

            async def reaped() -> bool:
                return "there" in await watch.reap()

            await wait_for(reaped, timeout=10, what="the silent node reaped")
            assert time.monotonic() - back >= TTL * 0.9
        finally:
            await kv.close()
            await direct.aclose()


async def test_a_dead_nodes_channels_created_on_demand_make_room(valkey_url, key_prefix):
    """Reaping a node removes its subscriptions, so a channel one of its clients created
    can be forgotten to make room at max_channels. An auto_join channel (kept) stays."""
    kv = KV(valkey_url, 2.0, key_prefix)
    await kv.connect()
    registry = Keys(kv.prefix).channels
    try:
        there = Presence(kv, "there")
        await kv.client.hset(kv.key("nodes"), "there", 0)  # it joined; it will never beat
        await there.subscribe([("lobby", "ann", False, False)], create=True, max_channels=10,
                              kept=True)
        await there.subscribe([("pop-up", "ann", False, False)], create=True, max_channels=10)
        here = Presence(kv, "here")
        full = await here.subscribe([("fresh", "bob", False, False)], create=True, max_channels=2)
        assert full[0].status == "full"  # ann, on the silent node, is still in pop-up
        watch = NodeWatch(kv, "here", TTL, lambda: 0)
        assert "there" in await watch.reap()
        made = await here.subscribe([("fresh", "bob", False, False)], create=True, max_channels=2)
        assert made[0].status == "ok"
        assert sorted(await kv.client.hkeys(registry)) == ["fresh", "lobby"]
    finally:
        await kv.close()
