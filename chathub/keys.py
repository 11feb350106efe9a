"""Every Valkey key and pub/sub channel chathub uses, built in one place (see cache.lua).

One channel's keys share a hash tag (``{c:NAME}``), so they land in one slot of a
Valkey Cluster. The functions in cache.lua get every fixed key they touch in
``KEYS``; the per-node keys (``conns:NODE``, ``subs:NODE``), whose set changes as
hubs come and go, are built inside the functions from the prefix and the node ids
in ``nodes`` (docs/scaling.md says what that means for a Valkey Cluster).
"""

from __future__ import annotations


class Keys:
    """The keys under one prefix (``[valkey] key_prefix``, default ``chathub:``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        #: the last id issued, for every stream ("<ms>-<seq>")
        self.ids = prefix + "ids"
        #: every message and every created channel until PostgreSQL has it
        self.queue = prefix + "q"
        #: whispers (recovery with ?since= reads them)
        self.whispers = prefix + "w"
        #: ids of deleted whispers (chathub delete)
        self.whispers_deleted = prefix + "wd"
        #: channel name -> "public" | "private"
        self.channels = prefix + "chans"
        #: the channels in ``channels`` a client's subscribe created: at max_channels, one
        #: without members and history is forgotten (``make_room`` in cache.lua, which
        #: names it and its scan cursor, ``chans:demand:cursor``, too)
        self.on_demand = prefix + "chans:demand"
        #: live node -> last heartbeat ms
        self.nodes = prefix + "nodes"
        #: the bus: whispers, kicks, limits (channel traffic has a pub/sub channel each)
        self.bus = prefix + "bus"
        #: rate-limit hits per user, and in total
        self.hits = prefix + "rl:hits"
        self.hits_total = prefix + "rl:hits_total"
        #: chathub 0.1's single message stream, moved into the channel layout at start
        self.legacy_stream = prefix + "msgs"

    def stream(self, channel: str) -> str:
        """Channel history: a stream of {f: sender, t: text, n: origin node}."""
        return f"{self.prefix}{{c:{channel}}}:s"

    def members(self, channel: str) -> str:
        """user -> subscriptions to the channel on every hub."""
        return f"{self.prefix}{{c:{channel}}}:m"

    def deleted(self, channel: str) -> str:
        """Ids of the channel's deleted messages, left out of history and recovery."""
        return f"{self.prefix}{{c:{channel}}}:d"

    def pubsub(self, channel: str) -> str:
        """The pub/sub channel of a channel's messages, joins and leaves."""
        return f"{self.prefix}bus:c:{channel}"

    def resend(self, token: str) -> str:
        """The id (and text digest) a connection's ``ref`` was stamped with, for two minutes."""
        return self.prefix + "dup:" + token

    def rate(self, kind: str, user: str) -> str:
        """GCRA state of ``user``'s ``kind`` ("chat" | "whisper") budget."""
        return f"{self.prefix}rl:{kind}:{user}"

    def slow(self, channel: str, user: str) -> str:
        """GCRA state of ``user``'s budget in ``channel`` while it is in slow mode."""
        return f"{self.prefix}{{c:{channel}}}:rl:{user}"

    def channel_of(self, pubsub: str) -> str | None:
        """The channel a pub/sub channel name carries (None for the bus itself)."""
        head = self.prefix + "bus:c:"
        return pubsub[len(head):] if pubsub.startswith(head) else None
