"""The client's own bounded event buffer, between the socket reader and the application.

Why it exists: a websockets connection stops reading the socket once its receive
queue is full. A client that stops consuming events while the server keeps
broadcasting would then leave the server's close frame unread, and ``close()``
would wait the whole close timeout (measured: 50 clients closing during a broadcast
waited 12 s each). So the client's reader task reads the socket all the time, into
this buffer; when the application falls ``capacity`` events behind, further
messages are dropped and counted, and an :class:`~.events.Overflow` event takes
their place. Reading never stops, so closing is immediate.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .events import Chat, Event, Join, Leave, Overflow, Users, Whisper

#: events that may be dropped when the buffer is full: the stream of a busy room.
#: Everything else (welcome, gap, errors, terminal events, replies) is rare and kept.
DROPPABLE = (Chat, Whisper, Join, Leave, Users)


class EventBuffer:
    """A FIFO of events holding at most ``capacity`` droppable ones.

    :meth:`put` never waits; :meth:`get` waits for an event or the end.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._q: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._ended = False
        #: events dropped since the last Overflow was queued
        self._dropped = 0
        self._first: str | None = None
        self._last: str | None = None
        #: events dropped over the buffer's life
        self.dropped_total = 0

    def __len__(self) -> int:
        return len(self._q)

    def put(self, event: Event) -> bool:
        """Queue ``event``; False when it was dropped because the buffer is full."""
        if self._ended:
            return False
        if isinstance(event, DROPPABLE) and len(self._q) >= self.capacity:
            self._dropped += 1
            self.dropped_total += 1
            if isinstance(event, (Chat, Whisper)):
                self._first = self._first or event.id
                self._last = event.id
            return False
        self._flush_overflow()
        self._q.append(event)
        self._wake.set()
        return True

    def discard(self, message_id: str) -> bool:
        """Drop the queued chat or whisper ``message_id`` (an operator deleted it before
        the application read it); False when none was queued."""
        for ev in self._q:
            if isinstance(ev, (Chat, Whisper)) and ev.id == message_id:
                self._q.remove(ev)
                return True
        return False

    def _flush_overflow(self) -> None:
        if self._dropped:
            self._q.append(Overflow(dropped=self._dropped, first_id=self._first, last_id=self._last))
            self._dropped, self._first, self._last = 0, None, None

    def end(self) -> None:
        """No more events will come: :meth:`get` raises EOFError once the queue is empty."""
        self._flush_overflow()
        self._ended = True
        self._wake.set()

    async def get(self) -> Event:
        """The next event, waiting for one.

        Raises:
            EOFError: :meth:`end` was called and every event was taken.
        """
        while not self._q:
            if self._dropped:
                self._flush_overflow()
                break
            if self._ended:
                raise EOFError
            self._wake.clear()
            await self._wake.wait()
        return self._q.popleft()
