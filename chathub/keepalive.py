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
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.server import ServerProtocol

from . import closecodes
from .client import _OPEN, Client
from .edge import handshake
from .edge.routes import Admission

log = logging.getLogger("chathub.keepalive")

#: payload of every keepalive ping (pongs are matched by time, not by payload)
PING_DATA = b"chathub"


class TrackedConnection(ServerConnection):
    """A server connection that remembers when its last pong arrived, and who it is.

    ``on_handshake_timeout`` (a class attribute, set by the daemon) is called when
    the opening handshake is cut by ``handshake_timeout``.
    """

    on_handshake_timeout: Callable[[], None] | None = None

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        handshake.install(protocol)  # unparseable requests get an answer, not a silent close
        super().__init__(protocol, *args, **kwargs)
        #: loop time of the last pong (0.0: none yet)
        self.last_pong = 0.0
        #: who this connection is, decided before the upgrade (None until admitted). It
        #: lives on the connection, so a handshake that fails after admission leaves
        #: nothing behind.
        self.admission: Admission | None = None

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().handshake(*args, **kwargs)
        except asyncio.CancelledError:
            if self.on_handshake_timeout is not None:
                self.on_handshake_timeout()
            raise

    def acknowledge_pings(self, data: bytes) -> None:
        self.last_pong = self.loop.time()
        super().acknowledge_pings(data)


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
            if c.gone or ws.protocol.state is not _OPEN:
                continue
            waiting = c.ping_at > 0.0 and getattr(ws, "last_pong", 0.0) < c.ping_at
            if waiting:
                if now - c.ping_at >= self.timeout:
                    self.timeouts += 1
                    log.info("keepalive timeout: %s session=%s", c.user, c.session)
                    c.close_soon(closecodes.INTERNAL_ERROR, "keepalive ping timeout",
                                 recorded="keepalive timeout")
            elif now - c.ping_at >= self.interval:
                ws.protocol.send_ping(PING_DATA)
                ws.send_data()
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
