"""Peer: one WebSocket connection as the hub sees it (a :class:`Client`), and how frames reach it.

Outgoing frames are written straight into the connection's transport buffer,
never awaited: the buffer *is* the client's outgoing queue, and its size in
bytes is the client's backlog. Whether a backlog makes the client slow is decided
by drain progress (:mod:`chathub.drain`); the client keeps the one number that
needs, :attr:`Client.over_since`. A frame is built once (:func:`~chathub.framing.text_frame`) and
the same bytes are written to every recipient: server frames are not masked
and compression is off, so they are identical for all.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from . import framing
from .closecodes import Close, wire_reason
from .tasks import spawn

log = logging.getLogger("chathub.peer")

_OPEN = State.OPEN


def is_open(ws: ServerConnection) -> bool:
    """Whether frames written to ``ws`` now will be sent (its protocol state is OPEN)."""
    return ws.protocol.state is _OPEN
#: seconds a server-initiated close may take before the TCP connection is dropped
CLOSE_DEADLINE = 3.0


class Sink(Protocol):
    """Who judges a client's backlog by the slow-consumer rule (the hub's fan-out)."""

    def offer(self, c: Client, frame: bytes) -> bool:
        """Write ``frame`` to ``c`` unless that makes it a slow consumer; True when written."""
        ...

    def watch(self, c: Client) -> None:
        """``c``'s backlog passed the limit outside the fan-out: judge it from now on."""
        ...


class Client:
    """A connection, its user, and the counters its session row records."""

    __slots__ = (
        "ws", "transport", "user", "session", "remote_addr", "user_agent", "connected_at",
        "chats_sent", "whispers_sent", "whispers_received", "frames_received", "bytes_in",
        "bytes_out", "rate_limit_hits", "close_code", "close_reason", "gone", "ping_at",
        "channels", "rights",
        "over_since", "sink",
    )

    def __init__(self, ws: ServerConnection, user: str, remote_addr: str | None = None,
                 user_agent: str | None = None, rights: tuple[str, ...] = ()) -> None:
        self.ws = ws
        self.transport = ws.transport
        self.user = user
        #: the session id sent in welcome and recorded in PostgreSQL
        self.session = uuid.uuid4().hex
        self.remote_addr = remote_addr
        self.user_agent = user_agent
        #: epoch milliseconds
        self.connected_at = int(time.time() * 1000)
        self.chats_sent = 0
        self.whispers_sent = 0
        self.whispers_received = 0
        self.frames_received = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.rate_limit_hits = 0
        #: set when the server decides to close (kick, slow consumer, shutdown)
        self.close_code: int | None = None
        self.close_reason: str | None = None
        #: True once the hub stopped delivering to this client
        self.gone = False
        #: channels this connection is subscribed to, in subscription order (the hub keeps
        #: it). A list, not a set: a connection holds at most max_per_connection (100) and
        #: usually a few, where a set costs about 100 bytes per entry (docs/performance.md)
        self.channels: list[str] = []
        #: private channels (names or glob patterns) its token lets it subscribe to
        self.rights = rights
        #: loop time of the last keepalive ping (0.0: none yet)
        self.ping_at = 0.0
        #: monotonic seconds since which the backlog has been above client_queue_limit
        #: without falling below it (None: it is not above); kept by the fan-out
        self.over_since: float | None = None
        #: judges every frame :meth:`send` writes, and a backlog that passes the limit
        #: by what websockets writes itself (pongs); None: frames are written unjudged
        self.sink: Sink | None = None

    def backlog(self) -> int:
        """Bytes written to this connection that the peer has not taken yet."""
        return self.transport.get_write_buffer_size()

    def over_limit_s(self, now: float | None = None) -> float:
        """Seconds the backlog has been above client_queue_limit without a dip (0.0: not above)."""
        if self.over_since is None:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - self.over_since)

    def write(self, frame: bytes) -> bool:
        """Write a frame built by :func:`~chathub.framing.text_frame`; False when the connection is not open."""
        if not is_open(self.ws):
            return False
        self.transport.write(frame)
        self.bytes_out += len(frame)
        return True

    def send(self, payload: bytes) -> bool:
        """Frame ``payload`` (JSON bytes) and write it, judged by :attr:`sink` (a reply that
        would pass ``client_queue_max`` closes the client with 4002 instead); False when not
        written."""
        frame = framing.text_frame(payload)
        if self.sink is not None:
            return self.sink.offer(self, frame)
        return self.write(frame)

    def backlog_over(self) -> None:
        """The connection's backlog passed ``client_queue_limit`` (the transport said so)."""
        if self.sink is not None:
            self.sink.watch(self)

    def close_soon(self, close: Close, reason: str | None = None,
                   recorded: str | None = None) -> None:
        """Start the closing handshake without waiting for it; the handler records the end.

        ``reason`` (default: ``close.reason``) goes to the client, cut to what a close
        frame holds (:func:`~chathub.closecodes.wire_reason`); ``recorded`` (default:
        ``reason``) goes to the session row whole.
        """
        reason = reason or close.reason
        if self.close_code is None:
            self.close_code, self.close_reason = int(close), recorded or reason
        self.gone = True
        spawn(self._close(close, reason))

    async def _close(self, code: int, reason: str) -> None:
        # A peer that does not read never takes the close frame; cut it at the deadline.
        # Whatever else goes wrong, a close the server decided on must happen: drop the
        # TCP connection rather than leave it open.
        try:
            await asyncio.wait_for(self.ws.close(code, wire_reason(reason)), CLOSE_DEADLINE)
        except TimeoutError:
            self.transport.abort()
        except Exception:
            log.exception("closing %s with %d failed; dropping the connection", self.session, code)
            self.transport.abort()

    def info(self) -> dict[str, Any]:
        """This connection for the admin socket's ``clients`` reply."""
        return {
            "user": self.user, "session": self.session, "remote_addr": self.remote_addr,
            "connected_at": self.connected_at, "chats_sent": self.chats_sent,
            "whispers_sent": self.whispers_sent, "whispers_received": self.whispers_received,
            "frames_received": self.frames_received, "backlog": self.backlog(),
            "over_limit_s": round(self.over_limit_s(), 1), "rate_limit_hits": self.rate_limit_hits,
            "channels": sorted(self.channels),
        }

    def record(self, node_id: str, disconnected_at: int | None = None) -> dict[str, Any]:
        """The session row, as queued in Valkey (times in epoch ms)."""
        return {
            "id": self.session, "user_name": self.user, "remote_addr": self.remote_addr,
            "user_agent": self.user_agent, "node_id": node_id, "connected_at": self.connected_at,
            "disconnected_at": disconnected_at, "chats_sent": self.chats_sent,
            "whispers_sent": self.whispers_sent, "whispers_received": self.whispers_received,
            "frames_received": self.frames_received, "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out, "rate_limit_hits": self.rate_limit_hits,
            "close_code": self.close_code, "close_reason": self.close_reason,
        }
