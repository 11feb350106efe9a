"""Traffic between hubs: Valkey pub/sub on one channel, ``<prefix>bus``.

What travels: every stamped message (published by the same server-side function
that stamps it, so publish order is id order), ``join``/``leave`` when a user's
first/last connection anywhere opens/closes, and kick requests and their replies.
Each payload names its origin node; a hub ignores its own. Nothing is published
while a hub is alone (the functions check the node count), so a single daemon pays
nothing for this.

Pub/sub is at-most-once: a hub whose subscription drops misses what is published
meanwhile. :class:`Bus` reconnects and resubscribes by itself, and then asks the
hub to resync its presence and to deliver the gap from the message stream, where
every entry names the hub that stamped it (docs/scaling.md).
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

from .errors import CacheUnavailable
from .kv import KV

log = logging.getLogger("chathub.bus")

#: seconds between attempts to resubscribe after the subscription dropped
RESUBSCRIBE_INTERVAL = 0.5


class Bus:
    """The subscription of one hub, and publishing from Python (kick traffic)."""

    def __init__(self, kv: KV, node_id: str, on_message: Callable[[dict[str, Any]], None],
                 on_resubscribed: Callable[[], None]) -> None:
        self.kv = kv
        self.node_id = node_id
        self.channel = kv.key("bus")
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        #: whether the subscription is live
        self.subscribed = False
        self._ready = asyncio.Event()

    async def publish(self, payload: dict[str, Any]) -> None:
        """Send ``payload`` (with this node as origin) to every other hub."""
        await self.kv.call(self.kv.client.publish, self.channel,
                           json.dumps({**payload, "n": self.node_id}))

    async def wait_subscribed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def run(self) -> None:
        """Subscribe and dispatch forever; resubscribe after any failure."""
        first = True
        while True:
            client = valkey.from_url(self.kv.url, decode_responses=True,
                                     socket_connect_timeout=self.kv.timeout, health_check_interval=0)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed = True
                self._ready.set()
                if not first:
                    log.info("bus: resubscribed to %s", self.channel)
                    self.on_resubscribed()
                first = False
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is None or msg.get("type") != "message":
                        continue
                    self._dispatch(msg["data"])
            except asyncio.CancelledError:
                raise
            except (OSError, VConnectionError, VTimeoutError, CacheUnavailable) as exc:
                if self.subscribed:
                    log.warning("bus: subscription lost (%s); resubscribing", exc or type(exc).__name__)
            except Exception:
                log.exception("bus: unexpected error; resubscribing")
            finally:
                self.subscribed = False
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:  # the connection is already gone
                    pass
            await asyncio.sleep(RESUBSCRIBE_INTERVAL)

    def _dispatch(self, data: str) -> None:
        try:
            payload = json.loads(data)
        except ValueError:
            log.warning("bus: ignoring a payload that is not JSON")
            return
        if not isinstance(payload, dict) or payload.get("n") == self.node_id:
            return
        self.on_message(payload)
