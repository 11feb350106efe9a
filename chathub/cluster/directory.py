"""What operators ask about channels that only Valkey knows: subscriptions per node,
history length, and deleting a channel.

Read by the admin socket (``channels``, ``channel``, ``channel_delete``) through the
daemon; never on a client's path. Subscriptions per node come from each live node's
``subs:<node>`` hash (channel + user -> connections subscribed there), which every
hub keeps current in the same function call that updates the channel's members, so
the figures of every node come from one place and one round trip.
"""

from __future__ import annotations

from typing import Any

from ..keys import Keys
from ..kv import KV


class ChannelDirectory:
    """Channel figures and deletion in Valkey for one key prefix. Every method may raise
    :class:`~chathub.errors.CacheUnavailable`."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv
        self.keys = Keys(kv.prefix)

    async def figures(self, channels: list[str]) -> dict[str, dict[str, Any]]:
        """For each of ``channels``: ``history`` (entries in its Valkey stream) and
        ``nodes`` (live node -> subscriptions there), in one round trip."""
        nodes = sorted(await self.kv.call(self.kv.client.hkeys, self.keys.nodes))
        pipe = self.kv.client.pipeline(transaction=False)
        for node in nodes:
            pipe.hgetall(f"{self.kv.prefix}subs:{node}")
        for channel in channels:
            pipe.xlen(self.keys.stream(channel))
        replies = await self.kv.call(pipe.execute)
        out: dict[str, dict[str, Any]] = {
            c: {"history": int(n), "nodes": {}}
            for c, n in zip(channels, replies[len(nodes):], strict=True)}
        for node, subs in zip(nodes, replies[:len(nodes)], strict=True):
            for field, count in subs.items():
                channel = str(field).split("\n", 1)[0]
                if channel in out and int(count) > 0:
                    per = out[channel]["nodes"]
                    per[node] = per.get(node, 0) + int(count)
        return out

    async def kind(self, channel: str) -> str | None:
        """"public", "private", or None when there is no such channel."""
        value = await self.kv.call(self.kv.client.hget, self.keys.channels, channel)
        return None if value is None else str(value)

    async def delete(self, channel: str) -> bool:
        """Remove ``channel`` from the registry and drop its Valkey history; False when it
        did not exist. Its members hash empties itself as the hubs unsubscribe everyone."""
        pipe = self.kv.client.pipeline(transaction=True)
        pipe.hdel(self.keys.channels, channel)
        pipe.srem(self.keys.on_demand, channel)
        pipe.delete(self.keys.stream(channel), self.keys.deleted(channel))
        removed, _, _ = await self.kv.call(pipe.execute)
        return bool(removed)
