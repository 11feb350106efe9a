"""What other hubs send, delivered to this hub's clients.

The bus (:mod:`chathub.cluster.bus`) hands every payload to the hub's queue; the hub
loop passes it here in order with everything else. :class:`Arrivals` turns it into
frames for this hub's clients:

- ``{"k": "m"}``: a stamped message. Another hub's goes through the
  :class:`~chathub.cluster.relay.RemoteFeed` (exactly once, in id order); this hub's
  own, back from the bus, releases what :class:`~chathub.stamping.Stamping` held.
- ``{"k": "join"|"leave"}``: a user's first / last subscription to a channel anywhere.
- ``{"k": "del"}``: an operator removed messages (``chathub delete``).

It also fills gaps: what other hubs stamped in a channel before the bus listened to
it, or while the subscription was lost (read from the streams). It never awaits a
client; the gap fills await Valkey, bounded by its timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .. import protocol
from ..fanout import Fanout
from ..framing import text_frame
from ..peer import Client
from ..protocol import Message
from ..stamping import Stamping, now_ms
from ..stats import HubStats
from ..subscriptions import Subscriptions
from .presence import Online
from .relay import RemoteFeed, message_of

log = logging.getLogger("chathub.cluster.arrivals")


class Arrivals:
    """Delivery of other hubs' traffic on one hub; see the module docstring.

    The hub owns ``subs``, ``online`` and ``by_user``; this reads and updates them from
    the hub loop only.
    """

    def __init__(self, node_id: str, subs: Subscriptions, online: Online,
                 by_user: dict[str, list[Client]], feed: RemoteFeed, stamping: Stamping,
                 fanout: Fanout, stats: HubStats,
                 leave: Callable[[str, str, str, int], None]) -> None:
        """``leave(channel, user, reason, ts)`` sends a channel's ``leave`` (the hub's own
        bookkeeping and event); ``by_user``: user -> this hub's connections."""
        self.node_id = node_id
        self.subs = subs
        self.online = online
        self._by_user = by_user
        self.feed = feed
        self.stamping = stamping
        self.fanout = fanout
        self.stats = stats
        self._leave = leave

    def handle(self, p: dict[str, Any]) -> None:
        """One bus payload (see the module docstring); others are ignored."""
        kind = p.get("k")
        channel = p.get("c")
        if kind == "m":
            if p.get("n") == self.node_id:  # our own, back in bus order
                self.stamping.own_echo(p)
                return
            self.stats.remote_messages += 1
            self.deliver(message_of(p))
        elif kind == "join" and channel in self.subs:
            self.subs.members(channel).add(p["u"])
            self.online.add(p["u"])
            if p["u"] not in self.subs.local_users(channel):
                self.fanout.broadcast(text_frame(protocol.encode_presence(
                    "join", p["u"], int(p["ts"]), channel=channel)), self.subs.subscribers(channel))
        elif kind == "leave" and channel in self.subs:
            if p["u"] not in self.subs.local_users(channel):
                self._leave(channel, p["u"], str(p.get("r") or "left"), int(p["ts"]))
        elif kind == "del":
            self._deleted(channel, [str(i) for i in p.get("ids") or ()], p.get("f"), p.get("to"))

    def _deleted(self, channel: str | None, ids: list[str], sender: Any, to: Any) -> None:
        """An operator removed messages (chathub delete): tell this hub's clients that can
        see them: the channel's subscribers, after anything queued for them before; for a
        whisper, the sender's and the recipient's connections."""
        if channel is not None:
            if channel in self.subs:
                for mid in ids:
                    self.fanout.broadcast(text_frame(protocol.encode_delete(mid, channel)),
                                          self.subs.subscribers(channel))
            return
        conns = [c for u in {sender, to} if isinstance(u, str)
                 for c in self._by_user.get(u, ()) if not c.gone]
        for mid in ids:
            payload = protocol.encode_delete(mid, None)
            for c in conns:
                c.send(payload)

    def deliver(self, msg: Message) -> None:
        """Deliver a message another hub stamped, once, to this hub's clients."""
        if msg.channel is not None and msg.channel not in self.subs:
            return
        skip = self.feed.admit(msg)
        if skip is None:
            return
        frame = text_frame(protocol.encode(msg))
        if msg.to is None:
            remote = self.stats.by_channel_remote
            remote[msg.channel] = remote.get(msg.channel, 0) + 1
            self.fanout.broadcast(frame, self.subs.subscribers(msg.channel), exclude=skip or None)
        else:
            self.fanout.whisper(msg, frame, None, frame, skip or None)

    async def fill_channel(self, channel: str) -> None:
        """The bus listens to ``channel`` now: deliver what other hubs stamped there between
        its first local subscriber's history read and this moment."""
        self.stamping.live.add(channel)
        if channel not in self.subs:
            return
        for msg in await self.feed.missed(channel, self.stamping.orphan):
            self.deliver(msg)

    async def fill_gap(self) -> None:
        """Deliver what other hubs stamped while the bus was down (it is in the streams)."""
        filled = 0
        for channel in [None, *self.subs.channels()]:
            missed = await self.feed.missed(channel, self.stamping.orphan)
            for msg in missed:
                self.deliver(msg)
            filled += len(missed)
        if filled:
            log.info("bus gap: delivered %d messages from other hubs", filled)

    def users_left(self, left: list[tuple[str, str]], gone: list[str], reason: str) -> None:
        """Another hub died: ``left`` are the (channel, user) it alone held, ``gone`` the
        users now online nowhere."""
        now = now_ms()
        for u in gone:
            if u not in self._by_user:
                self.online.discard(u)
        for channel, user in left:
            if channel in self.subs and user not in self.subs.local_users(channel):
                self._leave(channel, user, reason, now)


__all__ = ["Arrivals"]
