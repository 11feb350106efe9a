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
- what a client may make the server do: reading from a client that sent
  ``max_frames_per_second`` frames of any kind (pings and fragments included) pauses
  until that second is over, and one that gets twice as many into one second is failed
  with 1008, as websockets fails one that sends too big a frame; reading from a client pauses while its outgoing backlog is above
  ``client_queue_limit`` (what it sends only adds to what it must receive: pongs,
  replies), and :attr:`TrackedConnection.peer` is told so the slow-consumer rule judges
  that backlog too; and a connection that websockets failed (1002, 1008, 1009) is cut
  at its close deadline, where websockets would wait for the peer to close it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.frames import Frame
from websockets.protocol import State
from websockets.server import ServerProtocol

from .closecodes import POLICY_VIOLATION
from .edge import handshake
from .edge.routes import Admission

#: why reading from a connection is paused (bits of :attr:`TrackedConnection.read_holds`):
#: websockets' queue of received frames is full (``max_queue``)
HOLD_QUEUE = 1
#: the outgoing backlog is above ``client_queue_limit``
HOLD_BACKLOG = 2
#: the client used its ``max_frames_per_second`` for the current second
HOLD_BUDGET = 4
#: frames within one second, as a multiple of ``max_frames_per_second``, that fail the
#: connection with 1008: reading pauses at the budget, so only one read's worth (up to
#: 256 KiB of tiny frames, pings or 1-byte fragments) gets that far
FLOOD_FACTOR = 2

#: the reason of the 1008 close a client gets for passing ``max_frames_per_second``
TOO_MANY_FRAMES = "too many frames"

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
        backlog_limit: bytes of outgoing backlog above which reading from the client
            pauses (``hub.client_queue_limit``); None keeps websockets' flow control.
        max_frames_per_second: frames of any kind a client may send within one second
            (``server.max_frames_per_second``) before reading pauses for the rest of it;
            :data:`FLOOD_FACTOR` times as many fail the connection with 1008. 0: no limit.
    """

    def __init__(self, protocol: ServerProtocol, *args: Any,
                 on_handshake_timeout: Callable[[], None] | None = None,
                 on_body_too_large: Callable[[], None] | None = None,
                 max_body: int = handshake.DEFAULT_MAX_BODY, backlog_limit: int | None = None,
                 max_frames_per_second: int = 0, **kwargs: Any) -> None:
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
        self.backlog_limit = backlog_limit
        self.max_frames = max_frames_per_second
        #: loop time the current one-second window of received frames began, and the
        #: frames received in it
        self.frames_since = 0.0
        self.frames_in_window = 0
        #: ``HOLD_*`` bits: why reading is paused (0: it is not)
        self.read_holds = 0
        #: told when the backlog passes ``backlog_limit`` (a :class:`chathub.peer.Client`,
        #: set once the connection is admitted; its ``backlog_over()`` is called)
        self.peer: Any = None
        #: the timer that cuts a failed connection at its close deadline
        self.cut: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # makes recv_messages; nothing received yet
        self.recv_messages.frames.queue = FrameList()  # type: ignore[assignment]
        # websockets pauses reading when its frame queue is full; so does a backlog above
        # the limit: reading resumes when neither holds it
        self.recv_messages.pause = self._hold_for_queue  # type: ignore[method-assign]
        self.recv_messages.resume = self._release_for_queue  # type: ignore[method-assign]
        if self.backlog_limit is not None:
            # pause_writing() past the limit, resume_writing() once at or below it
            self.transport.set_write_buffer_limits(self.backlog_limit, self.backlog_limit)

    def hold_reading(self, why: int) -> None:
        """Stop reading from the client for reason ``why`` (a ``HOLD_*`` bit)."""
        if not self.read_holds and not self.transport.is_closing():
            self.transport.pause_reading()
        self.read_holds |= why

    def release_reading(self, why: int) -> None:
        """Drop reason ``why``; reading resumes when no reason is left."""
        if self.read_holds & why:
            self.read_holds &= ~why
            if not self.read_holds and not self.transport.is_closing():
                self.transport.resume_reading()

    def _hold_for_queue(self) -> None:
        self.hold_reading(HOLD_QUEUE)

    def _release_for_queue(self) -> None:
        self.release_reading(HOLD_QUEUE)

    def pause_writing(self) -> None:
        """The transport's backlog passed its high-water mark (``backlog_limit``)."""
        super().pause_writing()
        if self.backlog_limit is not None:
            self.hold_reading(HOLD_BACKLOG)
            if self.peer is not None:
                self.peer.backlog_over()

    def resume_writing(self) -> None:
        """The backlog fell to ``backlog_limit`` or below."""
        super().resume_writing()
        self.release_reading(HOLD_BACKLOG)

    def process_event(self, event: Any) -> None:
        """Count a received frame against ``max_frames_per_second``; then as websockets.

        Past the budget, reading pauses until the second is over (the client is slowed,
        not refused); past :data:`FLOOD_FACTOR` times the budget (one read held that many
        frames) the connection is failed with 1008, and the rest of the read is dropped.
        """
        if self.max_frames and isinstance(event, Frame):
            limit = self.max_frames
            if self.frames_in_window > FLOOD_FACTOR * limit:
                return  # failed: the rest of what the last read held is dropped
            now = self.loop.time()
            if now - self.frames_since >= 1.0:
                self.frames_since, self.frames_in_window = now, 0
            self.frames_in_window += 1
            if self.frames_in_window > limit:
                if self.frames_in_window > FLOOD_FACTOR * limit:
                    self._fail_flood()
                    return
                if not self.read_holds & HOLD_BUDGET:
                    self.hold_reading(HOLD_BUDGET)
                    self.loop.call_at(self.frames_since + 1.0, self.release_reading, HOLD_BUDGET)
        super().process_event(event)

    def _fail_flood(self) -> None:
        if self.protocol.state is not State.OPEN:
            return
        self.protocol.fail(POLICY_VIOLATION, TOO_MANY_FRAMES)
        self.send_data()
        if self.close_deadline is None and self.close_timeout is not None:
            self.close_deadline = self.loop.time() + self.close_timeout

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (self.close_deadline is not None and self.cut is None
                and self.protocol.state is not State.CONNECTING):
            # websockets failed the connection (or the peer closed it) and waits for the
            # peer to drop TCP; a peer that never does is cut at the deadline. (An HTTP
            # answer, never upgraded, is left to websockets: its body may still be on its way.)
            self.cut = self.loop.call_at(self.close_deadline, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.cut is not None:
            self.cut.cancel()
            self.cut = None
        super().connection_lost(exc)

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
