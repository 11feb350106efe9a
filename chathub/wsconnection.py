"""The websockets connection class chathub serves with, and the websockets internals it uses.

websockets' public API covers what chathub needs but two things, both kept here in
one place, checked against websockets 14-17 (pyproject.toml pins ``<18``) and tested
by tests/test_wsconnection.py:

- pongs: websockets matches a pong to the ping that asked for it; chathub's one
  keepalive task for all connections only needs the time the last pong arrived,
  which :meth:`TrackedConnection.acknowledge_pings` (websockets' pong hook) records.
- pings without waiting: :meth:`ServerConnection.ping` is a coroutine that waits for
  the write buffer to drain, which a slow reader may never do; :func:`send_ping_now`
  writes the ping frame at once, like every other frame chathub sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.server import ServerProtocol

from .edge import handshake
from .edge.routes import Admission


class TrackedConnection(ServerConnection):
    """A server connection that remembers when its last pong arrived, and who it is.

    Args:
        on_handshake_timeout: called when the opening handshake is cut by
            ``handshake_timeout`` (the daemon counts it as a refusal). Bind it with
            :func:`functools.partial` for ``serve(create_connection=...)``.
        on_body_too_large: called when an HTTP API request body over ``max_body`` is
            answered 413 (counted on /metrics).
        max_body: the largest HTTP API request body read (``api.max_body``).
    """

    def __init__(self, protocol: ServerProtocol, *args: Any,
                 on_handshake_timeout: Callable[[], None] | None = None,
                 on_body_too_large: Callable[[], None] | None = None,
                 max_body: int = handshake.DEFAULT_MAX_BODY, **kwargs: Any) -> None:
        handshake.install(protocol, max_body)  # unparseable requests get an answer, not a silent close
        super().__init__(protocol, *args, **kwargs)
        self.on_handshake_timeout = on_handshake_timeout
        self.on_body_too_large = on_body_too_large
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
        finally:
            exc = self.protocol.handshake_exc
            if (self.on_body_too_large is not None and exc is not None
                    and isinstance(exc.__cause__, handshake.BodyTooLarge)):
                self.on_body_too_large()

    def acknowledge_pings(self, data: bytes) -> None:
        """websockets' hook for a received pong (websockets 14-17)."""
        self.last_pong = self.loop.time()
        super().acknowledge_pings(data)


def send_ping_now(ws: ServerConnection, data: bytes) -> None:
    """Write a ping frame to ``ws`` now, without waiting for its buffer to drain.

    Uses the sans-I/O protocol's ``send_ping`` and the connection's ``send_data``
    (websockets 14-17): the public ``ping()`` waits on flow control.
    """
    ws.protocol.send_ping(data)
    ws.send_data()
