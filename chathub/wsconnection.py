"""The websockets connection class chathub serves with, and the websockets internals it uses.

websockets' public API covers what chathub needs but a few things, all kept here in
one place, checked against websockets 14-17 (pyproject.toml pins ``<18``) and tested
by tests/test_wsconnection.py:

- pongs: websockets matches a pong to the ping that asked for it; chathub's one
  keepalive task for all connections only needs the time the last pong arrived,
  which :meth:`TrackedConnection.acknowledge_pings` (websockets' pong hook) records.
- pings without waiting: :meth:`ServerConnection.ping` is a coroutine that waits for
  the write buffer to drain, which a slow reader may never do; :func:`send_ping_now`
  writes the ping frame at once, like every other frame chathub sends.
- memory per idle connection: websockets keeps the handshake's request and response
  headers for the life of the connection (about 4 KB each connection with a browser's
  headers) and a ``collections.deque`` of drain waiters (about 0.7 KB, empty for any
  client that reads); :func:`forget_handshake` drops the headers once the connection
  is admitted, and :class:`TrackedConnection` keeps the drain waiters in a list,
  which websockets only appends to, removes from and iterates, and the queue of
  received frames in a :class:`FrameList` (a list with the three deque methods
  websockets calls; the queue holds at most ``max_queue`` frames). It also logs
  through one shared logger instead of one ``LoggerAdapter`` per connection that
  names the connection (chathub's log lines name the session themselves).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.server import ServerProtocol

from .edge import handshake
from .edge.routes import Admission

#: the logger of every connection (websockets' default logger, without per-connection extras)
SHARED_LOGGER = logging.LoggerAdapter(logging.getLogger("websockets.server"), {})


class FrameList(list[Any]):
    """The deque methods websockets' frame queue calls, on a list: an empty list is 56
    bytes where an empty deque is 760, and the queue is short (``max_queue`` frames)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)

    def extendleft(self, items: Iterable[Any]) -> None:
        self[0:0] = list(items)[::-1]  # as deque.extendleft: each item goes to the front in turn


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
        # websockets only appends, removes and iterates (see the module docstring): a
        # list is 56 bytes where an empty deque is 760
        self.drain_waiters = []  # type: ignore[assignment]
        self.logger = self.protocol.logger = SHARED_LOGGER
        self.on_handshake_timeout = on_handshake_timeout
        self.on_body_too_large = on_body_too_large
        #: loop time of the last pong (0.0: none yet)
        self.last_pong = 0.0
        #: who this connection is, decided before the upgrade (None until admitted). It
        #: lives on the connection, so a handshake that fails after admission leaves
        #: nothing behind.
        self.admission: Admission | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # makes recv_messages; nothing received yet
        self.recv_messages.frames.queue = FrameList()  # type: ignore[assignment]

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


#: what :func:`forget_handshake` leaves in place of the handshake's headers; never written to
NO_HEADERS = Headers()


def forget_handshake(ws: ServerConnection) -> None:
    """Drop the opening handshake's request and response headers from ``ws``.

    Call once the connection is open and everything needed from its request (user,
    address, user agent: :class:`~chathub.edge.routes.Admission`) has been taken.
    ``ws.request.path`` stays; ``ws.request.headers`` and ``ws.response.headers`` are
    empty afterwards. The objects stay too: websockets takes a missing request for a
    handshake still to come.
    """
    if ws.request is not None:
        ws.request.headers = NO_HEADERS
    if ws.response is not None:
        ws.response.headers = NO_HEADERS


def send_ping_now(ws: ServerConnection, data: bytes) -> None:
    """Write a ping frame to ``ws`` now, without waiting for its buffer to drain.

    Uses the sans-I/O protocol's ``send_ping`` and the connection's ``send_data``
    (websockets 14-17): the public ``ping()`` waits on flow control.
    """
    ws.protocol.send_ping(data)
    ws.send_data()
