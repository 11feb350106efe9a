"""The Hub: who is connected, who is in which channel, and getting every message there.

The Hub owns the connection map (user → that user's connections) and the channel
subscriptions (:class:`~chathub.subscriptions.Subscriptions`). All changes to them
happen in one loop, :meth:`Hub.run`, which consumes a single queue of the events of
:mod:`chathub.hubevents` (register, subscribe, unsubscribe, unregister, inbound
messages and the bus's) in order, taking runs of the same kind as one batch (one
Valkey round trip each). The loop hands each job to its module: connections arriving
and leaving to :mod:`chathub.registration`, subscribing and leaving channels to
:mod:`chathub.membership`, inbound chat and whispers to :mod:`chathub.stamping`
(stamped by the message cache and answered), then to the delivery queue
(:mod:`chathub.fanout`), which keeps them in id order. Delivery writes the frame,
built once, into each recipient's transport buffer and never awaits a client.

Several hubs sharing one Valkey behave as one (docs/scaling.md): presence and
channel membership are kept cluster-wide by the presence backend, and what other
hubs stamp or announce arrives as events on the same queue, ordered with everything
else, and is delivered by :mod:`chathub.cluster.arrivals`.

Callers (connection handlers, the admin server, the HTTP API, the bus) use the public
methods below and never touch the maps. :meth:`remote` also takes this hub's own
message removals (``{"k": "del"}``); the HTTP API's :meth:`publish` and
:meth:`whisper_from` are stamped in the same batches as clients' messages; :meth:`kick`
and the operator's other actions are :mod:`chathub.enforcement`'s, and never wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from . import closecodes, protocol
from .backends import MessageCache, Presence
from .bans import BanList
from .cluster.arrivals import Arrivals
from .cluster.presence import Online
from .cluster.relay import RemoteFeed
from .config import ChannelsConfig, HubConfig
from .drain import drain_policy
from .enforcement import Enforcement
from .errors import RegistrationFailed
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
    fail_batch,
)
from .membership import Membership
from .peer import Client
from .protocol import Chat, Message, Whisper
from .registration import Registration
from .stamping import Stamping
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
                                     lambda: self.registration.clustered)
        #: other hubs' traffic
        self.arrivals = Arrivals(node_id, self.subs, self.online, self._by_user, self.feed,
                                 self.stamping, self.fanout, self.stats,
                                 self.membership.channel_leave)
        #: connections joining and leaving, and this hub's presence in Valkey
        self.registration = Registration(presence, self.channels_cfg, self.default_channel,
                                         self._by_user, self._clients, self.online, self.subs,
                                         self.membership, self.feed, self.fanout, self.bans,
                                         self.stats, self._emit, self._put_soon)
        #: the operator's kicks, bans and channel clearing
        self.enforcement = Enforcement(self._by_user, self._clients, self.subs, self.stats,
                                       self._emit, self._put_soon)

    @property
    def clustered(self) -> bool:
        """Whether other hubs shared this Valkey at the last look (at a registration)."""
        return self.registration.clustered

    # -- reading state --------------------------------------------------------

    def users(self) -> list[str]:
        """Names of the users online on this hub, sorted."""
        return sorted(self._by_user)

    async def users_everywhere(self, channel: str | None = None) -> list[str]:
        """Users online on any hub (in ``channel``); see :meth:`.Registration.users_everywhere`."""
        return await self.registration.users_everywhere(channel)

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
        await self.cache.prepare_welcome(channel)
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
        """Close every connection of ``user`` here; see :meth:`.Enforcement.kick`."""
        return self.enforcement.kick(user, reason)

    def kick_from(self, user: str, channel: str, message: str | None = None) -> int:
        """Take ``user`` out of ``channel`` here; see :meth:`.Enforcement.kick_from`."""
        return self.enforcement.kick_from(user, channel, message)

    def clear_channel(self, channel: str, reason: str = "deleted") -> int:
        """Empty ``channel`` here; see :meth:`.Enforcement.clear_channel`."""
        return self.enforcement.clear_channel(channel, reason)

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
                fail_batch(batch)

    async def _handle(self, ev: Event, batch: list[Any]) -> None:
        if isinstance(ev, Inbound):
            await self.stamping.stamp(batch)
        elif isinstance(ev, Register):
            await self.registration.register(batch)
        elif isinstance(ev, Subscribe):
            await self.membership.subscribe(batch)
        elif isinstance(ev, Unsubscribe):
            await self.membership.unsubscribe(batch)
        elif isinstance(ev, Unregister):
            await self.registration.unregister(batch)
        elif isinstance(ev, Remote):
            self.arrivals.handle(ev.payload)
        elif isinstance(ev, Watching):
            await self.arrivals.fill_channel(ev.channel)
        elif isinstance(ev, EchoDue):
            self.stamping.echo_due()
        else:
            await self.registration.resync()
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


__all__ = ["Hub"]
