"""MessageCache: the hub's short-term memory and its brake, on Valkey.

Every accepted chat and whisper is appended to one Valkey stream; the stream id
is the message id, so ids are unique, increasing and never reused (Valkey's
stream keeps its last id in the AOF). The same server-side function checks the
sender's rate limit first (GCRA, separate budgets for chat and whisper), so an
accepted message costs one round trip, and a batch of them one pipeline.

History for ``welcome``, for ``history`` requests and for recovery after a
dropped connection is read from the stream; older pages come from PostgreSQL
(the :class:`~chathub.db.flusher.Flusher` moved them there). See docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from .backends import Accepted, Failed, Limited, Outgoing, Recent, UnknownUser
from .config import CacheConfig, RateLimitConfig
from .db.archive import Archive
from .errors import CacheUnavailable
from .kv import KV
from .protocol import Message, before_first

#: the consumer group that flushes the stream to PostgreSQL
FLUSH_GROUP = "flusher"




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

    def __init__(self, kv: KV, cache: CacheConfig, limits: RateLimitConfig, node_id: str,
                 archive: Archive) -> None:
        self.kv = kv
        self.node_id = node_id
        self.cfg = cache
        self.limits = limits
        self.stream = kv.key("msgs")
        self.hits_key = kv.key("rl", "hits")
        self.hits_total_key = kv.key("rl", "hits_total")
        #: where older public pages come from once the stream runs out
        self.archive = archive

    async def setup(self) -> None:
        """Create the stream and its flusher group if they are missing."""
        try:
            await self.kv.client.xgroup_create(self.stream, FLUSH_GROUP, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: the group exists already
            if "BUSYGROUP" not in str(exc):
                raise

    async def accept(self, batch: Sequence[Outgoing]) -> list[Accepted | Limited | UnknownUser | Failed]:
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
        replies = await self.kv.call(pipe.execute, False)  # errors come back per message
        results: list[Accepted | Limited | UnknownUser | Failed] = []
        for out, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):  # this message alone failed
                results.append(Failed(str(reply)))
                continue
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

    async def recent(self, limit: int | None = None) -> Recent:
        """The newest ``limit`` (default ``history_on_join``) public messages for a welcome.

        Reads Valkey only: the hub loop calls it. When the stream holds fewer than
        ``limit`` public messages the rest comes from the archive's fetched page, or,
        when none fits, is left out (``partial``) while the archive fetches one.
        """
        limit = self.cfg.history_on_join if limit is None else max(limit, 0)
        entries, exhausted, oldest, top = await self._stream_page(None, limit)
        msgs = [entry_to_message(e) for e in entries]
        partial = False
        if len(msgs) < limit and exhausted:
            bound = str(oldest) if oldest else None
            page = self.archive.page_for(bound, limit - len(msgs))
            if page is None:
                partial = True
                self.archive.prefetch(bound)
            else:
                msgs.extend(page)
        msgs.reverse()
        return Recent(msgs, str(top), partial)

    async def warm(self) -> None:
        """Read a welcome's history once, so that the archive fetches the page welcomes
        need before the first client arrives (bounded by the archive's deadline)."""
        try:
            await self.recent()
        except CacheUnavailable:
            return
        await self.archive.ready()

    async def prepare_welcome(self) -> None:
        """Wait, bounded, for an archive page being fetched for welcomes. Not for the hub loop."""
        await self.archive.ready()

    async def history(self, before: str | None, limit: int) -> list[Message]:
        """Public messages older than ``before`` (newest when None), oldest first.

        Served from the stream while it reaches back, then from the archive (PostgreSQL,
        bounded by its deadline): paging back from the newest message returns every
        public message exactly once. ``before`` is a valid id (see
        :func:`~chathub.protocol.parse_id`); at or below the first id Valkey can issue
        the page is empty without a round trip. Not for the hub loop.

        Raises:
            CacheUnavailable: Valkey is down.
            DatabaseUnavailable: the page needs PostgreSQL, which is down or slow.
        """
        if before is not None and before_first(before):
            return []
        entries, exhausted, oldest, _ = await self._stream_page(before, limit)
        msgs = [entry_to_message(e) for e in entries]
        if len(msgs) < limit and exhausted:
            msgs.extend(await self.archive.older(str(oldest) if oldest else before,
                                                 limit - len(msgs)))
        msgs.reverse()
        return msgs

    async def _stream_page(self, before: str | None, limit: int) -> tuple[list, int, str, str]:
        """(entries newest first, whether the stream ran out, oldest id scanned, last id)."""
        return await self.kv.call(
            self.kv.client.fcall, "chathub_history", 1, self.stream, before or "+", limit)

    async def recover(self, since: str, user: str) -> tuple[list[Message] | None, str]:
        """What ``user`` missed after ``since``: public chat and their whispers, oldest first.

        Returns:
            (messages, the stream's last id); messages is None when the cache no longer
            reaches back to ``since`` (or more than ``recover_limit`` followed it): then
            page with :meth:`history`. It is None too when ``since`` is newer than any id
            this cache has issued: the client's view came from another (or a lost) cache,
            so nothing can be said about what it missed (docs/protocol.md, "Recovery").
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
