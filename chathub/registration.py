"""Registration: connections joining and leaving this hub, and who is online anywhere.

The hub loop hands :class:`Registration` each run of
:class:`~chathub.hubevents.Register` events (:meth:`Registration.register`), each
:class:`~chathub.hubevents.Unregister` (:meth:`Registration.unregister`, one presence
and one channel round trip however many connections ended together) and each
:class:`~chathub.hubevents.Resync` (:meth:`Registration.resync`). A batch of new
connections costs one history read and one presence round trip to Valkey, plus the
auto-join channels' subscription (:meth:`chathub.membership.Membership.join_presence`);
each connection then gets its ``welcome``. Valkey being down never refuses a
registration or a departure: the welcome's history is empty then, and this hub's
own view decides who was a user's last connection.

It changes the hub's connection map (``by_user``, ``clients``) and the mirror of who
is online anywhere (``online``), and learns from the presence round trip whether
other hubs share Valkey (:attr:`Registration.clustered`). From those it answers
:meth:`Registration.users_everywhere` for any task (the ``users`` command, the HTTP
API), without changing anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import closecodes, protocol
from .backends import Presence, Recent
from .bans import BanList
from .cluster.presence import Online
from .cluster.relay import RemoteFeed
from .config import ChannelsConfig
from .errors import CacheUnavailable, RegistrationFailed
from .fanout import Fanout
from .hubevents import Event, Register, Unregister, Unsubscribe
from .membership import Membership
from .peer import Client
from .stamping import now_ms
from .stats import HubStats
from .subscriptions import Subscriptions

#: the hub's log: these lines always were the hub's
log = logging.getLogger("chathub.hub")


class Registration:
    """Welcoming, removing and re-announcing this hub's connections; see the module docstring.

    The hub owns ``by_user``, ``clients``, ``online`` and ``subs``; this changes them
    from the hub loop only (:meth:`users_everywhere`, which only reads, from any task).
    """

    def __init__(self, presence: Presence, cfg: ChannelsConfig, default_channel: str,
                 by_user: dict[str, list[Client]], clients: dict[Client, None], online: Online,
                 subs: Subscriptions, membership: Membership, feed: RemoteFeed, fanout: Fanout,
                 bans: BanList, stats: HubStats, emit: Callable[[dict[str, Any]], None],
                 put_soon: Callable[[Event], None]) -> None:
        """Args:
            presence: who is online and in which channel on every hub.
            cfg: the ``[channels]`` section: ``auto_join`` names the channels every new
                connection is subscribed to, in order; ``default_channel`` is the first.
            by_user: user -> that user's connections, in connection order; ``clients``:
                every registered connection (a dict used as an ordered set).
            online: the mirror of who is online on any hub.
            emit: sends an event (``{"type": "connect", ...}``) to the admin socket's
                subscribers; must not block.
            put_soon: puts an event on the hub's queue without waiting (a channel ban on
                an auto-join channel takes the connection out right after its welcome).
        """
        self.presence = presence
        self.cfg = cfg
        self.default_channel = default_channel
        self._by_user = by_user
        self._clients = clients
        self.online = online
        self.subs = subs
        self.membership = membership
        self.feed = feed
        self.fanout = fanout
        self.bans = bans
        self.stats = stats
        self._emit = emit
        self._put_soon = put_soon
        #: whether other hubs shared this Valkey at the last registration
        self.clustered = False

    async def register(self, regs: list[Register]) -> None:
        """Welcome a batch of new connections: one history read, one presence round trip.

        Each event's ``done`` completes once its welcome was written. A failure while
        preparing one connection's welcome fails that connection alone (``done`` gets
        :class:`~chathub.errors.RegistrationFailed`, close 1011); the others in the
        batch are welcomed as usual.
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
        auto = self.cfg.auto_join
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
                self.membership.joined(c, ch, first, now,
                                       welcome.since if ch == self.default_channel else "")
            if members is None:
                members = list(self.subs.members(self.default_channel).sorted())
            for ch in auto:  # a channel ban on an auto-join channel: out right after the welcome
                ban = self.bans.channel(ch, c.user, now)
                if ban is not None:
                    self._put_soon(Unsubscribe(c, ch, None, "banned", ban.reason, ban.until))
            c.send(protocol.encode_welcome(c.user, c.session, members, welcome.messages,
                                           recovered, welcome.partial, list(auto)))
            mute = self.bans.muted(c.user, now)
            if mute is not None:  # told at once, as a connection open when it began was
                c.send(protocol.encode_muted(mute.reason, mute.until))
            self.feed.welcomed(c, None, welcome.top)  # its whispers up to top were recovered
            self.stats.connects += 1
            self._emit({"type": "connect", "user": c.user, "session": c.session,
                        "remote_addr": c.remote_addr})
            if not ev.done.done():
                ev.done.set_result(None)

    async def unregister(self, batch: list[Unregister]) -> None:
        """Remove a batch of ended connections from the map and their channels (``leave``
        where it was the user's last subscription anywhere), in one presence round trip and
        one channel round trip however many there are; nothing for one never registered. A
        user goes offline when Valkey says it was their last connection anywhere (this
        hub's map decides while Valkey is down). Every ``done`` completes, also when this
        raises."""
        try:
            await self._unregister([ev.client for ev in batch])
        finally:
            for ev in batch:
                if not ev.done.done():
                    ev.done.set_result(None)

    async def _unregister(self, ended: list[Client]) -> None:
        gone: list[Client] = []
        last_here: list[bool] = []
        for c in ended:
            if c not in self._clients:
                continue
            del self._clients[c]
            self.feed.forget(c)
            conns = self._by_user.get(c.user, [])
            if c in conns:
                conns.remove(c)
            if not conns:
                self._by_user.pop(c.user, None)
            gone.append(c)
            last_here.append(not conns)
        if not gone:
            return
        try:
            lasts = await self.presence.disconnect_many([c.user for c in gone])
        except CacheUnavailable:
            lasts = last_here
        for c, last in zip(gone, lasts, strict=True):
            if last:  # before the leaves go out: who reads them and asks `users` sees them gone
                self.online.discard(c.user)
        # the others read how the connection ended in chathub's words (``kicked``,
        # ``banned``, ``connection lost``): an operator's reason is for the user and the
        # session row, not for the whole channel
        await self.membership.leave([(c, ch, closecodes.counted(c.close_code, c.close_reason)
                                      if c.close_reason else "left")
                                     for c in gone for ch in sorted(c.channels)])
        for c in gone:
            self._emit({"type": "disconnect", "user": c.user, "session": c.session,
                        "code": c.close_code, "reason": c.close_reason})

    async def users_everywhere(self, channel: str | None = None) -> list[str]:
        """Names of the users online on any hub (in ``channel`` when given), sorted.

        A hub alone answers from its mirrors; in a cluster it asks Valkey, which is
        exact even while a join from another hub is still on its way (Valkey down: the
        mirrors answer). Called from any task; reads the maps, changes nothing.
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

    async def resync(self) -> None:
        """Write this hub's presence to Valkey again (users with their connection counts,
        channels with their subscriber counts) and reload the cluster's list of who is
        online. Valkey down again: nothing changes (its return triggers another resync)."""
        try:
            everyone = await self.presence.resync(
                {u: len(cs) for u, cs in self._by_user.items()}, self.subs.counts())
            self.online.replace([*everyone, *self._by_user])
        except CacheUnavailable:
            pass


__all__ = ["Registration"]
