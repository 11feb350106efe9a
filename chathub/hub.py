"""The Hub: who is connected, who is in which channel, and getting every message there.

The Hub owns the connection map (user → that user's connections) and the channel
subscriptions (:class:`~chathub.subscriptions.Subscriptions`). All changes to them
happen in one loop, :meth:`Hub.run`, which consumes a single queue of register,
subscribe, unsubscribe, unregister and inbound-message events in order, taking
runs of the same kind as one batch (one Valkey round trip each); the events are
:mod:`chathub.hubevents`, and subscribing and leaving channels is
:mod:`chathub.membership`. Inbound chat and whispers are stamped by the message cache
and answered (:mod:`chathub.stamping`), then handed to the delivery queue
(:mod:`chathub.fanout`), which keeps them in id order. Delivery writes the frame,
built once, into each recipient's transport buffer and never awaits a client.

Several hubs sharing one Valkey behave as one (docs/scaling.md): presence and
channel membership are kept cluster-wide by the presence backend, and what other
hubs stamp or announce arrives as events on the same queue, ordered with everything
else, and is delivered by :mod:`chathub.cluster.arrivals`.

Callers (connection handlers, the admin server) use :meth:`register`,
:meth:`subscribe`, :meth:`unsubscribe`, :meth:`unregister`, :meth:`submit`,
:meth:`users`, :meth:`kick`, :meth:`remote` (also for this hub's own message
removals, ``{"k": "del"}``) and :meth:`shutdown`; the HTTP API
uses :meth:`publish` and :meth:`whisper_from`, whose messages are stamped in the
same batches as clients'. They never touch the maps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from . import closecodes, protocol
from .backends import MessageCache, Presence, Recent
from .bans import Ban, BanList
from .cluster.arrivals import Arrivals
from .cluster.presence import Online
from .cluster.relay import RemoteFeed
from .config import ChannelsConfig, HubConfig
from .drain import drain_policy
from .errors import CacheUnavailable, RegistrationFailed
from .fanout import Fanout
from .framing import text_frame
from .hubevents import (
    BATCHED,
    EchoDue,
    Event,
    Inbound,
    Register,
    Remote,
    Resync,
    Subscribe,
    Unregister,
    Unsubscribe,
    Watching,
)
from .membership import Membership
from .peer import Client
from .protocol import Chat, Message, ProtocolError, Whisper
from .stamping import Stamping, now_ms
from .stats import HubStats
from .subscriptions import Subscriptions
from .tasks import spawn

log = logging.getLogger("chathub.hub")

#: inbound events that may wait for the hub loop before readers block
INBOX_LIMIT = 10_000


class Hub:
    """Connection registry, channels and fan-out; see the module docstring.

    Build it with its backends and start :meth:`run` as a task before registering clients.
    """

    def __init__(self, cache: MessageCache, presence: Presence, cfg: HubConfig, node_id: str, *,
                 channels: ChannelsConfig | None = None, feed: RemoteFeed | None = None,
                 watch: Callable[[str], None] = lambda _c: None,
                 unwatch: Callable[[str], None] = lambda _c: None,
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 on_fanout: Callable[[float], None] | None = None,
                 bans: BanList | None = None) -> None:
        """Args:
            cache: ids, history and rate limits (:class:`~chathub.backends.MessageCache`).
            presence: who is online and in which channel on every hub
                (:class:`~chathub.backends.Presence`).
            cfg: the ``[hub]`` section; ``channels`` the ``[channels]`` one.
            node_id: this hub's name in the cluster.
            feed: de-duplication and gap fill of other hubs' messages (default: one
                reading ``cache``).
            watch, unwatch: start / stop receiving a channel's traffic from other hubs
                (the bus); called from the loop, must not block.
            on_event: called with each event for the admin socket's subscribers
                (``{"type": "connect", ...}``); must not block.
            on_fanout: called with the seconds each broadcast fan-out took (/metrics).
            bans: the bans and mutes in force (:mod:`chathub.bans`), read without I/O.
        """
        self.cache = cache
        self.presence = presence
        self.cfg = cfg
        self.channels_cfg = channels or ChannelsConfig()
        self.node_id = node_id
        self.stats = HubStats()
        #: the channel of frames that name none: v1's one room
        self.default_channel = self.channels_cfg.auto_join[0]
        #: user -> that user's connections, in connection order
        self._by_user: dict[str, list[Client]] = {}
        #: every registered connection
        self._clients: dict[Client, None] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue(INBOX_LIMIT)
        #: who is online on any hub (a mirror; exact when this hub is alone)
        self.online = Online()
        #: whether other hubs shared this Valkey at the last look
        self.clustered = False
        #: channel subscriptions of this hub's connections
        self.subs = Subscriptions(watch, self._unwatched)
        self._unwatch = unwatch
        #: other hubs' messages: exactly once, in id order
        self.feed = feed or RemoteFeed(cache, node_id)
        self.on_event = on_event
        #: the delivery queue and its task
        self.fanout = Fanout(self._clients, self._by_user, drain_policy(cfg), self.stats,
                             self._emit, on_fanout)
        self._stopping = False
        #: bans and mutes: channel bans refuse ``subscribe``, mutes refuse chat and whisper
        self.bans = bans or BanList()
        #: inbound chats and whispers: stamped, answered, delivered (in id order)
        self.stamping = Stamping(cache, self.bans, self.subs, self.feed, self.fanout, self.stats,
                                 self.default_channel, self._emit, self._error,
                                 lambda: self._put_soon(EchoDue()))
        #: subscribing and leaving channels (presence, history, join and leave)
        self.membership = Membership(cache, presence, self.channels_cfg, self.subs, self.feed,
                                     self.fanout, self.bans, self._error, self._emit,
                                     lambda: self.clustered)
        #: other hubs' traffic
        self.arrivals = Arrivals(node_id, self.subs, self.online, self._by_user, self.feed,
                                 self.stamping, self.fanout, self.stats,
                                 self.membership.channel_leave)

    # -- reading state --------------------------------------------------------

    def users(self) -> list[str]:
        """Names of the users online on this hub, sorted."""
        return sorted(self._by_user)

    async def users_everywhere(self, channel: str | None = None) -> list[str]:
        """Names of the users online on any hub (in ``channel`` when given), sorted.

        A hub alone answers from its mirrors; in a cluster it asks Valkey, which is
        exact even while a join from another hub is still on its way.
        """
        if self.clustered:
            try:
                if channel is None:
                    return await self.presence.users()
                return await self.presence.members(channel)
            except CacheUnavailable:
                pass
        if channel is None:
            return self.online.sorted()
        return list(self.subs.members(channel).sorted()) if channel in self.subs else []

    async def create_channel(self, channel: str, private: bool, by: str) -> str:
        """Create ``channel`` (an operator's command): "ok", "exists" or "full"."""
        return await self.presence.create(channel, private, by, self.channels_cfg.max_channels)

    async def channel_list(self) -> list[tuple[str, int]]:
        """The public channels and their member counts (for ``channels``)."""
        return [(name, n) for name, n, _private in await self.presence.channels()]

    def clients(self) -> list[Client]:
        """Every registered connection."""
        return list(self._clients)

    @property
    def connection_count(self) -> int:
        return len(self._clients)

    def inbox_depth(self) -> int:
        """Events waiting for the hub loop."""
        return self._events.qsize()

    def max_backlog(self) -> int:
        """The largest outgoing backlog of any client, in bytes."""
        return max((c.backlog() for c in self._clients), default=0)

    def count_error(self, code: str) -> None:
        """Count an error frame a connection handler sent (by code, for stats)."""
        self.stats.by_error[code] = self.stats.by_error.get(code, 0) + 1

    def count_close(self, reason: str) -> None:
        """Count a finished connection by its close reason (for stats)."""
        self.stats.by_close[reason] = self.stats.by_close.get(reason, 0) + 1

    def _unwatched(self, channel: str) -> None:
        self.feed.drop_channel(channel)
        self._unwatch(channel)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- calls from connection handlers -----------------------------------------

    async def register(self, client: Client, since: str | None = None) -> None:
        """Add ``client`` and subscribe it to the auto-join channels; returns once its
        ``welcome`` was written.

        Runs in the caller's task: waiting for what the welcome needs from PostgreSQL
        (bounded, see :mod:`chathub.db.archive`) happens here, never in the hub loop.

        Raises:
            RegistrationFailed: the hub is shutting down (1001), or preparing this
                client's welcome failed; close with the code and reason it carries.
        """
        if self._stopping:
            raise RegistrationFailed(closecodes.GOING_AWAY)
        await self.cache.prepare_welcome()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._events.put(Register(client, since, done))
        await done

    async def subscribe(self, client: Client, channel: str, since: str | None = None,
                        ref: str | None = None) -> None:
        """Queue a ``subscribe``; the client gets ``subscribed`` or an error frame."""
        await self.cache.prepare_welcome()
        await self._events.put(Subscribe(client, channel, since, ref))

    async def unsubscribe(self, client: Client, channel: str, ref: str | None = None,
                          reason: str | None = None) -> None:
        """Queue an ``unsubscribe``; the client gets ``unsubscribed`` or an error frame."""
        await self._events.put(Unsubscribe(client, channel, ref, reason))

    def unregister(self, client: Client) -> asyncio.Future[None]:
        """Remove ``client`` (its handler is ending); returns at once.

        The returned future completes once the hub has handled everything the
        client sent before, so its counters are final: await it before recording
        the session.
        """
        client.gone = True
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put_soon(Unregister(client, done))
        return done

    def remote(self, payload: dict[str, Any]) -> None:
        """A payload from another hub; handled in order with everything else. Does not wait."""
        self._put_soon(Remote(payload))

    def watching(self, channel: str) -> None:
        """The bus's subscription to ``channel`` took effect. Does not wait."""
        self._put_soon(Watching(channel))

    def dropped(self, channel: str) -> None:
        """The bus no longer receives ``channel``'s traffic (its subscription lingered after
        the last local subscriber left, and ended): this hub's own messages there go out
        at once until it is watched again. Does not wait."""
        self.stamping.live.discard(channel)

    def resync(self) -> None:
        """Ask the loop to write this hub's presence to Valkey again. Does not wait."""
        self._put_soon(Resync())

    def resubscribed(self) -> None:
        """The bus came back: resync presence and fill the gap in remote messages."""
        self._put_soon(Resync(gap=True))

    async def mark_subscribed(self) -> None:
        """Note where the stream stood when the bus first subscribed (where gap fills start)."""
        await self.feed.mark_subscribed()

    def _put_soon(self, ev: Event) -> None:
        try:
            self._events.put_nowait(ev)
        except asyncio.QueueFull:
            spawn(self._events.put(ev))

    async def submit(self, client: Client, message: Chat | Whisper) -> None:
        """Queue a validated chat or whisper; waits only when the inbox is full (backpressure)."""
        await self._events.put(Inbound(client, message))

    async def publish(self, sender: str, channel: str, text: str) -> Message:
        """Stamp and deliver a chat from ``sender`` in ``channel`` as if a client of this
        hub had sent it (ids, history, flush, other hubs, mutes), for the HTTP API. The
        sender's chat budget is not spent: the API key's own budget applies (docs/api.md).

        The caller has validated and moderated it. Raises:
            ProtocolError: refused (``rate_limited``, ``unavailable``); nothing was sent.
        """
        return await self._submit_as(sender, Chat(text=text, channel=channel))

    async def whisper_from(self, sender: str, to: str, text: str) -> Message:
        """Stamp and deliver a whisper from ``sender`` to ``to``; see :meth:`publish`.

        Raises:
            ProtocolError: ``unknown_user`` when ``to`` is online nowhere, or as :meth:`publish`.
        """
        return await self._submit_as(sender, Whisper(to=to, text=text))

    async def _submit_as(self, sender: str, message: Chat | Whisper) -> Message:
        done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        await self._events.put(Inbound(None, message, done, sender))
        return await done

    def kick(self, user: str, reason: str) -> int:
        """Send ``kicked`` and close 4001 on every connection of ``user`` on this hub; return how many."""
        conns = [c for c in self._by_user.get(user, ()) if not c.gone]
        frame = protocol.encode_kicked(reason)
        for c in conns:
            c.send(frame)
            c.close_soon(closecodes.KICKED, reason)
        if conns:
            self.stats.kicks += len(conns)
            log.info("kicked %s (%d connections): %s", user, len(conns), reason)
            self._emit({"type": "kick", "user": user, "reason": reason, "connections": len(conns)})
        return len(conns)

    def kick_from(self, user: str, channel: str, reason: str = "kicked") -> int:
        """Take every connection of ``user`` on this hub out of ``channel`` (they get
        ``unsubscribed`` with ``reason`` and stay connected); return how many."""
        conns = [c for c in self._by_user.get(user, ()) if not c.gone and channel in c.channels]
        for c in conns:
            self._put_soon(Unsubscribe(c, channel, None, reason))
        if conns:
            log.info("%s %s from %s (%d connections)", reason, user, channel, len(conns))
        return len(conns)

    def clear_channel(self, channel: str, reason: str = "deleted") -> int:
        """Take every connection on this hub out of ``channel`` (it is being deleted);
        return how many."""
        conns = [c for c in self.subs.subscribers(channel) if not c.gone]
        for c in conns:
            self._put_soon(Unsubscribe(c, channel, None, reason))
        self.stats.forget_channel(channel)
        return len(conns)

    def enforce_ban(self, ban: Ban) -> int:
        """Apply a ban that was just added to this hub's connections; return how many it hit.

        A user or address ban sends ``banned`` and closes 4004; a channel ban takes the
        user's connections out of the channel (``unsubscribed``, reason ``banned``); a
        mute changes nothing here (the hub refuses the next chat). Does not wait.
        """
        if ban.scope == "mute":
            return 0
        if ban.scope == "channel":
            channel = ban.channel or ""
            hit = [c for c in self._by_user.get(ban.user or "", ())
                   if not c.gone and channel in c.channels]
            for c in hit:
                self._put_soon(Unsubscribe(c, channel, None, "banned"))
            return len(hit)
        hit = [c for c in self._clients if not c.gone and ban.covers(c.user, c.remote_addr)]
        frame = protocol.encode_banned(ban.reason, ban.until)
        for c in hit:
            c.send(frame)
            c.close_soon(closecodes.BANNED, ban.reason or closecodes.BANNED.reason)
        if hit:
            log.info("banned %s (%d connections): %s", ban.key, len(hit), ban.reason)
            self._emit({"type": "ban", "scope": ban.scope, "target": ban.key,
                        "reason": ban.reason, "connections": len(hit)})
        return len(hit)

    def shutdown(self) -> list[Client]:
        """Stop accepting registrations; send ``shutdown`` and close 1001 to everyone."""
        self._stopping = True
        self.stamping.release_all()
        self.fanout.drain()
        frame = text_frame(protocol.SHUTDOWN_FRAME)
        clients = list(self._clients)
        for c in clients:
            c.write(frame)
            c.close_soon(closecodes.GOING_AWAY)
        return clients

    # -- the loop ---------------------------------------------------------------

    async def run(self) -> None:
        """The hub loop and its delivery tasks; runs until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.fanout.run())
            tg.create_task(self._loop())

    async def _loop(self) -> None:
        events = self._events
        batch_max = self.cfg.ingest_batch
        carry: Event | None = None
        while True:
            ev = carry if carry is not None else await events.get()
            carry = None
            batch: list[Any] = [ev]
            try:
                if isinstance(ev, BATCHED):
                    # Take the run of events of the same kind that waits behind this one.
                    while len(batch) < batch_max and not events.empty():
                        nxt = events.get_nowait()
                        if type(nxt) is not type(ev):
                            carry = nxt
                            break
                        batch.append(nxt)
                await self._handle(ev, batch)
            except Exception:  # nothing a client sends may stop the loop
                log.exception("hub loop: unexpected error handling %s", type(ev).__name__)
                if isinstance(ev, Register):
                    for r in batch:
                        if not r.done.done():
                            r.done.set_exception(RegistrationFailed(closecodes.INTERNAL_ERROR))
                elif isinstance(ev, Inbound):
                    for r in batch:
                        if r.done is not None and not r.done.done():
                            r.done.set_exception(ProtocolError(protocol.UNAVAILABLE,
                                                               "the message was not sent"))

    async def _handle(self, ev: Event, batch: list[Any]) -> None:
        if isinstance(ev, Inbound):
            await self.stamping.stamp(batch)
        elif isinstance(ev, Register):
            await self._register(batch)
        elif isinstance(ev, Subscribe):
            await self.membership.subscribe(batch)
        elif isinstance(ev, Unsubscribe):
            await self.membership.unsubscribe(batch)
        elif isinstance(ev, Unregister):
            try:
                await self._unregister(ev.client)
            finally:
                if not ev.done.done():
                    ev.done.set_result(None)
        elif isinstance(ev, Remote):
            self.arrivals.handle(ev.payload)
        elif isinstance(ev, Watching):
            await self.arrivals.fill_channel(ev.channel)
        elif isinstance(ev, EchoDue):
            self.stamping.echo_due()
        else:
            await self._resync()
            if ev.gap:
                await self.arrivals.fill_gap()

    def _error(self, client: Client, code: str, message: str, ref: str | None,
               retry_after_ms: int | None = None) -> None:
        self.count_error(code)
        client.send(protocol.encode_error(code, message, ref, retry_after_ms))

    def users_left(self, left: list[tuple[str, str]], gone: list[str], reason: str) -> None:
        """Another hub died: ``left`` are the (channel, user) it alone held, ``gone`` the
        users now online nowhere; called by the node watch."""
        self.arrivals.users_left(left, gone, reason)

    # -- connections ------------------------------------------------------------

    async def _register(self, regs: list[Register]) -> None:
        """Welcome a batch of new connections: one history read, one presence round trip.

        A failure while preparing one connection's welcome fails that connection alone
        (:class:`RegistrationFailed`); the others in the batch are welcomed as usual.
        """
        # Deliver what is queued first: the welcome's history and the live frames that
        # follow it then meet exactly, with nothing missed and nothing twice.
        self.fanout.drain()
        recent: Recent | None = None
        ready: list[tuple[Register, Recent, bool | None]] = []
        for ev in regs:
            try:
                welcome, recovered = await self.membership.history(ev.client, self.default_channel,
                                                         ev.since, recent, whispers=True)
            except Exception:
                log.exception("registering %s failed", ev.client.session)
                if not ev.done.done():
                    ev.done.set_exception(RegistrationFailed(closecodes.INTERNAL_ERROR))
                continue
            if ev.since is None or recovered is False:
                recent = welcome
            ready.append((ev, welcome, recovered))
        if not ready:
            return
        users = [ev.client.user for ev, _, _ in ready]
        try:
            everyone = await self.presence.connect(users)
            self.clustered = everyone is not None
            if everyone is not None:  # other hubs: take Valkey's word over the mirror
                self.online.replace([*everyone, *self._by_user])
        except Exception as exc:
            if not isinstance(exc, CacheUnavailable):
                log.exception("presence: recording %d connections failed", len(users))
        auto = self.channels_cfg.auto_join
        joined = await self.membership.join_presence(
            [(ch, ev.client.user, False, ch == self.default_channel and self.clustered)
             for ev, _, _ in ready for ch in auto],
            create=True)
        now = now_ms()
        for i, (ev, welcome, recovered) in enumerate(ready):
            c = ev.client
            self.online.add(c.user)
            self._by_user.setdefault(c.user, []).append(c)
            self._clients[c] = None
            members: list[str] | None = None
            for j, ch in enumerate(auto):
                first, listed = joined[i * len(auto) + j]
                if ch == self.default_channel:
                    members = listed
                self.membership.joined(c, ch, first, now, welcome.since if ch == self.default_channel else "")
            if members is None:
                members = list(self.subs.members(self.default_channel).sorted())
            for ch in auto:  # a channel ban on an auto-join channel: out right after the welcome
                if self.bans.channel(ch, c.user, now) is not None:
                    self._put_soon(Unsubscribe(c, ch, None, "banned"))
            c.send(protocol.encode_welcome(c.user, c.session, members, welcome.messages,
                                           recovered, welcome.partial, list(auto)))
            self.feed.welcomed(c, None, welcome.top)  # its whispers up to top were recovered
            self.stats.connects += 1
            self._emit({"type": "connect", "user": c.user, "session": c.session,
                        "remote_addr": c.remote_addr})
            if not ev.done.done():
                ev.done.set_result(None)

    async def _unregister(self, c: Client) -> None:
        if c not in self._clients:
            return
        del self._clients[c]
        self.feed.forget(c)
        conns = self._by_user.get(c.user, [])
        if c in conns:
            conns.remove(c)
        if not conns:
            self._by_user.pop(c.user, None)
        reason = c.close_reason or "left"
        try:
            last = await self.presence.disconnect(c.user, reason)
        except CacheUnavailable:
            last = not conns
        if last:  # before the leaves go out: who reads them and asks `users` sees them gone
            self.online.discard(c.user)
        await self.membership.leave([(c, ch, reason) for ch in sorted(c.channels)])
        self._emit({"type": "disconnect", "user": c.user, "session": c.session,
                    "code": c.close_code, "reason": c.close_reason})

    async def _resync(self) -> None:
        """Write this hub's presence to Valkey again and reload the cluster's list."""
        try:
            everyone = await self.presence.resync(
                {u: len(cs) for u, cs in self._by_user.items()}, self.subs.counts())
            self.online.replace([*everyone, *self._by_user])
        except CacheUnavailable:
            pass  # Valkey is down again; its return triggers another resync


__all__ = ["Hub"]
