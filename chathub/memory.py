"""In-memory backends for one process: a :class:`MemoryCache` and a :class:`MemoryPresence`.

They implement :class:`chathub.backends.MessageCache` and
:class:`chathub.backends.Presence` without Valkey, so a hub can run (and be tested)
with no server at all. Ids follow Valkey's rule: ``<ms>-<seq>``, increasing.
Set :attr:`MemoryCache.down` to make every call raise
:class:`~chathub.errors.CacheUnavailable`, as Valkey being down does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .backends import Accepted, Joined, Limited, Outgoing, Recent, Resent, Stamped, UnknownUser
from .bucket import TokenBucket
from .errors import CacheUnavailable
from .protocol import Message, before_first, parse_id


class MemoryPresence:
    """Who is online and in which channel, for a hub that is alone.

    Args:
        has_history: whether a channel holds history (default: never); at
            ``max_channels``, a channel a subscribe created that has no member and no
            history is forgotten to make room, as in Valkey (``make_room`` in cache.lua).
    """

    def __init__(self, has_history: Callable[[str], bool] = lambda channel: False) -> None:
        #: user -> open connections
        self.counts: dict[str, int] = {}
        #: channel -> user -> subscriptions
        self.in_channel: dict[str, dict[str, int]] = {}
        #: channel -> private
        self.registry: dict[str, bool] = {}
        #: the channels in ``registry`` a client's subscribe created (may be forgotten)
        self.on_demand: set[str] = set()
        self._has_history = has_history

    def _room(self, max_channels: int) -> bool:
        """Whether one more channel fits, after forgetting channels created on demand
        that have no member and no history when there are ``max_channels`` already."""
        for channel in list(self.on_demand):
            if len(self.registry) < max_channels:
                break
            if not self.in_channel.get(channel) and not self._has_history(channel):
                self.registry.pop(channel, None)
                self.in_channel.pop(channel, None)
                self.on_demand.discard(channel)
        return len(self.registry) < max_channels

    async def connect(self, users: list[str]) -> list[str] | None:
        for u in users:
            self.counts[u] = self.counts.get(u, 0) + 1
        return None

    async def disconnect_many(self, users: list[str]) -> list[bool]:
        lasts = []
        for user in users:
            n = self.counts.get(user, 0) - 1
            if n > 0:
                self.counts[user] = n
            else:
                self.counts.pop(user, None)
            lasts.append(n <= 0)
        return lasts

    async def users(self) -> list[str]:
        return sorted(self.counts)

    async def subscribe(self, subs: list[tuple[str, str, bool, bool]], *, create: bool,
                        max_channels: int, kept: bool = False) -> list[Joined]:
        out = []
        for channel, user, private, want in subs:
            if channel not in self.registry:
                if not create:
                    out.append(Joined("unknown", False, None))
                    continue
                if not self._room(max_channels):
                    out.append(Joined("full", False, None))
                    continue
                self.registry[channel] = private
                if not kept:
                    self.on_demand.add(channel)
            m = self.in_channel.setdefault(channel, {})
            m[user] = m.get(user, 0) + 1
            out.append(Joined("ok", m[user] == 1, sorted(m) if want else None))
        return out

    async def unsubscribe(self, subs: list[tuple[str, str, str]]) -> list[bool]:
        out = []
        for channel, user, _reason in subs:
            m = self.in_channel.get(channel, {})
            n = m.get(user, 0) - 1
            if n > 0:
                m[user] = n
                out.append(False)
            else:
                m.pop(user, None)
                out.append(True)
        return out

    async def create(self, channel: str, private: bool, by: str, max_channels: int) -> str:
        if channel in self.registry:
            self.on_demand.discard(channel)
            return "exists"
        if not self._room(max_channels):
            return "full"
        self.registry[channel] = private
        return "ok"

    async def members(self, channel: str) -> list[str]:
        return sorted(self.in_channel.get(channel, {}))

    async def channels(self, private: bool = False) -> list[tuple[str, int, bool]]:
        return sorted((name, len(self.in_channel.get(name, {})), p)
                      for name, p in self.registry.items() if private or not p)

    async def resync(self, counts: dict[str, int],
                     subs: dict[tuple[str, str], int] | None = None) -> list[str]:
        self.counts = dict(counts)
        self.in_channel = {}
        for (channel, user), n in (subs or {}).items():
            self.in_channel.setdefault(channel, {})[user] = n
        return sorted(self.counts)


class MemoryCache:
    """Ids, history and rate limits in a list. One per hub.

    Args:
        presence: tells whether a whisper's recipient is online.
        history_on_join: messages in a welcome.
        chat_rate, chat_burst, whisper_rate, whisper_burst: per-user budgets.
        node_id: the origin recorded with each message.
    """

    def __init__(self, presence: MemoryPresence, history_on_join: int = 50,
                 chat_rate: float = 1e9, chat_burst: float = 1e9, whisper_rate: float = 1e9,
                 whisper_burst: float = 1e9, node_id: str = "memory") -> None:
        self.presence = presence
        self.history_on_join = history_on_join
        self.rates = {"chat": (chat_rate, chat_burst), "whisper": (whisper_rate, whisper_burst)}
        self.node_id = node_id
        #: (origin node, message), oldest first, every channel and the whispers
        self.entries: list[tuple[str, Message]] = []
        #: the default channel (``[channels] auto_join[0]``)
        self.default_channel = "general"
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._last = (0, 0)
        #: batches stamped by :meth:`accept` (one Valkey round trip each in the real cache)
        self.batches = 0
        #: when True every call raises CacheUnavailable
        self.down = False
        #: the message each (connection, ref) was stamped with (no expiry: a test's lifetime)
        self._resends: dict[str, Message] = {}

    def _check(self) -> None:
        if self.down:
            raise CacheUnavailable("the in-memory cache is marked down")

    def _next_id(self) -> str:
        ms = int(time.time() * 1000)
        self._last = (ms, 0) if ms > self._last[0] else (self._last[0], self._last[1] + 1)
        return f"{self._last[0]}-{self._last[1]}"

    async def accept(self, batch: Sequence[Outgoing]) -> list[Stamped]:
        self._check()
        self.batches += 1
        out: list[Stamped] = []
        for o in batch:
            if o.to is not None and o.to not in self.presence.counts:
                out.append(UnknownUser())
                continue
            first = self._resends.get(o.resend_key) if o.resend_key else None
            if first is not None and first.text == o.text:
                out.append(Resent(first))
                continue
            kind = "chat" if o.to is None else "whisper"
            bucket = self._buckets.setdefault((kind, o.sender), TokenBucket(*self.rates[kind]))
            wait = bucket.take()
            if wait:
                out.append(Limited(int(wait * 1000) + 1))
                continue
            mid = self._next_id()
            msg = Message(type=kind, id=mid, from_=o.sender, text=o.text, ts=parse_id(mid)[0],
                          to=o.to, channel=None if o.to else (o.channel or self.default_channel))
            self.entries.append((self.node_id, msg))
            if o.resend_key:
                self._resends[o.resend_key] = msg
            out.append(Accepted(msg))
        return out

    def _in(self, channel: str | None) -> list[Message]:
        """Messages of ``channel`` (None: whispers), oldest first."""
        return [m for _, m in self.entries if m.channel == channel and
                (channel is not None or m.to is not None)]

    async def recent(self, channel: str | None = None) -> Recent:
        self._check()
        msgs = self._in(channel or self.default_channel)
        return Recent(msgs[-self.history_on_join:] if self.history_on_join else [],
                      await self.last_id(), False, msgs[-1].id if msgs else "0-0")

    async def recent_many(self, channels: Sequence[str]) -> dict[str, Recent]:
        return {channel: await self.recent(channel) for channel in channels}

    async def prepare_welcome(self, channel: str | None = None) -> None:
        return None

    async def recover(self, since: str, user: str, channel: str | None = None,
                      whispers: bool = True) -> tuple[list[Message] | None, str]:
        self._check()
        at = parse_id(since)
        if not self.entries or at < parse_id(self.entries[0][1].id) or at > self._last:
            return None, ""
        channel = channel or self.default_channel
        missed = [m for _, m in self.entries if parse_id(m.id) > at and (
            m.channel == channel or (whispers and m.to is not None and user in (m.to, m.from_)))]
        return missed, await self.last_id()

    async def history(self, before: str | None, limit: int, channel: str | None = None
                      ) -> list[Message]:
        self._check()
        if before is not None and before_first(before):
            return []
        msgs = [m for m in self._in(channel or self.default_channel)
                if before is None or parse_id(m.id) < parse_id(before)]
        return msgs[-limit:]

    async def last_id(self) -> str:
        self._check()
        return f"{self._last[0]}-{self._last[1]}"

    async def since(self, after: str, limit: int, channel: str | None = None
                    ) -> list[tuple[str, Message]]:
        self._check()
        at = parse_id(after)
        return [(n, m) for n, m in self.entries
                if parse_id(m.id) > at and m.channel == channel][:limit]
