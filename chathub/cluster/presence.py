"""Who is online and who is in which channel, cluster-wide: kept in Valkey.

Each node keeps ``conns:<node>`` (user → that node's connections): a user is
online while any live node lists them (``users`` with no channel, whisper
recipients). Channel membership is ``{c:NAME}:m`` (user → subscriptions on every
hub) plus ``subs:<node>`` (this node's, for reaping). :meth:`Presence.subscribe`
and :meth:`unsubscribe` update them atomically and tell whether this was the
user's first (or last) subscription to the channel anywhere, which is when
``join`` (or ``leave``) is due — once for the cluster, not once per hub; the
server-side functions publish it on the channel's pub/sub channel.

Each hub mirrors who is online in an :class:`Online` set, kept from its own
connections and reloaded from Valkey after an outage.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable

from ..backends import Joined
from ..keys import Keys
from ..kv import KV


class Online:
    """A sorted set of user names (the hub's mirror of who is online anywhere, and each
    channel's member mirror).

    Only the sorted list is kept: membership is a binary search. One is held per channel
    with local subscribers, so its size counts per subscription: a list of 10 names is
    about 0.2 KB where a list and a set were about 0.9 KB.
    """

    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: list[str] = []

    def __contains__(self, user: str) -> bool:
        names = self._names
        i = bisect.bisect_left(names, user)
        return i < len(names) and names[i] == user

    def __len__(self) -> int:
        return len(self._names)

    def add(self, user: str) -> None:
        names = self._names
        i = bisect.bisect_left(names, user)
        if i == len(names) or names[i] != user:
            names.insert(i, user)

    def discard(self, user: str) -> None:
        names = self._names
        i = bisect.bisect_left(names, user)
        if i < len(names) and names[i] == user:
            del names[i]

    def replace(self, users: Iterable[str]) -> None:
        self._names = sorted(set(users))

    def sorted(self) -> list[str]:
        """The names, sorted (the caller must not change the list)."""
        return self._names


class Presence:
    """Cluster-wide presence for one node: connections, and subscriptions to channels.
    Every method may raise CacheUnavailable."""

    def __init__(self, kv: KV, node_id: str) -> None:
        self.kv = kv
        self.node_id = node_id
        self.prefix = kv.prefix
        self.keys = Keys(kv.prefix)

    async def connect(self, users: list[str]) -> list[str] | None:
        """Count a new connection for each of ``users``, in one round trip.

        Returns, when other hubs share this Valkey, everyone online (None when this
        hub is alone: its mirror is exact then). ``join`` is per channel (:meth:`subscribe`).
        """
        pipe = self.kv.client.pipeline(transaction=False)
        for user in users:
            pipe.fcall(self.kv.fn("connect"), 0, self.prefix, self.node_id, user)
        pipe.fcall(self.kv.fn("users"), 0, self.prefix, "cluster")
        *_, everyone = await self.kv.call(pipe.execute)
        return list(everyone) if everyone else None

    async def disconnect_many(self, users: list[str]) -> list[bool]:
        """Count a closed connection for each of ``users`` (a user once per connection), in
        order and in one round trip; for each, whether it was that user's last anywhere."""
        pipe = self.kv.client.pipeline(transaction=False)
        for user in users:
            pipe.fcall(self.kv.fn("disconnect"), 0, self.prefix, self.node_id, user)
        return [bool(last) for last in await self.kv.call(pipe.execute)]

    async def users(self) -> list[str]:
        """Everyone online on any node, sorted (from Valkey)."""
        return list(await self.kv.call(self.kv.client.fcall, self.kv.fn("users"), 0, self.prefix))

    async def subscribe(self, subs: list[Subscription], *, create: bool, max_channels: int,
                        kept: bool = False) -> list[Joined]:
        """Record ``subs`` in one round trip, creating channels when ``create``.

        Each is (channel, user, private, want members). At ``max_channels``, a channel
        created here that has no member and no history left in Valkey is forgotten to
        make room, unless it was created ``kept`` (the auto_join channels); see
        ``make_room`` in cache.lua.
        """
        k, now = self.keys, int(time.time() * 1000)
        making = ("1" if kept else "2") if create else "0"
        pipe = self.kv.client.pipeline(transaction=False)
        for channel, user, private, want in subs:
            pipe.fcall(self.kv.fn("subscribe"), 5, k.members(channel), k.channels,
                       f"{self.prefix}subs:{self.node_id}", k.queue, k.ids, self.prefix,
                       self.node_id, channel, user, now, making, max_channels,
                       "1" if private else "0", "1" if want else "0")
        replies = await self.kv.call(pipe.execute)
        return [Joined(str(r[0]), bool(r[1]), list(r[2]) if r[2] is not None else None)
                for r in replies]

    async def unsubscribe(self, subs: list[tuple[str, str, str]]) -> list[bool]:
        """Record (channel, user, reason) unsubscriptions in one round trip; for each,
        whether it was the user's last subscription to the channel on any hub."""
        k, now = self.keys, int(time.time() * 1000)
        pipe = self.kv.client.pipeline(transaction=False)
        for channel, user, reason in subs:
            pipe.fcall(self.kv.fn("unsubscribe"), 2, k.members(channel),
                       f"{self.prefix}subs:{self.node_id}", self.prefix, self.node_id, channel,
                       user, now, reason)
        return [bool(r) for r in await self.kv.call(pipe.execute)]

    async def create(self, channel: str, private: bool, by: str, max_channels: int) -> str:
        """Create ``channel``: "ok", "exists", or "full" (``max_channels`` reached). A
        channel that exists because a client's subscribe created it is kept from now on."""
        k = self.keys
        return str(await self.kv.call(self.kv.client.fcall, self.kv.fn("create"), 3, k.channels,
                                      k.queue, k.ids, channel, "1" if private else "0", by,
                                      max_channels, self.prefix))

    async def members(self, channel: str) -> list[str]:
        """Who is subscribed to ``channel`` on any hub, sorted."""
        return list(await self.kv.call(self.kv.client.fcall, self.kv.fn("members"), 1,
                                       self.keys.members(channel)))

    async def channels(self, private: bool = False) -> list[tuple[str, int, bool]]:
        """Channels that exist, sorted, as (name, members, private); public ones only
        unless ``private``."""
        flat = await self.kv.call(self.kv.client.fcall, self.kv.fn("channels"), 1, self.keys.channels,
                                  self.prefix, "1" if private else "0")
        out = [(str(flat[i]), int(flat[i + 1]), flat[i + 2] == "private")
               for i in range(0, len(flat), 3)]
        return sorted(out)

    async def resync(self, counts: dict[str, int],
                     subs: dict[tuple[str, str], int] | None = None) -> list[str]:
        """Replace this node's presence with ``counts`` (user → connections here) and
        ``subs`` ((channel, user) → connections subscribed here); return everyone online."""
        args: list[object] = []
        for user, n in counts.items():
            args += [user, n]
        args.append("--")
        for (channel, user), n in (subs or {}).items():
            args += [channel, user, n]
        await self.kv.call(self.kv.client.fcall, self.kv.fn("resync"), 0, self.prefix, self.node_id, *args)
        return await self.users()


#: (channel, user, private, want the member list)
Subscription = tuple[str, str, bool, bool]
