"""MessageCache: the hub's short-term memory and its brake, on Valkey.

Every accepted chat is appended to its channel's stream, every whisper to the
whisper stream, and both to the flush queue, with one id from one counter: ids
are unique and increasing across every channel, and never reused (the counter
is kept in the AOF). The same server-side function checks the sender's rate
limit first (GCRA, separate budgets for chat and whisper, per user across all
channels, and in a channel in slow mode the user's budget in that channel too), so an accepted message costs one round trip, and a batch of them one
pipeline. cache.lua holds the functions; :mod:`chathub.keys` names the keys.

A channel's history, paging and recovery read only that channel's stream, so
they cost the same however busy other channels are. Pages older than the stream
reaches come from PostgreSQL through the :class:`~chathub.db.archive.Archive`.
See docs/protocol.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .backends import Accepted, Failed, Limited, Outgoing, Recent, Resent, Stamped, UnknownUser
from .config import CacheConfig, ChannelsConfig, RateLimitConfig
from .db.archive import Archive
from .entries import FLUSH_GROUP, entry_fields, entry_to_message
from .errors import CacheUnavailable, DatabaseUnavailable
from .keys import Keys
from .kv import KV
from .protocol import Message, before_first, parse_id

#: milliseconds a client is told to wait when older history is still on its way to PostgreSQL
UNFLUSHED_RETRY_MS = 1000
#: flush-queue entries read per round trip when a purge looks for a sender's messages
QUEUE_SCAN_CHUNK = 1000
#: ids per chathub_delete call (Lua's unpack() has a limit of a few thousand)
DELETE_CHUNK = 500
#: channels remembered as needing no archive read ahead; past it new ones are read ahead
#: each time (one Valkey round trip per subscribe), never refused
SETTLED_KEPT = 10_000


class MessageCache:
    """Ids, recent history and rate limits in Valkey. One per daemon, shared by the hub.

    Call :meth:`setup` once after :meth:`KV.connect`; then any method may raise
    :class:`~chathub.errors.CacheUnavailable`, which the hub answers with
    ``unavailable``.
    """

    def __init__(self, kv: KV, cache: CacheConfig, limits: RateLimitConfig, node_id: str,
                 archive: Archive, channels: ChannelsConfig | None = None,
                 slow: Mapping[str, tuple[float, int]] | None = None) -> None:
        self.kv = kv
        self.keys = Keys(kv.prefix)
        self.node_id = node_id
        self.cfg = cache
        self.limits = limits
        self.channels = channels or ChannelsConfig()
        #: the first auto-join channel: v1's one room, and the default of every frame
        self.default_channel = self.channels.auto_join[0]
        #: where older pages come from once a stream runs out
        self.archive = archive
        #: channel -> (chat rate, chat burst) of the channels in slow mode, read on every
        #: chat (kept up to date by chathub.slowmode.SlowMode)
        self.slow: Mapping[str, tuple[float, int]] = slow if slow is not None else {}
        #: channels whose last history read was complete (its stream alone, or with a
        #: page of the archive that fitted): a welcome or subscribe there needs no read
        #: ahead (see prepare_welcome)
        self._settled: set[str] = set()

    async def setup(self) -> None:
        """Create the flush queue's consumer group; move a 0.1 message stream into channels."""
        try:
            await self.kv.client.xgroup_create(self.keys.queue, FLUSH_GROUP, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: the group exists already
            if "BUSYGROUP" not in str(exc):
                raise
        k = self.keys
        await self.kv.call(self.kv.client.fcall, self.kv.fn("upgrade"), 5, k.legacy_stream,
                           k.stream("general"), k.whispers, k.queue, k.ids)

    async def accept(self, batch: Sequence[Outgoing]) -> list[Stamped]:
        """Rate-limit and stamp ``batch`` in one round trip; results in the same order.

        Accepted messages are also published to the other hubs, in id order.

        Raises:
            CacheUnavailable: Valkey is down; nothing was stored.
        """
        lim, k = self.limits, self.keys
        ttl_ms = int(self.channels.history_ttl * 1000)
        keys: list[str] = []
        args: list[Any] = []
        for out in batch:
            resend = (k.resend(out.resend_key),) if out.resend_key else ()
            if out.to is None:
                channel = out.channel or self.default_channel
                slow = None if out.unlimited else self.slow.get(channel)
                mine = (k.stream(channel), k.queue, k.ids, k.rate("chat", out.sender), k.hits,
                        k.hits_total, k.deleted(channel), *resend,
                        *(() if slow is None else (k.slow(channel, out.sender),)))
                given = (0 if out.unlimited else lim.chat_rate, lim.chat_burst, out.sender,
                         out.text, channel, k.prefix, self.node_id, ttl_ms,
                         *(() if slow is None else slow))
                kind = "c"
            else:
                mine = (k.whispers, k.queue, k.ids, k.rate("whisper", out.sender), k.hits,
                        k.hits_total, *resend)
                given = (0 if out.unlimited else lim.whisper_rate, lim.whisper_burst,
                         out.sender, out.text, out.to, k.prefix, self.node_id)
                kind = "w"
            keys += mine
            args += (kind, len(mine), len(given), *given)
        # one call for the whole batch (see chathub_accept_many in cache.lua); a message
        # that fails alone comes back as {-1, error}
        replies = await self.kv.call(self.kv.client.fcall, self.kv.fn("accept_many"), len(keys),
                                     *keys, *args)
        results: list[Stamped] = []
        for out, reply in zip(batch, replies, strict=True):
            if reply[0] == -1:  # this message alone failed
                results.append(Failed(str(reply[1])))
            elif reply[0] == 2:
                results.append(UnknownUser())
            elif reply[0] in (1, 3):
                mid = str(reply[1])
                msg = Message(
                    type="chat" if out.to is None else "whisper", id=mid, from_=out.sender,
                    text=out.text, ts=int(mid.split("-", 1)[0]), to=out.to,
                    channel=(out.channel or self.default_channel) if out.to is None else None)
                results.append(Accepted(msg, published=len(reply) > 2 and reply[2] == 1)
                               if reply[0] == 1 else Resent(msg))
            else:
                results.append(Limited(int(reply[1]), slow=len(reply) > 2 and reply[2] == 1))
        return results

    # -- history ------------------------------------------------------------------

    async def recent(self, channel: str | None = None, limit: int | None = None) -> Recent:
        """The newest ``limit`` (default ``history_on_join``) messages of ``channel`` for a
        welcome or a ``subscribed`` reply; see :meth:`recent_many`."""
        channel = channel or self.default_channel
        return (await self.recent_many([channel], limit))[channel]

    async def recent_many(self, channels: Sequence[str], limit: int | None = None
                          ) -> dict[str, Recent]:
        """:meth:`recent` of several channels in one round trip (a batch of subscribes).

        Reads Valkey only: the hub loop calls it. When a stream holds fewer than
        ``limit`` messages the rest comes from the archive's fetched page, or, when
        none fits, is left out (``partial``) while the archive fetches one.
        """
        limit = self.cfg.history_on_join if limit is None else max(limit, 0)
        pipe = self.kv.client.pipeline(transaction=False)
        for channel in channels:
            pipe.fcall(*self._page_args(channel, None, limit))
        pages = await self.kv.call(pipe.execute)
        out: dict[str, Recent] = {}
        # A stream shorter than history_size has never been trimmed (trimming leaves at
        # least that many), so it holds every message of its channel since it was
        # created; it was created at most history_ttl ago if any message was stamped after
        # an archive page was fetched (an idle stream expires after history_ttl).
        whole_since = time.monotonic() - self.channels.history_ttl
        for channel, reply in zip(channels, pages, strict=True):
            entries, exhausted, oldest, top, _, floor, length = reply
            msgs = [entry_to_message(e, channel) for e in entries]
            partial = False
            if len(msgs) < limit and exhausted:
                bound = str(oldest) if oldest else None
                page = self.archive.page_for(
                    channel, bound, limit - len(msgs),
                    whole_since if length < self.cfg.history_size else None)
                if page is None:
                    partial = True
                    self.archive.prefetch(channel, bound)
                else:
                    msgs.extend(page)
            msgs.reverse()
            out[channel] = Recent(msgs, str(top), partial, str(floor))
            if partial:
                self._settled.discard(channel)
            elif len(self._settled) < SETTLED_KEPT:
                self._settled.add(channel)
        return out

    async def warm(self) -> None:
        """Read a welcome's history once, so that the archive fetches the pages welcomes
        need before the first client arrives (bounded by the archive's deadline), then
        once more, so that the first clients find those channels settled."""
        await self.prepare_welcome()
        try:
            await self.recent_many(list(self.channels.auto_join))
        except CacheUnavailable:
            return

    async def prepare_welcome(self, channel: str | None = None) -> None:
        """Have the archive page ready that a welcome (the auto-join channels) or a
        ``subscribed`` reply to ``channel`` needs, waiting at most the archive's deadline.
        Not for the hub loop.

        A channel not read yet, or whose last read lacked a page of the archive, is read
        here first (one Valkey round trip), which starts the archive's fetch: otherwise
        the first subscriber of a new or quiet channel would get ``history_partial`` from
        a healthy database. A channel whose last read was complete is not (so subscribing
        to it over and over costs no extra round trip); should its page have stopped
        fitting since, the hub loop's read says ``history_partial`` once and fetches
        another. Valkey being down is left to the hub loop to report.
        """
        channels = [channel] if channel is not None else list(self.channels.auto_join)
        unsettled = [c for c in channels if c not in self._settled]
        if unsettled:
            try:
                await self.recent_many(unsettled)
            except CacheUnavailable:
                return
        await self.archive.ready()

    async def history(self, before: str | None, limit: int, channel: str | None = None
                      ) -> list[Message]:
        """Messages of ``channel`` older than ``before`` (newest when None), oldest first.

        Served from the channel's stream while it reaches back, then from the archive
        (PostgreSQL, bounded by its deadline): paging back from the newest message
        returns every message of the channel exactly once. ``before`` is a valid id;
        at or below the first id there can be the page is empty without a round trip.
        Not for the hub loop.

        Raises:
            CacheUnavailable: Valkey is down.
            DatabaseUnavailable: the page needs PostgreSQL, which is down or slow, or
                older messages are still on their way there.
        """
        channel = channel or self.default_channel
        if before is not None and before_first(before):
            return []
        entries, exhausted, oldest, _, unflushed, _, _ = await self._page(channel, before, limit)
        msgs = [entry_to_message(e, channel) for e in entries]
        if len(msgs) < limit and exhausted:
            if unflushed:
                raise DatabaseUnavailable("older messages are still being written to PostgreSQL",
                                          retry_after_ms=UNFLUSHED_RETRY_MS)
            msgs.extend(await self.archive.older(channel, str(oldest) if oldest else before,
                                                 limit - len(msgs)))
        msgs.reverse()
        return msgs

    async def _page(self, channel: str, before: str | None, limit: int) -> list[Any]:
        """[entries newest first, ran out (0|1), oldest id scanned, last id, unflushed (0|1),
        the channel's newest id, the stream's length]."""
        return await self.kv.call(self.kv.client.fcall, *self._page_args(channel, before, limit))

    def _page_args(self, channel: str, before: str | None, limit: int) -> tuple[Any, ...]:
        """The ``chathub_history`` call for one page of ``channel`` (see cache.lua)."""
        k = self.keys
        return (self.kv.fn("history"), 4, k.stream(channel), k.ids, k.queue, k.deleted(channel),
                before or "+", limit, channel)

    async def recover(self, since: str, user: str, channel: str | None = None,
                      whispers: bool = True) -> tuple[list[Message] | None, str]:
        """What ``user`` missed after ``since`` in ``channel`` (and, with ``whispers``, the
        whispers to or from them), oldest first, in one round trip.

        Returns:
            (messages, the last id issued); messages is None when the cache no longer
            reaches back to ``since`` (or more than ``recover_limit`` followed it): then
            page with :meth:`history`. It is None too when ``since`` is newer than any id
            this cache has issued: the client's view came from another (or a lost) cache,
            so nothing can be said about what it missed (docs/protocol.md, "Recovery").
        """
        channel = channel or self.default_channel
        k, limit = self.keys, self.cfg.recover_limit
        pipe = self.kv.client.pipeline(transaction=False)
        pipe.fcall(self.kv.fn("recover"), 3, k.stream(channel), k.ids, k.deleted(channel), since,
                   limit, "")
        if whispers:
            pipe.fcall(self.kv.fn("recover"), 3, k.whispers, k.ids, k.whispers_deleted, since, limit,
                       user)
        replies = await self.kv.call(pipe.execute)
        if not all(r[0] for r in replies):
            return None, ""
        msgs = [entry_to_message(e, channel) for e in replies[0][1]]
        if whispers:
            msgs = sorted([*msgs, *(entry_to_message(e) for e in replies[1][1])],
                          key=lambda m: parse_id(m.id))
        return msgs, str(replies[0][2])

    async def since(self, after: str, limit: int, channel: str | None = None
                    ) -> list[tuple[str, Message]]:
        """Up to ``limit`` messages after ``after`` in ``channel`` (None: the whispers),
        oldest first, as (origin node, message). A gap fill reads it."""
        k = self.keys
        stream = k.stream(channel) if channel is not None else k.whispers
        entries = await self.kv.call(self.kv.client.xrange, stream, f"({after}", "+", count=limit)
        if entries:  # an operator may have deleted some of them meanwhile
            gone = await self.kv.call(self.kv.client.smismember,
                                      k.deleted(channel) if channel is not None
                                      else k.whispers_deleted, [e[0] for e in entries])
            entries = [e for e, g in zip(entries, gone, strict=True) if not g]
        return [(entry_fields(e).get("n", ""), entry_to_message(e, channel)) for e in entries]

    # -- removal (chathub delete / purge; chathub.removal) ------------------------------

    async def queued(self, ids: Sequence[str]) -> dict[str, Message]:
        """The messages among ``ids`` still waiting in the flush queue (not yet in
        PostgreSQL), by id. One round trip."""
        pipe = self.kv.client.pipeline(transaction=False)
        for mid in ids:
            pipe.xrange(self.keys.queue, mid, mid)
        replies = await self.kv.call(pipe.execute)
        out: dict[str, Message] = {}
        for reply in replies:
            for e in reply:
                if entry_fields(e).get("k") is None:  # a message, not a channel record
                    m = entry_to_message(e)
                    out[m.id] = m
        return out

    async def queued_from(self, sender: str, since_ms: int, channel: str | None, cap: int
                          ) -> list[Message]:
        """Messages of ``sender`` stamped at or after ``since_ms`` (epoch ms) still in the
        flush queue, in ``channel`` only when given, oldest first; at most ``cap``.

        Reads the queue from ``since_ms`` in chunks of :data:`QUEUE_SCAN_CHUNK`; the queue
        holds only what PostgreSQL does not have yet, so this is short unless PostgreSQL
        has been down for a while.
        """
        out: list[Message] = []
        lower = f"{max(since_ms, 0)}-0"
        while len(out) < cap:
            chunk = await self.kv.call(self.kv.client.xrange, self.keys.queue, lower, "+",
                                       count=QUEUE_SCAN_CHUNK)
            for e in chunk:
                d = entry_fields(e)
                if d.get("k") is None and d.get("f") == sender and (
                        channel is None or d.get("c") == channel):
                    out.append(entry_to_message(e))
            if len(chunk) < QUEUE_SCAN_CHUNK:
                break
            lower = f"({chunk[-1][0]}"
        return out[:cap]

    async def mark_deleted(self, groups: Sequence[tuple[str | None, str, str, list[str]]]
                           ) -> list[str]:
        """Mark messages deleted in Valkey and tell the other hubs, in one round trip.

        ``groups``: (channel or None for whispers, sender, recipient or "", ids). History
        and recovery leave the ids out from now on. Returns the ids not marked before
        (the other hubs were told about those).

        Raises:
            CacheUnavailable: Valkey is down; nothing or only some groups were marked.
        """
        k = self.keys
        ttl_ms = int(self.channels.history_ttl * 1000)
        pipe = self.kv.client.pipeline(transaction=False)
        for channel, sender, to, ids in groups:
            for i in range(0, len(ids), DELETE_CHUNK):
                part = ids[i:i + DELETE_CHUNK]
                if channel is not None:
                    pipe.fcall(self.kv.fn("delete"), 1, k.deleted(channel), k.prefix, self.node_id,
                               channel, ttl_ms, sender, "", *part)
                else:
                    pipe.fcall(self.kv.fn("delete"), 1, k.whispers_deleted, k.prefix, self.node_id,
                               "", 0, sender, to, *part)
        if not len(pipe):
            return []
        return [str(i) for reply in await self.kv.call(pipe.execute) for i in reply]

    async def last_id(self) -> str:
        """The id of the newest message ever stamped ("0-0" before the first)."""
        return str(await self.kv.call(self.kv.client.get, self.keys.ids) or "0-0")

    async def rate_limit_hits(self) -> tuple[int, dict[str, int]]:
        """Rate-limit hits in total and per user, cluster-wide."""
        pipe = self.kv.client.pipeline(transaction=False)
        pipe.get(self.keys.hits_total)
        pipe.hgetall(self.keys.hits)
        total, per_user = await self.kv.call(pipe.execute)
        return int(total or 0), {k: int(v) for k, v in per_user.items()}

    async def flush_backlog(self) -> int:
        """Messages (and channel records) not yet in PostgreSQL."""
        return int(await self.kv.call(self.kv.client.xlen, self.keys.queue))
