"""Stamping: a batch of inbound chats and whispers through the message cache, and out.

The hub loop hands :meth:`Stamping.stamp` each run of :class:`~chathub.hubevents.Inbound`
events. Mutes and subscriptions are checked here without I/O; the rest of the batch
is rate-limited and stamped by the cache in one Valkey round trip
(:meth:`~chathub.backends.MessageCache.accept`). Each outcome goes back to its
sender (an echo with its ``ref``, or an ``error`` frame; for the HTTP API, its
future) and each stamped message to the fan-out.

When other hubs share the cache, a stamped message is held until it comes back on
the bus, so this hub delivers its own and the others' messages in id order
(:mod:`chathub.cluster.echo`). When the cache's answer is lost (a timeout), the
sender is told the message may have been sent; a resend with the same ``ref`` is
answered with the first id (:class:`~chathub.backends.Resent`), and an echo of the
message from the bus delivers it here and answers the ``ref``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from . import protocol
from .backends import Accepted, Failed, Limited, MessageCache, Outgoing, Resent
from .bans import BanList
from .cluster.echo import Held, OwnEchoes
from .cluster.relay import RemoteFeed, message_of
from .errors import CacheOutcomeUnknown, CacheUnavailable
from .fanout import Fanout
from .framing import text_frame
from .hubevents import Inbound
from .peer import Client
from .protocol import Chat, Message, ProtocolError, Whisper
from .stats import HubStats
from .subscriptions import Subscriptions

log = logging.getLogger("chathub.stamping")

#: ms a sender is told to wait before resending after a stamp timed out: the probe that
#: finds Valkey again runs every 0.5 s (chathub.kv)
RESEND_AFTER_MS = 1000


def now_ms() -> int:
    """Wall-clock time in ms, as message ids and ``ts`` fields count it."""
    return int(time.time() * 1000)


def frames(msg: Message, ref: str | None) -> tuple[bytes, bytes]:
    """The frame of ``msg`` for everyone, and the one for its sender (with ``ref``, when
    the sender gave one; else the same frame)."""
    frame = text_frame(protocol.encode(msg))
    return frame, (text_frame(protocol.encode_message(msg, ref)) if ref is not None else frame)


class Stamping:
    """One hub's stamping and delivery of its own messages; see the module docstring.

    The hub owns ``subs`` and the fan-out; this reads them from the hub loop only.
    """

    def __init__(self, cache: MessageCache, bans: BanList, subs: Subscriptions, feed: RemoteFeed,
                 fanout: Fanout, stats: HubStats, default_channel: str,
                 emit: Callable[[dict[str, Any]], None], error: Callable[..., None],
                 wake: Callable[[], None]) -> None:
        """``emit(event)`` goes to the admin socket's subscribers; ``error(client, code,
        message, ref, retry_after_ms)`` sends and counts an error frame; ``wake()`` asks
        the hub loop to call :meth:`echo_due` (from a timer, soon)."""
        self.cache = cache
        self.bans = bans
        self.subs = subs
        self.feed = feed
        self.fanout = fanout
        self.stats = stats
        self.default_channel = default_channel
        self._emit = emit
        self.error = error
        self._wake = wake
        #: this hub's own messages waiting for their echo from the bus (ordering)
        self.echoes = OwnEchoes()
        self._echo_timer: asyncio.TimerHandle | None = None
        #: channels whose traffic the bus receives (their own messages come back)
        self.live: set[str] = set()

    def refuse(self, ev: Inbound, code: str, message: str,
               retry_after_ms: int | None = None) -> None:
        """Refuse an inbound message: an error frame to its client, or its future's error."""
        if ev.client is not None:
            self.error(ev.client, code, message, ev.message.ref, retry_after_ms)
        else:
            self.stats.by_error[code] = self.stats.by_error.get(code, 0) + 1
            if ev.done is not None and not ev.done.done():
                ev.done.set_exception(ProtocolError(code, message, None, retry_after_ms))

    async def stamp(self, batch: list[Inbound]) -> None:
        """Stamp and deliver a batch; every message gets its outcome (see the module)."""
        # A client that left after sending still has its messages delivered: they were
        # read before it left, and writes to its own closed connection are skipped.
        todo: list[Inbound] = []
        now = now_ms()
        for ev in batch:
            m = ev.message
            sender = ev.client.user if ev.client is not None else ev.sender
            mute = self.bans.muted(sender, now)
            if mute is not None:
                wait = None if mute.until is None else max(1, mute.until - now)
                self.refuse(ev, protocol.MUTED,
                            ("you are muted" if ev.client is not None else f"{sender} is muted")
                            + (f"; retry in {wait} ms" if wait else ""), wait)
                continue
            if ev.client is None:  # from the HTTP API: no subscription needed
                todo.append(ev)
                continue
            if isinstance(m, Chat):
                channel = m.channel or self.default_channel
                if channel not in ev.client.channels:
                    self.error(ev.client, protocol.NOT_SUBSCRIBED,
                               f"subscribe to {channel} before chatting in it", m.ref)
                    continue
            todo.append(ev)
        if not todo:
            return
        outs = [Outgoing(ev.client.user if ev.client is not None else ev.sender, ev.message.text,
                         ev.message.to if isinstance(ev.message, Whisper) else None,
                         None if isinstance(ev.message, Whisper)
                         else (ev.message.channel or self.default_channel),
                         resend_key=None if ev.client is None or ev.message.ref is None
                         else f"{ev.client.session}:{ev.message.ref}",
                         unlimited=ev.client is None) for ev in todo]
        try:
            results = await self.cache.accept(outs)
        except CacheOutcomeUnknown:
            # Valkey may have stamped them: a resend with the same ref is recognised
            # (chathub_accept_*), and an echo from the bus delivers them here (own_echo).
            for ev in todo:
                if ev.client is not None and ev.message.ref is not None:
                    self.echoes.unsure(ev.client.user, ev.message.text, ev.client, ev.message.ref)
                self.refuse(ev, protocol.UNAVAILABLE,
                            "the message cache did not answer in time; the message may have "
                            "been sent: resend it with the same ref", RESEND_AFTER_MS)
            return
        except CacheUnavailable:
            for ev in todo:
                self.refuse(ev, protocol.UNAVAILABLE,
                            "the message cache is unavailable; nothing was sent")
            return
        for ev, res, out in zip(todo, results, outs, strict=True):
            c, ref = ev.client, ev.message.ref
            if isinstance(res, Limited):
                if c is not None:
                    c.rate_limit_hits += 1
                self.stats.rate_limit_hits += 1
                self.stats.recent_hits.append(time.monotonic())
                kind = "whisper" if isinstance(ev.message, Whisper) else "chat"
                self.refuse(ev, protocol.RATE_LIMITED,
                            f"{out.channel} is in slow mode; retry in {res.retry_after_ms} ms"
                            if res.slow else
                            f"too many {kind} messages; retry in {res.retry_after_ms} ms",
                            res.retry_after_ms)
                self._emit({"type": "rate_limited", "user": out.sender, "kind": kind,
                            "retry_after_ms": res.retry_after_ms}
                           | ({"channel": out.channel, "slow": True} if res.slow else {}))
                continue
            if isinstance(res, Failed):
                log.error("stamping a message from %s failed: %s", out.sender, res.error)
                self.refuse(ev, protocol.UNAVAILABLE,
                            "the message cache refused this message; nothing was sent")
                continue
            if isinstance(res, Resent):
                self._resent(c, ref, res.message)
                if ev.done is not None and not ev.done.done():
                    ev.done.set_result(res.message)
                continue
            if not isinstance(res, Accepted):
                to = ev.message.to if isinstance(ev.message, Whisper) else ""
                self.refuse(ev, protocol.UNKNOWN_USER, f"{to} is not online")
                continue
            self._accepted(res, c, ref)
            if ev.done is not None and not ev.done.done():
                ev.done.set_result(res.message)

    def _accepted(self, res: Accepted, c: Client | None, ref: str | None) -> None:
        msg = res.message
        self.stats.messages_in += 1
        self.stats.by_type[msg.type] = self.stats.by_type.get(msg.type, 0) + 1
        frame, own = frames(msg, ref)
        if msg.to is None:
            if c is not None:
                c.chats_sent += 1
            ch = msg.channel or ""
            self.stats.by_channel[ch] = self.stats.by_channel.get(ch, 0) + 1
        elif c is not None:
            c.whispers_sent += 1
        if res.published and (msg.to is not None or msg.channel in self.live):
            # Other hubs got it too: deliver it when it comes back on the bus, in id
            # order with theirs (chathub.cluster.echo).
            self.echoes.hold(msg, frame, own, c, asyncio.get_running_loop().time())
            self._arm_echo_timer()
            return
        if res.published or ref is not None:  # a late echo or a resend is not news
            self.echoes.delivered(msg.id)
        if msg.to is None:
            self.fanout.broadcast(frame, self.subs.subscribers(msg.channel or ""), c,
                                  own if c is not None else None)
        else:
            self.fanout.whisper(msg, frame, c, own)

    def _resent(self, c: Client | None, ref: str | None, msg: Message) -> None:
        """A resend of a message whose first answer was lost: the sender gets its echo
        (the id it was stamped with). When this hub's clients have not had it (no echo came
        back on the bus: the hub is alone, or the echo was lost), they get it now."""
        self.stats.resends += 1
        if self.echoes.seen(msg.id):
            if c is not None:
                c.send(protocol.encode_message(msg, ref))
            return
        self._deliver_own(msg, *frames(msg, ref), c)

    def own_echo(self, payload: dict[str, Any]) -> None:
        """One of this hub's messages came back on the bus (``{"k": "m", ...}``): deliver
        it and what waited before it; an orphan (its stamp timed out here) goes out now and
        answers its sender's ``ref``."""
        held, orphan = self.echoes.arrived(payload["id"])
        self._release(held)
        if orphan:  # its stamp timed out here: nobody on this hub has it yet
            msg = message_of(payload)
            sender, ref = self.echoes.sender_of(msg.from_, msg.text)
            self._deliver_own(msg, *frames(msg, ref), sender)

    def orphan(self, msg: Message) -> None:
        """A message of this hub found in the stream by a gap fill: when its stamp timed
        out here and it went out nowhere (its echo was lost with the bus), deliver it now
        and answer its sender's ``ref``; anything else of ours went out already."""
        sender, ref = self.echoes.sender_of(msg.from_, msg.text)
        if ref is None or self.echoes.seen(msg.id):
            return
        self._deliver_own(msg, *frames(msg, ref), sender)

    def echo_due(self) -> None:
        """Deliver the held messages whose echo is late (the wake-up asked for by the timer)."""
        self._echo_timer = None
        self._release(self.echoes.due(asyncio.get_running_loop().time()))
        self._arm_echo_timer()

    def release_all(self) -> None:
        """Deliver every held message now (the hub is stopping)."""
        self._release(self.echoes.drain())

    def _deliver_own(self, msg: Message, frame: bytes, own: bytes, sender: Client | None) -> None:
        """Deliver a message of this hub that did not go out when stamped: its sender gets
        ``own``; clients whose welcome or ``subscribed`` history already had it, nothing."""
        self.echoes.delivered(msg.id)
        skip = self.feed.admit(msg, own=True) or None
        if msg.to is None:
            self.fanout.broadcast(frame, self.subs.subscribers(msg.channel or ""),
                                  sender, own if sender is not None else None, skip)
        else:
            self.fanout.whisper(msg, frame, sender, own, skip)

    def _release(self, held: list[Held]) -> None:
        for h in held:
            self._deliver_own(h.message, h.frame, h.own, h.sender)

    def _arm_echo_timer(self) -> None:
        """Wake the loop when the oldest held message is due, unless a wake-up is set."""
        due = self.echoes.next_due()
        if due is None or self._echo_timer is not None:
            return
        self._echo_timer = asyncio.get_running_loop().call_at(due, self._wake)


__all__ = ["RESEND_AFTER_MS", "Stamping", "frames", "now_ms"]
