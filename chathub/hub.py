"""The Hub: who is connected, and getting every message to every recipient.

The Hub owns the connection map (user → that user's connections). All changes to
it happen in one loop, :meth:`Hub.run`, which consumes a single queue of
register, unregister and inbound-message events in order. Inbound chat and
whispers are stamped by the :class:`~chathub.cache.MessageCache` in batches
(one Valkey round trip per batch), then handed to two delivery queues — one for
broadcasts (chat, join, leave), one for whispers — each drained by its own task.
Delivery writes the frame, built once, into each recipient's transport buffer and
never awaits a client: a client whose backlog stays above ``client_queue_limit``
for ``write_timeout`` (or passes ``client_queue_max``) is a slow consumer and is
closed with 4002 while everyone else keeps receiving (:mod:`chathub.drain`).

Several hubs sharing one Valkey behave as one (docs/scaling.md): presence is
kept cluster-wide by :class:`~chathub.cluster.presence.Presence`, and what other hubs
stamp or announce arrives from the :class:`~chathub.cluster.bus.Bus` as events on the same
queue, so it is ordered with everything else this hub does.

Callers (the connection handlers and the admin server) use :meth:`register`,
:meth:`unregister`, :meth:`submit`, :meth:`users`, :meth:`kick`, :meth:`remote`
and :meth:`shutdown`; they never touch the map.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import closecodes, protocol
from .backends import Accepted, Failed, Limited, MessageCache, Outgoing, Presence, Recent
from .cluster.presence import Online
from .cluster.relay import RemoteFeed, message_of
from .config import HubConfig
from .drain import drain_policy
from .errors import CacheUnavailable, RegistrationFailed
from .fanout import Fanout
from .framing import text_frame
from .peer import Client
from .protocol import Chat, Message, Whisper
from .stats import HubStats
from .tasks import spawn

log = logging.getLogger("chathub.hub")

#: inbound chat/whisper events that may wait for the hub loop before readers block
INBOX_LIMIT = 10_000


@dataclass(slots=True)
class _Register:
    client: Client
    since: str | None
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Unregister:
    client: Client
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Inbound:
    client: Client
    message: Chat | Whisper


@dataclass(slots=True)
class _Remote:
    """A payload from another hub (see :mod:`chathub.cluster.bus`)."""

    payload: dict[str, Any]


@dataclass(slots=True)
class _Resync:
    """Valkey or the bus came back: write this node's presence again; after the bus
    resubscribed, also deliver what other hubs published during the gap."""

    gap: bool = False


_Event = _Register | _Unregister | _Inbound | _Remote | _Resync





class Hub:
    """Connection registry and fan-out; see the module docstring.

    Build it with its cache and start :meth:`run` as a task before registering clients.
    """

    def __init__(self, cache: MessageCache, presence: Presence, cfg: HubConfig, node_id: str, *,
                 feed: RemoteFeed | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 on_fanout: Callable[[float], None] | None = None) -> None:
        """Args:
            cache: ids, history and rate limits (:class:`~chathub.backends.MessageCache`).
            presence: who is online on every hub (:class:`~chathub.backends.Presence`).
            cfg: the ``[hub]`` section.
            node_id: this hub's name in the cluster.
            feed: de-duplication and gap fill of other hubs' messages (default: one
                reading ``cache``).
            on_event: called with each event for the admin socket's subscribers
                (``{"type": "connect", ...}``); must not block.
            on_fanout: called with the seconds each broadcast fan-out took (/metrics).
        """
        self.cache = cache
        self.presence = presence
        self.cfg = cfg
        self.node_id = node_id
        self.stats = HubStats()
        #: user -> that user's connections, in connection order
        self._by_user: dict[str, list[Client]] = {}
        #: every registered connection
        self._clients: dict[Client, None] = {}
        self._events: asyncio.Queue[_Event] = asyncio.Queue(INBOX_LIMIT)
        #: who is online on any hub (a mirror of Valkey's presence; see presence.py)
        self.online = Online()
        #: whether other hubs shared this Valkey at the last look
        self.clustered = False
        #: other hubs' messages: exactly once, in id order
        self.feed = feed or RemoteFeed(cache, node_id)
        self.on_event = on_event
        #: the broadcast and whisper queues and their delivery tasks
        self.fanout = Fanout(self._clients, self._by_user, drain_policy(cfg), self.stats,
                             self._emit, on_fanout)
        self._stopping = False

    # -- reading state --------------------------------------------------------

    def users(self) -> list[str]:
        """Names of the users online on this hub, sorted."""
        return sorted(self._by_user)

    async def users_everywhere(self) -> list[str]:
        """Names of the users online on any hub, sorted.

        A hub alone answers from its mirror; in a cluster it asks Valkey, which is
        exact even while a join from another hub is still on its way.
        """
        if self.clustered:
            try:
                return await self.presence.users()
            except CacheUnavailable:
                pass
        return self.online.sorted()

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

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- calls from connection handlers -----------------------------------------

    async def register(self, client: Client, since: str | None = None) -> None:
        """Add ``client``; returns once its ``welcome`` was written.

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
        await self._events.put(_Register(client, since, done))
        await done

    def unregister(self, client: Client) -> asyncio.Future[None]:
        """Remove ``client`` (its handler is ending); returns at once.

        The returned future completes once the hub has handled everything the
        client sent before, so its counters are final: await it before recording
        the session.
        """
        client.gone = True
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put_soon(_Unregister(client, done))
        return done

    def remote(self, payload: dict[str, Any]) -> None:
        """A payload from another hub; handled in order with everything else. Does not wait."""
        self._put_soon(_Remote(payload))

    def resync(self) -> None:
        """Ask the loop to write this hub's presence to Valkey again. Does not wait."""
        self._put_soon(_Resync())

    def resubscribed(self) -> None:
        """The bus came back: resync presence and fill the gap in remote messages."""
        self._put_soon(_Resync(gap=True))

    async def mark_subscribed(self) -> None:
        """Note where the stream stood when the bus first subscribed (where gap fills start)."""
        await self.feed.mark_subscribed()

    def _put_soon(self, ev: _Event) -> None:
        try:
            self._events.put_nowait(ev)
        except asyncio.QueueFull:
            spawn(self._events.put(ev))

    async def submit(self, client: Client, message: Chat | Whisper) -> None:
        """Queue a validated chat or whisper; waits only when the inbox is full (backpressure)."""
        await self._events.put(_Inbound(client, message))

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

    def shutdown(self) -> list[Client]:
        """Stop accepting registrations; send ``shutdown`` and close 1001 to everyone."""
        self._stopping = True
        self.fanout.drain()
        frame = text_frame(protocol.SHUTDOWN_FRAME)
        clients = list(self._clients)
        for c in clients:
            c.write(frame)
            c.close_soon(closecodes.GOING_AWAY)
        return clients

    # -- the loop ---------------------------------------------------------------

    async def run(self) -> None:
        """The hub loop and its two delivery tasks; runs until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.fanout.run())
            tg.create_task(self._loop())

    async def _loop(self) -> None:
        events = self._events
        batch_max = self.cfg.ingest_batch
        carry: _Event | None = None
        while True:
            ev = carry if carry is not None else await events.get()
            carry = None
            try:
                if isinstance(ev, _Inbound | _Register):
                    # Take the run of events of the same kind that waits behind this one.
                    batch: list[Any] = [ev]
                    while len(batch) < batch_max and not events.empty():
                        nxt = events.get_nowait()
                        if type(nxt) is not type(ev):
                            carry = nxt
                            break
                        batch.append(nxt)
                if isinstance(ev, _Inbound):
                    await self._stamp(batch)
                elif isinstance(ev, _Register):
                    try:
                        await self._register(batch)
                    except BaseException:
                        for r in batch:
                            if not r.done.done():
                                r.done.set_exception(RegistrationFailed(
                                    closecodes.INTERNAL_ERROR))
                        raise
                elif isinstance(ev, _Unregister):
                    try:
                        await self._unregister(ev.client)
                    finally:
                        if not ev.done.done():
                            ev.done.set_result(None)
                elif isinstance(ev, _Remote):
                    self._remote(ev.payload)
                else:
                    await self._resync()
                    if ev.gap:
                        await self._fill_gap()
            except Exception:  # nothing a client sends may stop the loop
                log.exception("hub loop: unexpected error handling %s", type(ev).__name__)

    def _error(self, client: Client, code: str, message: str, ref: str | None,
               retry_after_ms: int | None = None) -> None:
        self.count_error(code)
        client.send(protocol.encode_error(code, message, ref, retry_after_ms))

    async def _stamp(self, batch: list[_Inbound]) -> None:
        # A client that left after sending still has its messages delivered: they were
        # read before it left, and writes to its own closed connection are skipped.
        todo = batch
        outs = [Outgoing(ev.client.user, ev.message.text,
                         ev.message.to if isinstance(ev.message, Whisper) else None) for ev in todo]
        try:
            results = await self.cache.accept(outs)
        except CacheUnavailable:
            for ev in todo:
                self._error(ev.client, protocol.UNAVAILABLE,
                            "the message cache is unavailable; nothing was sent", ev.message.ref)
            return
        for ev, res in zip(todo, results, strict=True):
            c, ref = ev.client, ev.message.ref
            if isinstance(res, Limited):
                c.rate_limit_hits += 1
                self.stats.rate_limit_hits += 1
                self.stats.recent_hits.append(time.monotonic())
                kind = "whisper" if isinstance(ev.message, Whisper) else "chat"
                self._error(c, protocol.RATE_LIMITED,
                            f"too many {kind} messages; retry in {res.retry_after_ms} ms", ref,
                            res.retry_after_ms)
                self._emit({"type": "rate_limited", "user": c.user, "kind": kind,
                            "retry_after_ms": res.retry_after_ms})
                continue
            if isinstance(res, Failed):
                log.error("stamping a message from %s failed: %s", c.user, res.error)
                self._error(c, protocol.UNAVAILABLE,
                            "the message cache refused this message; nothing was sent", ref)
                continue
            if not isinstance(res, Accepted):
                to = ev.message.to if isinstance(ev.message, Whisper) else ""
                self._error(c, protocol.UNKNOWN_USER, f"{to} is not online", ref)
                continue
            msg = res.message
            self.stats.messages_in += 1
            self.stats.by_type[msg.type] = self.stats.by_type.get(msg.type, 0) + 1
            frame = text_frame(protocol.encode(msg))
            own = text_frame(protocol.encode_message(msg, ref)) if ref is not None else frame
            if msg.to is None:
                c.chats_sent += 1
                self.fanout.broadcast(frame, c, own)
            else:
                c.whispers_sent += 1
                self.fanout.whisper(msg, frame, c, own)

    async def _register(self, regs: list[_Register]) -> None:
        """Welcome a batch of new connections: one history read, one presence round trip.

        A failure while preparing one connection's welcome fails that connection alone
        (:class:`RegistrationFailed`); the others in the batch are welcomed as usual.
        """
        # Deliver what is queued first: the welcome's history and the live frames that
        # follow it then meet exactly, with nothing missed and nothing twice.
        self.fanout.drain()
        recent: Recent | None = None
        ready: list[tuple[_Register, Recent, bool | None]] = []
        for ev in regs:
            try:
                welcome, recovered = await self._welcome_history(ev, recent)
            except Exception:
                log.exception("registering %s failed", ev.client.session)
                if not ev.done.done():
                    ev.done.set_exception(RegistrationFailed(closecodes.INTERNAL_ERROR))
                continue
            if ev.since is None or recovered is False:
                recent = welcome
            ready.append((ev, welcome, recovered))
        users = [ev.client.user for ev, _, _ in ready]
        try:
            firsts, everyone = await self.presence.connect(users)
            self.clustered = everyone is not None
            if everyone is not None:  # other hubs: take Valkey's word over the mirror
                self.online.replace([*everyone, *self._by_user])
        except Exception as exc:
            if not isinstance(exc, CacheUnavailable):
                log.exception("presence: recording %d connections failed", len(users))
            firsts = [u not in self._by_user and u not in users[:i] for i, u in enumerate(users)]
        now = _now_ms()
        for (ev, welcome, recovered), first in zip(ready, firsts, strict=True):
            c = ev.client
            self.online.add(c.user)
            c.send(protocol.encode_welcome(c.user, c.session, self.online.sorted(),
                                           welcome.messages, recovered, welcome.partial))
            self._by_user.setdefault(c.user, []).append(c)
            self._clients[c] = None
            self.feed.welcomed(c, welcome.top)
            self.stats.connects += 1
            if first:
                self.fanout.broadcast(text_frame(protocol.encode_presence("join", c.user, now)), c)
            self._emit({"type": "connect", "user": c.user, "session": c.session,
                        "remote_addr": c.remote_addr})
            if not ev.done.done():
                ev.done.set_result(None)

    async def _welcome_history(self, ev: _Register, recent: Recent | None
                               ) -> tuple[Recent, bool | None]:
        """The welcome's history for one registration and its ``recovered`` flag.

        ``recent`` is the batch's plain welcome history once read (one read per batch).
        With ``since`` the client gets what it missed when the cache still holds it,
        else ``recovered: false`` and the recent history. Valkey being down gives an
        empty history (and ``recovered: false`` for a ``since``), never a refusal.
        """
        try:
            if ev.since is not None:
                missed, top = await self.cache.recover(ev.since, ev.client.user)
                if missed is not None:
                    return Recent(missed, top, False), True
            return recent or await self.cache.recent(), (False if ev.since is not None else None)
        except CacheUnavailable:
            return Recent([], "", False), (False if ev.since is not None else None)

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
        if last:
            self.online.discard(c.user)
            self._leave(c.user, reason)
        self._emit({"type": "disconnect", "user": c.user, "session": c.session,
                    "code": c.close_code, "reason": c.close_reason})

    def _leave(self, user: str, reason: str, ts: int | None = None) -> None:
        self.fanout.broadcast(text_frame(protocol.encode_presence("leave", user, ts or _now_ms(), reason)))

    def users_left(self, users: list[str], reason: str) -> None:
        """Announce ``users`` as gone (their hub died); called by the node watch."""
        for u in users:
            if u not in self._by_user:
                self.online.discard(u)
                self._leave(u, reason)

    async def _resync(self) -> None:
        """Write this hub's presence to Valkey again and reload the cluster's list."""
        try:
            everyone = await self.presence.resync({u: len(cs) for u, cs in self._by_user.items()})
            self.online.replace([*everyone, *self._by_user])
        except CacheUnavailable:
            pass  # Valkey is down again; its return triggers another resync

    def _remote(self, p: dict[str, Any]) -> None:
        kind = p.get("k")
        if kind == "m":
            self._deliver_remote(message_of(p))
        elif kind == "join":
            self.online.add(p["u"])
            if p["u"] not in self._by_user:
                self.fanout.broadcast(text_frame(protocol.encode_presence("join", p["u"], int(p["ts"]))))
        elif kind == "leave":
            if p["u"] not in self._by_user:
                self.online.discard(p["u"])
                self._leave(p["u"], str(p.get("r") or "left"), int(p["ts"]))

    def _deliver_remote(self, msg: Message) -> None:
        """Deliver a message another hub stamped, once, to this hub's clients."""
        skip = self.feed.admit(msg)
        if skip is None:
            return
        frame = text_frame(protocol.encode(msg))
        if msg.to is None:
            self.fanout.broadcast(frame, exclude=skip or None)
        else:
            self.fanout.whisper(msg, frame, None, frame, skip or None)

    async def _fill_gap(self) -> None:
        """Deliver what other hubs stamped while the bus was down (it is in the stream)."""
        missed = await self.feed.missed()
        for msg in missed:
            self._deliver_remote(msg)
        if missed:
            log.info("bus gap: delivered %d messages from other hubs", len(missed))


def _now_ms() -> int:
    return int(time.time() * 1000)


__all__ = ["Hub"]
