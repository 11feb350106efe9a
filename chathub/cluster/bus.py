"""Traffic between hubs: Valkey pub/sub on one channel, ``<prefix>bus``.

What travels: every stamped message (published by the same server-side function
that stamps it, so publish order is id order), ``join``/``leave`` when a user's
first/last connection anywhere opens/closes, and kick requests and their replies.
Each payload names its origin node; a hub ignores its own, except its own messages,
which tell it where they stand among the others' (:mod:`chathub.cluster.echo`). Nothing is published
while a hub is alone (the functions check the node count), so a single daemon pays
nothing for this.

Pub/sub is at-most-once: a hub whose subscription drops misses what is published
meanwhile. :class:`Bus` reconnects and resubscribes by itself, and then asks the
hub to resync its presence and to deliver the gap from the message stream, where
every entry names the hub that stamped it (docs/scaling.md).

Quiet is not dead. The subscribed connection has no read timeout (a channel may
carry nothing for hours); instead, after ``ping_interval`` seconds without a byte
from Valkey the bus sends PING on that connection, which Valkey answers even in
subscribed mode. An answer proves the subscription alive; no answer within the
Valkey timeout, a closed socket or a read error is a loss: then, and only then,
the bus logs a warning, resubscribes and counts it in :attr:`Bus.resubscribes`
(``bus_resubscribes`` in ``stats`` and ``/metrics``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import valkey.asyncio as valkey
from valkey.exceptions import ConnectionError as VConnectionError
from valkey.exceptions import TimeoutError as VTimeoutError

from ..errors import CacheUnavailable, ChathubError
from ..keys import Keys
from ..kv import KV
from ..tasks import spawn

log = logging.getLogger("chathub.cluster.bus")

#: seconds between attempts to resubscribe after the subscription dropped
RESUBSCRIBE_INTERVAL = 0.5
#: seconds of silence on the subscription before the bus asks Valkey with a PING whether
#: it is still there (the answer must come within the Valkey timeout)
PING_INTERVAL = 5.0


#: seconds a chat channel stays subscribed after this hub's last subscriber in it left, so
#: that a quick return (subscribe/unsubscribe churn) costs neither a SUBSCRIBE nor a gap
#: fill; meanwhile the channel's traffic still reaches this hub and is dropped unread
LINGER = 10.0
#: most channels kept subscribed that way at once; past it the longest-lingering goes first
LINGER_MAX = 1000


class SubscriptionLost(ChathubError, ConnectionError):
    """Valkey did not answer a PING on the subscribed connection in time."""


async def publish(kv: KV, node_id: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` with ``node_id`` as its origin to every hub subscribed to the bus.

    Raises:
        CacheUnavailable: Valkey is down; nothing was sent.
    """
    await kv.call(kv.client.publish, kv.key("bus"), json.dumps({**payload, "n": node_id}))


class Bus:
    """The subscription of one hub, and publishing from Python (kick traffic)."""

    def __init__(self, kv: KV, node_id: str, on_message: Callable[[dict[str, Any]], None],
                 on_resubscribed: Callable[[], None], ping_interval: float | None = None,
                 on_watching: Callable[[str], None] = lambda _c: None,
                 linger: float | None = None,
                 on_dropped: Callable[[str], None] = lambda _c: None) -> None:
        """``ping_interval``: seconds of silence before a PING (default :data:`PING_INTERVAL`);
        ``on_watching(channel)``: the subscription to a chat channel's traffic took effect;
        ``linger``: seconds an unwatched channel stays subscribed (default :data:`LINGER`);
        ``on_dropped(channel)``: an unwatched channel's traffic no longer arrives (its
        linger ended, or the connection that held it is gone)."""
        self.kv = kv
        self.node_id = node_id
        self.keys = Keys(kv.prefix)
        self.channel = self.keys.bus
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self.on_watching = on_watching
        self.on_dropped = on_dropped
        #: chat channels whose traffic this hub wants (it has subscribers in them)
        self.watched: set[str] = set()
        self.linger = LINGER if linger is None else linger
        #: unwatched channels still subscribed on the current connection -> loop time their
        #: UNSUBSCRIBE is due (insertion order is deadline order)
        self.lingering: dict[str, float] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._pubsub: Any = None
        #: whether the subscription is live
        self.subscribed = False
        self.ping_interval = PING_INTERVAL if ping_interval is None else ping_interval
        #: times the subscription was lost and made again since start
        self.resubscribes = 0
        #: PINGs sent on the quiet subscription since start (each answered or a loss)
        self.pings = 0
        self._ready = asyncio.Event()

    async def publish(self, payload: dict[str, Any]) -> None:
        """Send ``payload`` (with this node as origin) to every other hub."""
        await publish(self.kv, self.node_id, payload)

    def watch(self, channel: str) -> None:
        """Start receiving ``channel``'s traffic; :attr:`on_watching` follows once it is live.

        A channel still lingering (unwatched less than ``linger`` s ago, same connection)
        has been subscribed all along: nothing was missed, so no :attr:`on_watching`.
        """
        self.watched.add(channel)
        if self.lingering.pop(channel, None) is not None:
            return
        if self._pubsub is not None:
            spawn(self._change(self._pubsub, "subscribe", channel))

    def unwatch(self, channel: str) -> None:
        """Stop wanting ``channel``'s traffic; its UNSUBSCRIBE goes after ``linger`` s."""
        self.watched.discard(channel)
        if self._pubsub is None:
            return
        loop = asyncio.get_running_loop()
        self.lingering[channel] = loop.time() + self.linger
        if len(self.lingering) > LINGER_MAX:
            self._expire()
        elif self._expiry is None:
            self._expiry = loop.call_later(self.linger, self._expire)

    def _expire(self) -> None:
        """UNSUBSCRIBE the channels whose linger is over (and the oldest past LINGER_MAX)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.lingering:
            channel, due = next(iter(self.lingering.items()))
            if due > now and len(self.lingering) <= LINGER_MAX:
                self._expiry = loop.call_later(due - now, self._expire)
                return
            del self.lingering[channel]
            self.on_dropped(channel)
            if self._pubsub is not None:
                spawn(self._change(self._pubsub, "unsubscribe", channel))

    def _forget_lingering(self) -> None:
        """The connection is gone, and its subscriptions with it."""
        for channel in self.lingering:
            self.on_dropped(channel)
        self.lingering.clear()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    async def _change(self, pubsub: Any, verb: str, channel: str) -> None:
        # Sent on the subscribed connection while _listen reads it (valkey-py sends and
        # reads a pub/sub connection independently); a failure here is a lost connection,
        # which _listen notices and answers by resubscribing to everything watched.
        try:
            await getattr(pubsub, verb)(self.keys.pubsub(channel))
        except Exception as exc:  # the connection is failing: _listen will resubscribe
            log.debug("bus: %s %s failed: %r", verb, channel, exc)

    async def wait_subscribed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def run(self) -> None:
        """Subscribe and dispatch forever; resubscribe after a loss."""
        first = True
        while True:
            # No socket timeout: a quiet channel is normal. Liveness is checked by PING.
            client = valkey.from_url(self.kv.url, decode_responses=True, socket_timeout=None,
                                     socket_connect_timeout=self.kv.timeout, health_check_interval=0)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel, *(self.keys.pubsub(c) for c in self.watched))
                self._pubsub = pubsub
                self.subscribed = True
                self._ready.set()
                if not first:
                    self.resubscribes += 1
                    log.info("bus: resubscribed to %s", self.channel)
                    self.on_resubscribed()
                first = False
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except (OSError, VConnectionError, VTimeoutError, CacheUnavailable, SubscriptionLost) as exc:
                if self.subscribed:
                    log.warning("bus: subscription lost (%s); resubscribing", exc or type(exc).__name__)
            except Exception:
                log.exception("bus: unexpected error; resubscribing")
            finally:
                self.subscribed = False
                self._pubsub = None
                self._forget_lingering()
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:  # the connection is already gone
                    pass
            await asyncio.sleep(RESUBSCRIBE_INTERVAL)

    async def _listen(self, pubsub: Any) -> None:
        """Dispatch messages until the connection fails or a PING goes unanswered.

        Raises:
            SubscriptionLost: no reply to a PING within the Valkey timeout.
            valkey ConnectionError / OSError: the connection closed or failed.
        """
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged: float | None = None
        while True:
            if pinged is None:
                wait = max(0.0, heard + self.ping_interval - loop.time())
            else:
                wait = max(0.0, pinged + self.kv.timeout - loop.time())
            # A timeout here returns None and keeps the connection (valkey-py's own rule for
            # a caller-given timeout); only a closed or failed socket raises.
            msg = await pubsub.get_message(timeout=wait)
            now = loop.time()
            if msg is not None:
                heard, pinged = now, None
                kind = msg.get("type")
                if kind == "message":
                    self._dispatch(msg["data"])
                elif kind == "subscribe":
                    channel = self.keys.channel_of(str(msg.get("channel")))
                    if channel is not None and channel in self.watched:
                        self.on_watching(channel)
                continue
            if pinged is not None:
                if now - pinged >= self.kv.timeout:
                    raise SubscriptionLost(f"no reply to PING within {self.kv.timeout:g}s")
            elif now - heard >= self.ping_interval:
                await pubsub.ping()
                self.pings += 1
                pinged = now

    def _dispatch(self, data: str) -> None:
        try:
            payload = json.loads(data)
        except ValueError:
            log.warning("bus: ignoring a payload that is not JSON")
            return
        if not isinstance(payload, dict):
            return
        if payload.get("n") == self.node_id and payload.get("k") != "m":
            return  # this hub's own announcements; its own messages come back for ordering
        self.on_message(payload)
