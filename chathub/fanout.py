"""Fan-out: the hub's delivery queue and the task that drains it.

Broadcasts (chat, join, leave) and whispers wait in one queue, in the order the hub
stamped them, drained by one task: a client gets a channel's messages and its
whispers in id order, which ``?since=`` recovery relies on (it resumes after the
highest id a client saw). A run of broadcasts is coalesced per channel (one write
per client per channel); a whisper ends the run, so nothing overtakes it. Delivery writes a
frame built once (:func:`~chathub.framing.text_frame`) into each recipient's
transport buffer and never awaits a client. Around each write the recipient's
backlog is measured and judged by drain progress (:mod:`chathub.drain`): a client
whose backlog stays above ``client_queue_limit`` for longer than ``write_timeout``,
or would pass ``client_queue_max``, is a slow consumer, closed with 4002, and
everyone else keeps receiving. A second task re-judges, every
:data:`WATCH_PERIOD`, the clients above the limit that get no more writes. There
is no per-delivery object, lock or log line on this path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import closecodes
from .drain import OVER_CAP, DrainPolicy
from .peer import Client, is_open
from .protocol import Message
from .stats import HubStats

log = logging.getLogger("chathub.fanout")

#: seconds between passes over the clients whose backlog is above the limit; a stopped
#: reader in a quiet room is cut at most this late after write_timeout
WATCH_PERIOD = 0.25

#: (frame, recipients (a channel's subscribers), client to skip (it gets its own frame
#: instead, if any), clients to leave out)
Broadcast = tuple[bytes, dict[Client, None], Client | None, bytes | None, set[Client] | None]
#: (message, frame, sending client or None, its own frame, clients to leave out)
WhisperJob = tuple[Message, bytes, Client | None, bytes, set[Client] | None]


class Fanout:
    """Delivery for one hub. The hub owns ``clients`` and ``by_user``; this only reads them."""

    def __init__(self, clients: dict[Client, None], by_user: dict[str, list[Client]],
                 policy: DrainPolicy, stats: HubStats, emit: Callable[[dict[str, Any]], None],
                 on_fanout: Callable[[float], None] | None = None) -> None:
        self._clients = clients
        self._by_user = by_user
        #: when a backlog makes a client slow
        self.policy = policy
        #: clients whose backlog was last seen above the limit (re-judged by the watch)
        self.over: set[Client] = set()
        self.stats = stats
        self._emit = emit
        #: broadcasts and whispers waiting for delivery, in stamping order
        self.queue: deque[Broadcast | WhisperJob] = deque()
        #: of which whispers (the rest are broadcasts)
        self.whispers_waiting = 0
        self._ready = asyncio.Event()
        #: called with the seconds one broadcast fan-out took (for /metrics)
        self.on_fanout = on_fanout

    def broadcast(self, frame: bytes, targets: dict[Client, None], skip: Client | None = None,
                  own: bytes | None = None, exclude: set[Client] | None = None) -> None:
        """Queue ``frame`` for every client in ``targets`` (a channel's subscribers, a live
        dict the hub keeps) but ``skip`` (who gets ``own``, if given) and ``exclude``."""
        self.queue.append((frame, targets, skip, own, exclude))
        self._ready.set()

    def whisper(self, msg: Message, frame: bytes, sender: Client | None, own: bytes,
                exclude: set[Client] | None = None) -> None:
        """Queue a whisper for the connections of its recipient and sender here."""
        self.queue.append((msg, frame, sender, own, exclude))
        self.whispers_waiting += 1
        self._ready.set()

    @property
    def broadcasts_waiting(self) -> int:
        """Broadcasts queued for fan-out."""
        return len(self.queue) - self.whispers_waiting

    async def run(self) -> None:
        """Drain the queue as it fills, and watch backlogs above the limit, forever."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._deliver())
            tg.create_task(self._watch())

    async def _deliver(self) -> None:
        ready = self._ready
        while True:
            await ready.wait()
            ready.clear()
            self.drain()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_PERIOD)
            if self.over:
                try:
                    self.check_over(time.monotonic())
                except Exception:  # one broken connection must not stop the watch for all
                    log.exception("backlog watch failed")

    def check_over(self, now: float) -> None:
        """Judge again every client above the limit (``now``: monotonic seconds)."""
        judge = self.policy.judge
        slow: list[tuple[Client, str]] = []
        for c in list(self.over):
            if c.gone:
                self.over.discard(c)
                continue
            b = c.backlog()
            c.over_since, verdict = judge(c.over_since, b, b, now)
            if c.over_since is None:
                self.over.discard(c)
            if verdict is not None:
                slow.append((c, verdict))
        for c, verdict in slow:
            self.slow(c, verdict)

    def drain(self) -> None:
        """Deliver everything queued, now, in order (also before a welcome, and at shutdown).

        Consecutive broadcasts are grouped by channel (one write per client per channel;
        order kept within a channel); a whisper is delivered after the broadcasts queued
        before it and before those queued after it.
        """
        q = self.queue
        on_fanout = self.on_fanout
        while q:
            started = time.perf_counter()
            groups: dict[int, list[Broadcast]] = {}
            while q:
                item = q[0]
                if not isinstance(item[0], bytes):  # a whisper: the run ends here
                    break
                q.popleft()
                groups.setdefault(id(item[1]), []).append(item)  # type: ignore[arg-type]
            for batch in groups.values():
                self._broadcast_batch(batch)
            if groups and on_fanout is not None:
                on_fanout(time.perf_counter() - started)
            while q and not isinstance(q[0][0], bytes):
                self.whispers_waiting -= 1
                self._whisper_now(*q.popleft())  # type: ignore[arg-type]

    def _broadcast_batch(self, batch: list[Broadcast]) -> None:
        """The queued broadcasts at once: one write per client carrying all of its frames.

        Every frame stays a frame of its own on the wire; only the writes are
        coalesced, so under load a client gets several in one system call instead
        of one each. Clients that a broadcast skips or excludes get their own
        selection.
        """
        targets = batch[0][1]
        special: set[Client] = set()
        for _, _, skip, _, exclude in batch:
            if skip is not None:
                special.add(skip)
            if exclude:
                special |= exclude
        blob = b"".join(item[0] for item in batch)
        count = len(batch)
        policy = self.policy
        limit, cap = policy.limit, policy.cap
        now = time.monotonic()
        slow: list[tuple[Client, str]] = []
        n = 0
        size = len(blob)
        for c in targets:
            if c.gone or c in special:
                continue
            tr = c.transport
            low = tr.get_write_buffer_size()
            if low and low + size > cap:
                slow.append((c, OVER_CAP))
                continue
            if is_open(c.ws):
                tr.write(blob)
                c.bytes_out += size
                n += count
            high = tr.get_write_buffer_size()
            if high > limit or c.over_since is not None:
                verdict = self._judge(c, low, high, now)
                if verdict is not None:
                    slow.append((c, verdict))
        for c in special:
            if c.gone or c not in targets:
                continue
            parts = []
            for frame, _, skip, own, exclude in batch:
                if exclude and c in exclude:
                    continue
                if c is skip:
                    if own is not None:
                        parts.append(own)
                    continue
                parts.append(frame)
            if parts and self._offer(c, b"".join(parts), now):
                n += len(parts)
        self.stats.deliveries_out += n
        for c, verdict in slow:
            self.slow(c, verdict)

    def _judge(self, c: Client, low: int, high: int, now: float) -> str | None:
        """Judge ``c`` on one write (backlog ``low`` before, ``high`` after); keep ``over`` up to date."""
        c.over_since, verdict = self.policy.judge(c.over_since, low, high, now)
        if c.over_since is None:
            self.over.discard(c)
        else:
            self.over.add(c)
        return verdict

    def offer(self, c: Client, data: bytes) -> bool:
        """Write ``data`` (whole frames) to ``c`` unless that makes it a slow consumer; True
        when written. For replies and everything else written outside the queue."""
        return self._offer(c, data, time.monotonic())

    def watch(self, c: Client) -> None:
        """Judge ``c``'s backlog from now on: something other than a write of ours (a pong
        websockets wrote) took it above the limit; the watch cuts it after write_timeout."""
        if c.gone:
            return
        if c.over_since is None:
            c.over_since = time.monotonic()
        self.over.add(c)

    def _offer(self, c: Client, data: bytes, now: float) -> bool:
        """Write ``data`` to ``c`` unless that makes it a slow consumer; True when written."""
        low = c.backlog()
        if not self.policy.fits(low, len(data)):
            self.slow(c, OVER_CAP)
            return False
        written = c.write(data)
        verdict = self._judge(c, low, c.backlog(), now)
        if verdict is not None:
            self.slow(c, verdict)
        return written

    def slow(self, c: Client, verdict: str) -> None:
        """Close ``c`` as a slow consumer (once); ``verdict`` is a :mod:`chathub.drain` verdict."""
        self.over.discard(c)
        if c.gone:
            return
        self.stats.slow_consumers += 1
        backlog = c.backlog()
        over = c.over_limit_s(time.monotonic())
        if verdict == OVER_CAP:
            why = f"would pass client_queue_max ({self.policy.cap} bytes)"
        else:
            why = f"above client_queue_limit for {over:.1f}s (write_timeout {self.policy.timeout:g}s)"
        log.warning("slow consumer: %s (%s) backlog %d bytes %s; closing with 4002",
                    c.user, c.remote_addr, backlog, why)
        self._emit({"type": "slow_consumer", "user": c.user, "session": c.session,
                    "backlog": backlog, "reason": verdict, "over_limit_s": round(over, 1)})
        c.close_soon(closecodes.SLOW_CONSUMER)

    def _whisper_now(self, msg: Message, frame: bytes, sender: Client | None, own: bytes,
                     exclude: set[Client] | None) -> None:
        now = time.monotonic()
        n = 0
        for user in (msg.to, msg.from_) if msg.to != msg.from_ else (msg.to,):
            for c in list(self._by_user.get(user or "", ())):
                if c.gone or (exclude and c in exclude):
                    continue
                if self._offer(c, own if c is sender else frame, now):
                    n += 1
                    if user == msg.to:
                        c.whispers_received += 1
        self.stats.deliveries_out += n
