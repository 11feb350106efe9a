"""Enforcement: an operator's actions on this hub's connections (kick, ban, mute, clear a
channel), and telling the users they touch.

The cluster's kick relay (:mod:`chathub.cluster.kick`, which the admin socket and the
HTTP API reach) calls these through the hub (:meth:`chathub.hub.Hub.kick` and the like);
the ban sync (:class:`~chathub.bans.BanSync`) calls :meth:`Enforcement.enforce_ban` and
:meth:`Enforcement.ban_lifted` (the node wires them). Each is a plain function on the
hub's event loop: it never awaits, and changes neither the connection map nor the
subscriptions itself. Closing a connection writes the frame that says why (``kicked``,
``banned``) and asks the connection to close (:meth:`~chathub.peer.Client.close_soon`);
its handler then unregisters it. A mute and its early end are told (``muted``,
``unmuted``) and close nothing. Taking a connection out of a channel puts an
:class:`~chathub.hubevents.Unsubscribe` with the reason on the hub's queue, so the hub
loop does it in order with everything else (the client gets ``unsubscribed`` with that
reason and the operator's words, and stays connected).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import closecodes, protocol
from .bans import Ban
from .hubevents import Event, Unsubscribe
from .peer import Client
from .stats import HubStats
from .subscriptions import Subscriptions

#: the hub's log: these lines always were the hub's
log = logging.getLogger("chathub.hub")


class Enforcement:
    """Kicks, bans, mutes and channel clearing on one hub; see the module docstring.

    The hub owns ``by_user``, ``clients`` and ``subs``; this only reads them.
    """

    def __init__(self, by_user: dict[str, list[Client]], clients: dict[Client, None],
                 subs: Subscriptions, stats: HubStats, emit: Callable[[dict[str, Any]], None],
                 put_soon: Callable[[Event], None]) -> None:
        """Args:
            by_user: user -> that user's connections on this hub; ``clients``: every
                registered connection.
            subs: who is subscribed to which channel here.
            stats: counts kicks; forgets a cleared channel's figures.
            emit: sends an event (``{"type": "kick", ...}``) to the admin socket's
                subscribers; must not block.
            put_soon: puts an event on the hub's queue without waiting.
        """
        self._by_user = by_user
        self._clients = clients
        self.subs = subs
        self.stats = stats
        self._emit = emit
        self._put_soon = put_soon

    def kick(self, user: str, reason: str) -> int:
        """Send ``kicked`` and close 4001 on every connection of ``user`` on this hub;
        return how many (0 when ``user`` has none here)."""
        conns = self._live(user)
        frame = protocol.encode_kicked(reason)
        for c in conns:
            c.send(frame)
            c.close_soon(closecodes.KICKED, reason)
        if conns:
            self.stats.kicks += len(conns)
            log.info("kicked %s (%d connections): %s", user, len(conns), reason)
            self._emit({"type": "kick", "user": user, "reason": reason, "connections": len(conns)})
        return len(conns)

    def kick_from(self, user: str, channel: str, message: str | None = None) -> int:
        """Take every connection of ``user`` on this hub out of ``channel`` (they get
        ``unsubscribed`` with reason ``kicked`` and the operator's ``message``, and stay
        connected); return how many."""
        conns = [c for c in self._live(user) if channel in c.channels]
        for c in conns:
            self._put_soon(Unsubscribe(c, channel, None, "kicked", message))
        if conns:
            log.info("kicked %s from %s (%d connections): %s", user, channel, len(conns),
                     message or "")
        return len(conns)

    def clear_channel(self, channel: str, reason: str = "deleted") -> int:
        """Take every connection on this hub out of ``channel`` (it is being deleted) and
        forget its figures; return how many."""
        conns = [c for c in self.subs.subscribers(channel) if not c.gone]
        for c in conns:
            self._put_soon(Unsubscribe(c, channel, None, reason))
        self.stats.forget_channel(channel)
        return len(conns)

    def enforce_ban(self, ban: Ban) -> int:
        """Apply a ban that was just added to this hub's connections; return how many it hit.

        A user or address ban sends ``banned`` and closes 4004; a channel ban takes the
        user's connections out of the channel (``unsubscribed``, reason ``banned``, with
        the ban's reason and end); a mute tells the user's connections (``muted``, with
        its reason and end) and leaves them open: the hub refuses their chats.
        """
        if ban.scope == "mute":
            conns = self._live(ban.user or "")
            frame = protocol.encode_muted(ban.reason, ban.until)
            for c in conns:
                c.send(frame)
            return len(conns)
        if ban.scope == "channel":
            channel = ban.channel or ""
            hit = [c for c in self._live(ban.user or "") if channel in c.channels]
            for c in hit:
                self._put_soon(Unsubscribe(c, channel, None, "banned", ban.reason, ban.until))
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

    def ban_lifted(self, scope: str, key: str) -> int:
        """An operator lifted a ban or mute (not one that ran out): a lifted mute tells
        the user's connections here (``unmuted``); return how many were told."""
        if scope != "mute":
            return 0
        conns = self._live(key)
        for c in conns:
            c.send(protocol.UNMUTED_FRAME)
        return len(conns)

    def _live(self, user: str) -> list[Client]:
        """``user``'s connections on this hub that are not closing."""
        return [c for c in self._by_user.get(user, ()) if not c.gone]


__all__ = ["Enforcement"]
