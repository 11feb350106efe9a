"""Membership: connections subscribing to and leaving channels, here and cluster-wide.

The hub loop hands :class:`Membership` each run of ``subscribe`` and ``unsubscribe``
events (:mod:`chathub.hubevents`), and uses it to subscribe new connections to the
auto-join channels and to take leaving ones out of theirs. Each batch costs one
presence round trip to Valkey (``chathub_subscribe`` / ``chathub_unsubscribe`` decide
who is a channel's first or last member anywhere) and one read for the channels'
history; ``join`` and ``leave`` go to the channel's subscribers here only when the
user is its first or last member on every hub. The rules that refuse a subscribe
(bans, private channels, limits) are checked first, without I/O. Valkey being down
never refuses a ``leave``: this hub's own view decides then.
"""

from __future__ import annotations

import asyncio
import fnmatch
import sys
from collections.abc import Callable
from typing import Any

from . import protocol
from .backends import MessageCache, Presence, Recent
from .bans import BanList
from .cluster.relay import RemoteFeed
from .config import ChannelsConfig
from .errors import CacheUnavailable
from .fanout import Fanout
from .framing import text_frame
from .hubevents import Subscribe, Unsubscribe
from .peer import Client
from .stamping import now_ms
from .subscriptions import Subscriptions
from .tasks import spawn


async def quietly(aw: Any) -> None:
    """Await ``aw``; Valkey being down is not worth a word (a best-effort correction)."""
    try:
        await aw
    except CacheUnavailable:
        pass


class Membership:
    """Subscribing and leaving for one hub; see the module docstring.

    The hub owns ``subs``; this changes it from the hub loop only.
    """

    def __init__(self, cache: MessageCache, presence: Presence, cfg: ChannelsConfig,
                 subs: Subscriptions, feed: RemoteFeed, fanout: Fanout, bans: BanList,
                 error: Callable[..., None], emit: Callable[[dict[str, Any]], None],
                 clustered: Callable[[], bool]) -> None:
        """``error(client, code, message, ref, retry_after_ms=None)`` sends and counts an
        error frame; ``emit(event)`` goes to the admin socket's subscribers;
        ``clustered()`` says whether other hubs shared Valkey at the last look."""
        self.cache = cache
        self.presence = presence
        self.cfg = cfg
        self.subs = subs
        self.feed = feed
        self.fanout = fanout
        self.bans = bans
        self._error = error
        self._emit = emit
        self._clustered = clustered

    async def join_presence(self, subs: list[tuple[str, str, bool, bool]], create: bool
                             ) -> list[tuple[bool, list[str] | None]]:
        """Record subscriptions to the auto_join channels in Valkey (created when missing,
        and kept when empty); (first anywhere, members when asked) for each.
        When Valkey is down, first-ness is judged from this hub's own subscribers."""
        try:
            joined = await self.presence.subscribe(
                subs, create=create, max_channels=self.cfg.max_channels, kept=True)
            return [(j.first, j.members) for j in joined]
        except CacheUnavailable:
            seen: set[tuple[str, str]] = set()
            out = []
            for ch, user, _, _ in subs:
                out.append((user not in self.subs.local_users(ch) and (ch, user) not in seen, None))
                seen.add((ch, user))
            return out

    def joined(self, c: Client, channel: str, first: bool, ts: int, since: str) -> None:
        """``c`` is subscribed to ``channel`` here, with its history read up to id ``since``
        (:attr:`~chathub.backends.Recent.since`): bookkeeping, and ``join`` when first."""
        # One string object per channel name, however many connections hold it: each
        # subscribe frame parses a copy of its own, which the connection's channel list
        # would otherwise keep (about 60 bytes per subscription).
        channel = sys.intern(channel)
        self.subs.add(c, channel)
        self.feed.welcomed(c, channel, since)
        if first:
            self.fanout.broadcast(
                text_frame(protocol.encode_presence("join", c.user, ts, channel=channel)),
                self.subs.subscribers(channel), c)
            self._emit({"type": "join", "user": c.user, "channel": channel})

    async def history(self, client: Client, channel: str, since: str | None,
                       recent: Recent | None, whispers: bool) -> tuple[Recent, bool | None]:
        """A welcome's (or ``subscribed`` reply's) history of ``channel`` and its
        ``recovered`` flag.

        ``recent`` is the batch's plain history once read (one read per batch). With
        ``since`` the client gets what it missed when the cache still holds it, else
        ``recovered: false`` and the recent history. Valkey being down gives an empty
        history (and ``recovered: false`` for a ``since``), never a refusal.
        """
        try:
            if since is not None:
                missed, top = await self.cache.recover(since, client.user, channel, whispers)
                if missed is not None:
                    return Recent(missed, top, False), True
            return recent or await self.cache.recent(channel), (False if since is not None else None)
        except CacheUnavailable:
            return Recent([], "", False), (False if since is not None else None)

    def may_subscribe(self, c: Client, channel: str) -> tuple[str, str] | None:
        """The error (code, message) that refuses ``c`` the channel, or None."""
        if self.bans.channel(channel, c.user) is not None:
            return protocol.FORBIDDEN, f"you are banned from {channel}"
        if protocol.is_private(channel) and not any(
                fnmatch.fnmatchcase(channel, pattern) for pattern in c.rights):
            return protocol.FORBIDDEN, (f"{channel} is private: only a token that names it may subscribe "
                                        "(never in auth mode none)")
        if channel not in c.channels and len(c.channels) >= self.cfg.max_per_connection:
            return (protocol.TOO_MANY_CHANNELS,
                    f"a connection may be in at most {self.cfg.max_per_connection} channels")
        return None

    async def subscribe(self, batch: list[Subscribe]) -> None:
        """Subscribe a batch: one presence round trip, one history round trip for the
        channels asked without ``since``, and a recovery read for each ``since``."""
        self.fanout.drain()  # as for a welcome: history and live frames meet exactly
        todo: list[Subscribe] = []
        for ev in batch:
            c = ev.client
            if c.gone:
                continue
            refusal = self.may_subscribe(c, ev.channel)
            if refusal is not None:
                self._error(c, *refusal, ev.ref)
                continue
            todo.append(ev)
        if not todo:
            return
        # Presence and every channel's history, the two round trips at once: nothing else
        # runs in the loop meanwhile, so the reads meet the live frames as in sequence
        # (a channel refused below just has its history read for nothing).
        fresh = sorted({ev.channel for ev in todo if ev.since is None})
        try:
            joined, recents = await asyncio.gather(self.presence.subscribe(
                [(ev.channel, ev.client.user, protocol.is_private(ev.channel), self._clustered())
                 for ev in todo],
                create=self.cfg.auto_create, max_channels=self.cfg.max_channels),
                self._recents(fresh))
        except CacheUnavailable:
            for ev in todo:
                self._error(ev.client, protocol.UNAVAILABLE,
                            "the message cache is unavailable; try again", ev.ref, 1000)
            return
        now = now_ms()
        for ev, j in zip(todo, joined, strict=True):
            c, channel = ev.client, ev.channel
            if j.status == "unknown":
                self._error(c, protocol.UNKNOWN_CHANNEL, f"there is no channel {channel}", ev.ref)
                continue
            if j.status == "full":
                self._error(c, protocol.TOO_MANY_CHANNELS,
                            f"the server holds {self.cfg.max_channels} channels already",
                            ev.ref)
                continue
            already = channel in c.channels
            history, recovered = await self.history(c, channel, ev.since, recents.get(channel),
                                                     whispers=False)
            if ev.since is None or recovered is False:
                recents[channel] = history
            members = j.members
            if already:
                # Valkey counted a second subscription of this connection: take it back.
                spawn(quietly(self.presence.unsubscribe([(channel, c.user, "resubscribed")])))
            else:
                self.joined(c, channel, j.first, now, history.since)
            if members is None:
                members = list(self.subs.members(channel).sorted())
            c.send(protocol.encode_subscribed(channel, members, history.messages, recovered,
                                              ev.ref, history.partial))

    async def _recents(self, channels: list[str]) -> dict[str, Recent]:
        """The plain history of each of ``channels``, in one round trip ({} when Valkey is
        down: each subscriber then gets an empty history, as a welcome would)."""
        try:
            return await self.cache.recent_many(channels) if channels else {}
        except CacheUnavailable:
            return {}

    async def unsubscribe(self, batch: list[Unsubscribe]) -> None:
        """Take each connection out of its channel once (a second event for the same pair
        in one batch finds it gone). A client's own ``unsubscribe`` from a channel it is
        not in gets ``not_subscribed``; the server's (a kick and a ban of one user from
        one channel at once, or a removal racing the client's own leave) is dropped."""
        todo = []
        taken: set[tuple[Client, str]] = set()
        for ev in batch:
            pair = (ev.client, ev.channel)
            if ev.channel not in ev.client.channels or pair in taken:
                if not ev.client.gone and ev.reason is None:
                    self._error(ev.client, protocol.NOT_SUBSCRIBED,
                                f"this connection is not in {ev.channel}", ev.ref)
                continue
            taken.add(pair)
            todo.append(ev)
        await self.leave([(ev.client, ev.channel, ev.reason or "left") for ev in todo])
        for ev in todo:
            ev.client.send(protocol.encode_unsubscribed(ev.channel, ev.ref, ev.reason,
                                                        ev.message, ev.until))

    async def leave(self, leaving: list[tuple[Client, str, str]]) -> None:
        """Take connections out of channels, here and in Valkey; ``leave`` where it was the
        user's last subscription anywhere."""
        if not leaving:
            return
        last_here = [self.subs.remove(c, ch) for c, ch, _ in leaving]
        try:
            lasts = await self.presence.unsubscribe([(ch, c.user, r) for c, ch, r in leaving])
        except CacheUnavailable:
            lasts = last_here
        now = now_ms()
        for (c, ch, reason), last in zip(leaving, lasts, strict=True):
            if last:
                self.channel_leave(ch, c.user, reason, now)

    def channel_leave(self, channel: str, user: str, reason: str, ts: int) -> None:
        if channel in self.subs:
            self.subs.members(channel).discard(user)
        self.fanout.broadcast(
            text_frame(protocol.encode_presence("leave", user, ts, reason, channel)),
            self.subs.subscribers(channel))
        self._emit({"type": "leave", "user": user, "channel": channel, "reason": reason})


__all__ = ["Membership", "quietly"]
