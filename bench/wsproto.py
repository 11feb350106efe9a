"""A minimal WebSocket client on a raw asyncio protocol, cheap enough to count frames.

A load generator must not be the bottleneck, so a :class:`Conn` does the least a
client can: it sends the opening handshake, then walks the frame headers of what
arrives and counts ``chat`` frames by their first bytes, without decoding JSON.
Only the connections that measure latency (``parse=True``) and the senders look
inside a chat frame, and only at its ``text``, which carries the send time::

    "<monotonic ns at send> <sender id> <seq>"

Server frames are never masked (RFC 6455 §5.1); frames we send are masked with an
all-zero key, which is valid and leaves the payload as is. ``ping`` gets a ``pong``,
``close`` is echoed. Fragmented frames are not expected (servers here never
fragment) and are counted as ``other``.

With ``raw=True`` (the Go hub: it sends no welcome, echoes a client's text as is,
and joins the messages queued for a client with newlines into one message, which
it fragments past its 1,024-byte write buffer) the upgrade counts as the welcome
and each line of a chat message as one delivery; fragments are put together.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

#: first bytes of the frames we tell apart without decoding
CHAT_PREFIX = b'{"type":"chat"'
WELCOME_PREFIX = b'{"type":"welcome"'
ERROR_PREFIX = b'{"type":"error"'
TEXT_KEY = b'"text":"'
#: masking key of every frame we send: zero, so the payload needs no XOR
_ZERO_MASK = b"\x00\x00\x00\x00"
#: longest HTTP response head accepted before the upgrade
_MAX_HEAD = 64 * 1024

_now_ns = time.monotonic_ns


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A complete masked client frame (FIN set) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    return head + _ZERO_MASK + payload


def chat_text(sent_ns: int, sid: bytes, seq: int) -> bytes:
    """The text of a benchmark chat message: send time, sender id, sequence number."""
    return b"%d %s %d" % (sent_ns, sid, seq)


def chat_frame(text: bytes, channel: bytes = b"") -> bytes:
    """The masked client frame of ``{"type":"chat","text":text}`` (text is plain ASCII),
    with ``"channel":channel`` when a channel is given."""
    if channel:
        return client_frame(b'{"type":"chat","channel":"' + channel + b'","text":"' + text + b'"}')
    return client_frame(b'{"type":"chat","text":"' + text + b'"}')


class Tally:
    """What a group of connections saw; shared by the connections of one generator."""

    __slots__ = ("errors", "latency", "unexpected_close")

    def __init__(self, latency: Any) -> None:
        #: error frames by code, close codes (``close_4002``), connection losses, refusals
        self.errors: dict[str, int] = {}
        #: a :class:`bench.hist.Histogram` of send→receipt latencies
        self.latency = latency
        #: connections the server closed or lost while we were not closing
        self.unexpected_close = 0

    def error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1


class Sender:
    """The sending side of one connection: a closed loop with a window, or open-loop sends.

    In closed loop, :meth:`start` sends ``window`` messages and every acknowledgement
    (our own echo coming back) sends the next one until ``stop_ns``.
    """

    __slots__ = ("conn", "sid", "window", "closed_loop", "stop_ns", "seq", "in_flight",
                 "sent", "acked", "refused", "channel", "members")

    def __init__(self, conn: Conn, sid: bytes, window: int, closed_loop: bool,
                 channel: bytes = b"", members: int = 0) -> None:
        self.conn = conn
        #: the channel its chats go to (empty: the default channel)
        self.channel = channel
        #: connections that receive each of its chats (0: every connection)
        self.members = members
        self.sid = sid
        self.window = window
        self.closed_loop = closed_loop
        self.stop_ns = 0
        self.seq = 0
        self.in_flight = 0
        self.sent = 0
        self.acked = 0
        self.refused = 0

    def send(self, sent_ns: int) -> None:
        """Send one message stamped ``sent_ns`` (the intended send time)."""
        tr = self.conn.transport
        if tr is None or tr.is_closing():
            return
        self.seq += 1
        tr.write(chat_frame(chat_text(sent_ns, self.sid, self.seq), self.channel))
        self.in_flight += 1
        self.sent += 1

    def start(self, stop_ns: int) -> None:
        self.stop_ns = stop_ns
        if self.closed_loop:
            now = _now_ns()
            for _ in range(self.window):
                self.send(now)

    def _done_one(self) -> None:
        self.in_flight -= 1
        if self.closed_loop:
            now = _now_ns()
            if now < self.stop_ns:
                while self.in_flight < self.window:
                    before = self.in_flight
                    self.send(now)
                    if self.in_flight == before:  # connection gone
                        break

    def on_echo(self) -> None:
        self.acked += 1
        self._done_one()

    def on_refused(self) -> None:
        self.refused += 1
        self._done_one()


class Conn(asyncio.Protocol):
    """One client connection. ``welcome`` resolves once the server's first frame came."""

    __slots__ = ("host", "port", "path", "tally", "parse", "sender", "transport", "buf",
                 "upgraded", "welcome", "chats", "frames", "closing", "close_code", "lost", "raw", "frag",
                 "listener")

    def __init__(self, host: str, port: int, path: str, tally: Tally, parse: bool = False,
                 raw: bool = False) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.tally = tally
        #: look inside chat frames (latency sample receivers and senders)
        self.parse = parse
        #: a hub without welcome that joins queued messages with newlines (see above)
        self.raw = raw
        #: the fragments so far of a fragmented chat message (raw only), else None
        self.frag: bytearray | None = None
        self.sender: Sender | None = None
        #: called with the payload of every other text frame (not chat, welcome or error),
        #: e.g. ``subscribed`` and ``unsubscribed`` replies; None: they are only counted
        self.listener: Callable[[bytes], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.welcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: chat frames received
        self.chats = 0
        #: frames of any kind received
        self.frames = 0
        #: True once we started closing (so a close is not counted as an error)
        self.closing = False
        self.close_code: int | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(  # type: ignore[attr-defined]
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.welcome.done():
            self.welcome.set_exception(ConnectionError("closed before welcome"))
        elif not self.closing and self.close_code is None:
            self.tally.error("connection_lost")
            self.tally.unexpected_close += 1
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            data = self._handshake(data)
            if not data:
                return
        buf = self.buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        n = len(view)
        pos = 0
        while n - pos >= 2:
            length = view[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(view[pos + 2:pos + 4], "big")
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                length = int.from_bytes(view[pos + 2:pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > n:
                break
            self.frames += 1
            op = view[pos] & 0x0F
            if self.raw and (op == 0 or (op == 1 and not view[pos] & 0x80)):
                if op == 1 and view.startswith(CHAT_PREFIX, start):
                    self.frag = bytearray(view[start:end])
                elif op == 0 and self.frag is not None:
                    self.frag += view[start:end]
                    if view[pos] & 0x80:
                        self._raw_chats(bytes(self.frag))
                        self.frag = None
            elif op == 1 and view.startswith(CHAT_PREFIX, start):
                if self.raw:
                    self._raw_chats(bytes(view[start:end]))
                else:
                    self.chats += 1
                    if self.parse:
                        self._chat(view, start, end)
            elif op == 1:
                self._other(bytes(view[start:end]))
            elif op == 8:
                self._closed_by_server(bytes(view[start:end]))
            elif op == 9:
                self._write(client_frame(bytes(view[start:end]), 0xA))
            pos = end
        if view is buf:
            del buf[:pos]
        elif pos < n:
            buf += memoryview(data)[pos:]

    # -- frames ------------------------------------------------------------------------

    def _handshake(self, data: bytes) -> bytes:
        """Consume the HTTP response head; return what follows it (frames)."""
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > _MAX_HEAD:
                self._fail("bad_handshake")
            return b""
        head = bytes(self.buf[:end])
        rest = bytes(self.buf[end + 4:])
        self.buf = bytearray()
        if not head.startswith(b"HTTP/1.1 101"):
            status = head[9:12].decode("ascii", "replace")
            self._fail(f"http_{status}")
            return b""
        self.upgraded = True
        if self.raw and not self.welcome.done():
            self.welcome.set_result(None)
        return rest

    def _fail(self, reason: str) -> None:
        if not self.welcome.done():
            self.welcome.set_exception(ConnectionError(reason))
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _chat(self, view: bytes | bytearray, start: int, end: int) -> None:
        i = view.find(TEXT_KEY, start, end)
        if i < 0:
            return
        i += len(TEXT_KEY)
        j = view.find(b'"', i, end)
        parts = bytes(view[i:j]).split(b" ")
        if len(parts) != 3 or not parts[0].isdigit():
            return
        self.tally.latency.add((_now_ns() - int(parts[0])) // 1000)
        s = self.sender
        if s is not None and parts[1] == s.sid:
            s.on_echo()

    def _raw_chats(self, payload: bytes) -> None:
        self.chats += payload.count(b"\n") + 1
        if self.parse:
            for line in payload.split(b"\n"):
                self._chat(line, 0, len(line))

    def _other(self, payload: bytes) -> None:
        if payload.startswith(WELCOME_PREFIX):
            if not self.welcome.done():
                self.welcome.set_result(None)
        elif payload.startswith(ERROR_PREFIX):
            try:
                code = json.loads(payload).get("code", "unknown")
            except ValueError:
                code = "unparsable"
            self.tally.error(str(code))
            if self.sender is not None:
                self.sender.on_refused()
            elif self.listener is not None:
                self.listener(payload)
        elif self.listener is not None:
            self.listener(payload)

    def _closed_by_server(self, payload: bytes) -> None:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        if self.close_code is None:
            self.close_code = code
            if not self.closing:
                self.tally.error(f"close_{code}")
                self.tally.unexpected_close += 1
        if not self.closing:  # echo the close; when we started it, ours was sent already
            self._write(client_frame(payload[:2], 0x8))
        if not self.welcome.done():
            self.welcome.set_exception(ConnectionError(f"close_{code}"))
        if self.transport is not None:
            self.transport.close()

    def _write(self, frame: bytes) -> None:
        tr = self.transport
        if tr is not None and not tr.is_closing():
            tr.write(frame)

    # -- calls ---------------------------------------------------------------------------

    def close(self, code: int = 1000) -> None:
        """Start a normal close; the server answers and drops the TCP connection."""
        self.closing = True
        self._write(client_frame(code.to_bytes(2, "big"), 0x8))


async def connect(host: str, port: int, path: str, tally: Tally, parse: bool,
                  timeout: float, raw: bool = False) -> Conn:
    """Open one connection and wait for its welcome.

    Raises:
        ConnectionError, OSError, TimeoutError: with a short reason (``http_503`` ...).
    """
    loop = asyncio.get_running_loop()
    conn: Conn | None = None

    def factory() -> Conn:
        nonlocal conn
        conn = Conn(host, port, path, tally, parse, raw)
        return conn

    async def opening() -> Conn:
        await loop.create_connection(factory, host, port)
        assert conn is not None
        await conn.welcome
        return conn

    try:
        return await asyncio.wait_for(opening(), timeout)
    except BaseException:
        if conn is not None and conn.transport is not None:
            conn.closing = True
            conn.transport.abort()
        raise
