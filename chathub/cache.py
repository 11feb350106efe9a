"""MessageCache: the hub's short-term memory and its brake, on Valkey.

Every accepted chat and whisper is appended to one Valkey stream; the stream id
is the message id, so ids are unique, increasing and never reused (Valkey's
stream keeps its last id in the AOF). The same server-side function checks the
sender's rate limit first (GCRA, separate budgets for chat and whisper), so an
accepted message costs one round trip, and a batch of them one pipeline.

History for ``welcome``, for ``history`` requests and for recovery after a
dropped connection is read from the stream; older pages come from PostgreSQL
(the :class:`~chathub.flusher.Flusher` moved them there). See docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .config import CacheConfig, RateLimitConfig
from .kv import KV
from .protocol import Message, parse_id

#: the consumer group that flushes the stream to PostgreSQL
FLUSH_GROUP = "flusher"

#: loads public messages older than (ms, seq) from PostgreSQL, newest first
OlderLoader = Callable[[int, int, int], Awaitable[list[Message]]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A chat or whisper waiting for an id."""

    sender: str
    text: str
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The cache stamped the message: deliver ``message``."""

    message: Message


@dataclass(frozen=True, slots=True)
class UnknownUser:
    """The whisper's recipient is online on no hub: nothing stored."""


@dataclass(frozen=True, slots=True)
class Limited:
    """Over the sender's budget: nothing stored; try again after ``retry_after_ms``."""

    retry_after_ms: int


def entry_fields(entry: Sequence[object]) -> dict[str, str]:
    """The fields of a stream entry, whether the client parsed them into a dict or not."""
    fields = entry[1]
    if isinstance(fields, dict):
        return fields
    assert isinstance(fields, list)
    return dict(zip(fields[::2], fields[1::2], strict=True))


def entry_to_message(entry: Sequence[object]) -> Message:
    """A stream entry ``[id, [field, value, ...]]`` as a :class:`Message`."""
    mid = str(entry[0])
    d = entry_fields(entry)
    to = d.get("to")
    return Message(type="whisper" if to is not None else "chat", id=mid, from_=d["f"],
                   text=d["t"], ts=int(mid.split("-", 1)[0]), to=to)


class MessageCache:
    """Ids, recent history and rate limits in Valkey. One per daemon, shared by the hub.

    Call :meth:`setup` once after :meth:`KV.connect`; then any method may raise
    :class:`~chathub.errors.CacheUnavailable`, which the hub answers with
    ``unavailable``.
    """

    def __init__(self, kv: KV, cache: CacheConfig, limits: RateLimitConfig, node_id: str) -> None:
        self.kv = kv
        self.node_id = node_id
        self.cfg = cache
        self.limits = limits
        self.stream = kv.key("msgs")
        self.hits_key = kv.key("rl", "hits")
        self.hits_total_key = kv.key("rl", "hits_total")
        #: where older public pages come from once the stream runs out (set by the daemon)
        self.older: OlderLoader | None = None

    async def setup(self) -> None:
        """Create the stream and its flusher group if they are missing."""
        try:
            await self.kv.client.xgroup_create(self.stream, FLUSH_GROUP, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: the group exists already
            if "BUSYGROUP" not in str(exc):
                raise

    async def accept(self, batch: Sequence[Outgoing]) -> list[Accepted | Limited | UnknownUser]:
        """Rate-limit and stamp ``batch`` in one round trip; results in the same order.

        Accepted messages are also published to the other hubs, in id order.

        Raises:
            CacheUnavailable: Valkey is down; nothing was stored.
        """
        pipe = self.kv.client.pipeline(transaction=False)
        lim = self.limits
        for out in batch:
            if out.to is None:
                rl_key, rate, burst = self.kv.key("rl", "chat", out.sender), lim.chat_rate, lim.chat_burst
            else:
                rl_key, rate, burst = self.kv.key("rl", "whisper", out.sender), lim.whisper_rate, lim.whisper_burst
            pipe.fcall("chathub_accept", 4, self.stream, rl_key, self.hits_key, self.hits_total_key,
                       rate, burst, out.sender, out.text, out.to or "", self.kv.prefix, self.node_id)
        replies = await self.kv.call(pipe.execute)
        results: list[Accepted | Limited | UnknownUser] = []
        for out, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            if reply[0] == 2:
                results.append(UnknownUser())
            elif reply[0] == 1:
                mid = str(reply[1])
                results.append(Accepted(Message(
                    type="chat" if out.to is None else "whisper", id=mid, from_=out.sender,
                    text=out.text, ts=int(mid.split("-", 1)[0]), to=out.to)))
            else:
                results.append(Limited(int(reply[1])))
        return results

    async def recent(self, limit: int | None = None) -> tuple[list[Message], str]:
        """The newest ``limit`` (default ``history_on_join``) public messages, oldest first,
        and the stream's last id at that moment (nothing up to it is left to deliver)."""
        limit = self.cfg.history_on_join if limit is None else limit
        return await self._history(None, max(limit, 0))

    async def history(self, before: str | None, limit: int) -> list[Message]:
        """Public messages older than ``before`` (newest when None), oldest first.

        Served from the stream while it reaches back, then from PostgreSQL: paging
        back from the newest message returns every public message exactly once.
        """
        return (await self._history(before, limit))[0]

    async def _history(self, before: str | None, limit: int) -> tuple[list[Message], str]:
        entries, exhausted, oldest, top = await self.kv.call(
            self.kv.client.fcall, "chathub_history", 1, self.stream, before or "+", limit)
        msgs = [entry_to_message(e) for e in entries]
        if len(msgs) < limit and exhausted and self.older is not None:
            bound = oldest or before
            if bound:
                ms, seq = parse_id(bound)
                msgs.extend(await self.older(ms, seq, limit - len(msgs)))
            elif before is None:
                msgs.extend(await self.older(2**62, 0, limit))
        msgs.reverse()
        return msgs, str(top)

    async def recover(self, since: str, user: str) -> tuple[list[Message] | None, str]:
        """What ``user`` missed after ``since``: public chat and their whispers, oldest first.

        Returns:
            (messages, the stream's last id); messages is None when the cache no longer
            reaches back to ``since`` (or more than ``recover_limit`` followed it): then
            page with :meth:`history`.
        """
        reply = await self.kv.call(self.kv.client.fcall, "chathub_recover", 1, self.stream,
                                   since, user, self.cfg.recover_limit)
        if not reply[0]:
            return None, ""
        return [entry_to_message(e) for e in reply[1]], str(reply[2])

    async def since(self, after: str, limit: int) -> list[tuple[str, Message]]:
        """Up to ``limit`` stream entries after ``after``, oldest first, as (origin node, message)."""
        entries = await self.kv.call(self.kv.client.xrange, self.stream, f"({after}", "+", count=limit)
        return [(entry_fields(e).get("n", ""), entry_to_message(e)) for e in entries]

    async def last_id(self) -> str:
        """The id of the newest message ever stamped ("0-0" before the first)."""
        info = await self.kv.call(self.kv.client.xinfo_stream, self.stream)
        return str(info.get("last-generated-id") or "0-0")

    async def rate_limit_hits(self) -> tuple[int, dict[str, int]]:
        """Rate-limit hits in total and per user, cluster-wide."""
        pipe = self.kv.client.pipeline(transaction=False)
        pipe.get(self.hits_total_key)
        pipe.hgetall(self.hits_key)
        total, per_user = await self.kv.call(pipe.execute)
        return int(total or 0), {k: int(v) for k, v in per_user.items()}

    async def flush_backlog(self) -> int:
        """Messages in the stream not yet in PostgreSQL."""
        groups = await self.kv.call(self.kv.client.xinfo_groups, self.stream)
        for g in groups:
            if g["name"] == FLUSH_GROUP:
                return int(g.get("pending") or 0) + int(g.get("lag") or 0)
        return 0
