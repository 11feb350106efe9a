"""Keepalive: one task pings every connection and closes the ones that stop answering.

websockets can run a ping task per connection; at thousands of idle connections
those tasks cost about 2 KB each. One :class:`Keepalive` task per daemon does the
same job: every ``ping_interval`` it sends a ping to each connection whose last
ping was answered, and closes with 1011 ("keepalive ping timeout") a connection
whose ping went unanswered for ``ping_timeout``. A ping is written without
waiting, like every other frame: a client too slow to read it is a slow consumer
anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from . import closecodes
from .peer import Client, is_open
from .wsconnection import send_ping_now

log = logging.getLogger("chathub.keepalive")

#: payload of every keepalive ping (pongs are matched by time, not by payload)
PING_DATA = b"chathub"


class Keepalive:
    """Pings ``clients()`` every ``interval`` s; closes those silent for ``timeout`` s."""

    def __init__(self, clients: Callable[[], list[Client]], interval: float, timeout: float) -> None:
        self.clients = clients
        self.interval = interval
        self.timeout = timeout
        #: connections closed because they stopped answering
        self.timeouts = 0

    def tick(self, now: float) -> None:
        """One pass over the connections: ping, or close the dead."""
        for c in self.clients():
            ws = c.ws
            if c.gone or not is_open(ws):
                continue
            waiting = c.ping_at > 0.0 and ws.last_pong < c.ping_at
            if waiting:
                if now - c.ping_at >= self.timeout:
                    self.timeouts += 1
                    log.info("keepalive timeout: %s session=%s", c.user, c.session)
                    c.close_soon(closecodes.KEEPALIVE_TIMEOUT, recorded=closecodes.KEEPALIVE_REASON)
            elif now - c.ping_at >= self.interval:
                send_ping_now(ws, PING_DATA)
                c.ping_at = now

    async def run(self) -> None:
        """Tick often enough to honour both the interval and the timeout."""
        loop = asyncio.get_running_loop()
        step = max(0.05, min(self.interval, self.timeout) / 4)
        while True:
            await asyncio.sleep(step)
            try:
                self.tick(loop.time())
            except Exception:  # one broken connection must not stop keepalive for all
                log.exception("keepalive pass failed")
