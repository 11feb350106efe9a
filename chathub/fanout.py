"""Fan-out: the hub's two delivery queues and the tasks that drain them.

Broadcasts (chat, join, leave) and whispers wait in separate queues, each drained
by its own task, so a burst of one never holds up the other. Delivery writes a
frame built once (:func:`~chathub.client.text_frame`) into each recipient's
transport buffer and never awaits a client. Before writing, a recipient's backlog
is checked: past ``client_queue_limit`` it is a slow consumer, closed with 4002,
and everyone else keeps receiving. There is no per-delivery object, lock or log
line on this path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import closecodes
from .client import _OPEN, Client
from .protocol import Message

if TYPE_CHECKING:
    from .hub import HubStats

log = logging.getLogger("chathub.fanout")

#: (frame, client to skip (it gets its own frame instead, if any), clients to leave out)
Broadcast = tuple[bytes, Client | None, bytes | None, set[Client] | None]
#: (message, frame, sending client or None, its own frame, clients to leave out)
WhisperJob = tuple[Message, bytes, Client | None, bytes, set[Client] | None]


class Fanout:
    """Delivery for one hub. The hub owns ``clients`` and ``by_user``; this only reads them."""

    def __init__(self, clients: dict[Client, None], by_user: dict[str, list[Client]],
                 queue_limit: int, stats: HubStats, emit: Callable[[dict[str, Any]], None]) -> None:
        self._clients = clients
        self._by_user = by_user
        self.queue_limit = queue_limit
        self.stats = stats
        self._emit = emit
        #: broadcasts waiting for fan-out
        self.broadcast_q: deque[Broadcast] = deque()
        #: whispers waiting for delivery
        self.whisper_q: deque[WhisperJob] = deque()
        self._broadcast_ready = asyncio.Event()
        self._whisper_ready = asyncio.Event()
        #: called with the seconds one broadcast fan-out took (for /metrics)
        self.on_fanout: Callable[[float], None] | None = None

    def broadcast(self, frame: bytes, skip: Client | None = None, own: bytes | None = None,
                  exclude: set[Client] | None = None) -> None:
        """Queue ``frame`` for every client but ``skip`` (who gets ``own``, if given) and ``exclude``."""
        self.broadcast_q.append((frame, skip, own, exclude))
        self._broadcast_ready.set()

    def whisper(self, msg: Message, frame: bytes, sender: Client | None, own: bytes,
                exclude: set[Client] | None = None) -> None:
        """Queue a whisper for the connections of its recipient and sender here."""
        self.whisper_q.append((msg, frame, sender, own, exclude))
        self._whisper_ready.set()

    def drain(self) -> None:
        """Deliver everything queued, now (before a welcome, and at shutdown)."""
        self._drain_broadcasts()
        while self.whisper_q:
            self._whisper_now(*self.whisper_q.popleft())

    async def run(self) -> None:
        """Drain both queues as they fill, forever."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._loop(self._broadcast_ready, self._drain_broadcasts))
            tg.create_task(self._loop(self._whisper_ready, self._drain_whispers))

    @staticmethod
    async def _loop(ready: asyncio.Event, drain: Callable[[], None]) -> None:
        while True:
            await ready.wait()
            ready.clear()
            drain()

    def _drain_broadcasts(self) -> None:
        q = self.broadcast_q
        on_fanout = self.on_fanout
        while q:
            started = time.perf_counter()
            batch = list(q)
            q.clear()
            self._broadcast_batch(batch)
            if on_fanout is not None:
                on_fanout(time.perf_counter() - started)

    def _broadcast_batch(self, batch: list[Broadcast]) -> None:
        """The queued broadcasts at once: one write per client carrying all of its frames.

        Every frame stays a frame of its own on the wire; only the writes are
        coalesced, so under load a client gets several in one system call instead
        of one each. Clients that a broadcast skips or excludes get their own
        selection.
        """
        special: set[Client] = set()
        for _, skip, _, exclude in batch:
            if skip is not None:
                special.add(skip)
            if exclude:
                special |= exclude
        blob = b"".join(item[0] for item in batch)
        count = len(batch)
        limit = self.queue_limit
        slow: list[Client] = []
        n = 0
        size = len(blob)
        for c in self._clients:
            if c.gone or c in special:
                continue
            tr = c.transport
            if tr.get_write_buffer_size() > limit:
                slow.append(c)
                continue
            if c.ws.protocol.state is _OPEN:
                tr.write(blob)
                c.bytes_out += size
                n += count
        for c in special:
            if c.gone:
                continue
            parts = []
            for frame, skip, own, exclude in batch:
                if exclude and c in exclude:
                    continue
                if c is skip:
                    if own is not None:
                        parts.append(own)
                    continue
                parts.append(frame)
            if not parts:
                continue
            if c.backlog() > limit:
                slow.append(c)
            elif c.write(b"".join(parts)):
                n += len(parts)
        self.stats.deliveries_out += n
        for c in slow:
            self.slow(c)

    def _drain_whispers(self) -> None:
        q = self.whisper_q
        while q:
            self._whisper_now(*q.popleft())

    def slow(self, c: Client) -> None:
        """Close ``c`` as a slow consumer (once)."""
        if c.gone:
            return
        self.stats.slow_consumers += 1
        log.warning("slow consumer: %s (%s) backlog %d bytes; closing with 4002",
                    c.user, c.remote_addr, c.backlog())
        self._emit({"type": "slow_consumer", "user": c.user, "session": c.session,
                    "backlog": c.backlog()})
        c.close_soon(closecodes.SLOW_CONSUMER, "slow consumer")

    def _whisper_now(self, msg: Message, frame: bytes, sender: Client | None, own: bytes,
                     exclude: set[Client] | None) -> None:
        limit = self.queue_limit
        n = 0
        for user in (msg.to, msg.from_) if msg.to != msg.from_ else (msg.to,):
            for c in self._by_user.get(user or "", ()):
                if c.gone or (exclude and c in exclude):
                    continue
                if c.backlog() > limit:
                    self.slow(c)
                    continue
                if c.write(own if c is sender else frame):
                    n += 1
                    if user == msg.to:
                        c.whispers_received += 1
        self.stats.deliveries_out += n
