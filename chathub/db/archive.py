"""The archive: older public messages from PostgreSQL, read beside the hub loop.

The hub loop never awaits PostgreSQL: a slow database would stall everyone's
delivery. Two paths need what only PostgreSQL holds once the Valkey stream no
longer reaches back:

- ``history`` pages, read by the requesting connection's own task through
  :meth:`Archive.older`, bounded by :data:`ARCHIVE_DEADLINE`. A database that is
  down or slow gives :class:`~chathub.errors.DatabaseUnavailable` carrying
  ``retry_after_ms``, which the client gets as an ``unavailable`` error.
- the ``welcome`` history when the stream holds fewer public messages than
  ``history_on_join`` (a fresh or trimmed cache). The loop takes a page fetched
  earlier (:meth:`Archive.page_for`, no I/O); when none fits, the welcome carries
  what Valkey holds and says ``"history_partial": true``, and :meth:`Archive.prefetch`
  fetches a page for the next welcomes. Registrations wait for a fetch in flight
  (:meth:`Archive.ready`, bounded) before they reach the loop, so a healthy
  database gives complete welcomes.

Messages older than the stream's first entry never change, so a page fetched for
one bound serves every later welcome whose bound is at or below it. A page fetched
while the stream was empty (bound None) is what PostgreSQL held then: messages
stamped later, once flushed and trimmed, are older than later bounds but not in
it, so it serves only welcomes that find the stream empty too, or whose bound is at
or below its newest message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import asyncpg

from ..errors import DatabaseUnavailable
from ..protocol import Message, parse_id
from ..tasks import bounded, spawn

log = logging.getLogger("chathub.db.archive")

#: seconds one archive read may take before the request is answered ``unavailable``; long
#: enough for a loaded database, short enough that a client's request does not hang
ARCHIVE_DEADLINE = 2.0
#: milliseconds a client is told to wait before asking again after ``unavailable``
RETRY_AFTER_MS = 2000

#: loads a channel's messages older than (ms, seq) from PostgreSQL, newest first
OlderLoader = Callable[[str, int, int, int], Awaitable[list[Message]]]

#: the bound that stands for "older than everything": above any id Valkey issues
_TOP = (2**64 - 1, 2**64 - 1)


#: channels whose welcome page is kept (least recently used ones are dropped past it)
PAGES_KEPT = 1024


class Archive:
    """Bounded reads of PostgreSQL's history for the hub and the connections.

    Args:
        load: the query (:func:`chathub.db.store.older_public` bound to a pool):
            ``load(channel, ms, seq, limit)``.
        available: whether PostgreSQL is believed up (the flushers' view); when it
            is not, reads fail at once instead of waiting for the deadline.
        page_size: messages fetched for welcomes (``history_on_join``).
        deadline: seconds each read may take.
    """

    def __init__(self, load: OlderLoader, page_size: int,
                 available: Callable[[], bool] = lambda: True,
                 deadline: float = ARCHIVE_DEADLINE) -> None:
        self.load = load
        self.available = available
        self.page_size = page_size
        self.deadline = deadline
        #: channel -> (bound, newest-first messages older than it, whether that was all,
        #: when it was fetched: monotonic seconds)
        self._pages: OrderedDict[str, tuple[tuple[int, int], list[Message], bool, float]] = \
            OrderedDict()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        #: welcome pages fetched, and reads that failed or timed out
        self.fetches = 0
        self.failures = 0

    async def older(self, channel: str, bound: str | None, limit: int) -> list[Message]:
        """Up to ``limit`` messages of ``channel`` older than id ``bound`` (None: the newest),
        newest first.

        Raises:
            DatabaseUnavailable: PostgreSQL is down, failed or did not answer within the
                deadline; ``retry_after_ms`` says when to try again.
        """
        ms, seq = parse_id(bound) if bound else _TOP
        if not self.available():
            self.failures += 1
            raise DatabaseUnavailable("the message archive (PostgreSQL) is unavailable",
                                      retry_after_ms=RETRY_AFTER_MS)
        try:
            # bounded(), not wait_for(): a cancelled query's cleanup on a slow link must not
            # hold the client past the deadline
            return await bounded(self.load(channel, ms, seq, limit), self.deadline)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                DatabaseUnavailable) as exc:
            self.failures += 1
            log.debug("archive read failed: %r", exc)
            raise DatabaseUnavailable(
                "the message archive (PostgreSQL) did not answer in time" if isinstance(
                    exc, TimeoutError) else "the message archive (PostgreSQL) is unavailable",
                retry_after_ms=RETRY_AFTER_MS) from None

    def page_for(self, channel: str, bound: str | None, limit: int,
                 whole_since: float | None = None) -> list[Message] | None:
        """Up to ``limit`` messages of ``channel`` older than ``bound`` from its fetched page,
        newest first; None when no fetched page covers that bound. No I/O: the hub loop
        calls it.

        ``whole_since`` (monotonic seconds): the channel's stream holds every message
        stamped since then, none trimmed; a page fetched while the stream was empty and
        after that time is then followed by the stream without a gap.
        """
        page = self._pages.get(channel)
        if page is None:
            return None
        self._pages.move_to_end(channel)
        pbound, msgs, complete, fetched = page
        b = parse_id(bound) if bound else _TOP
        if pbound == _TOP and bound is not None:
            newest = parse_id(msgs[0].id) if msgs else (0, 0)
            if b > (newest[0], newest[1] + 1) and (whole_since is None or fetched < whole_since):
                return None  # stamped after the fetch and trimmed since: not in the page
        if b > pbound:
            return None  # messages between the page's bound and this one are not in it
        fit = [m for m in msgs if parse_id(m.id) < b] if b < pbound else msgs
        if len(fit) >= limit or complete:
            return fit[:limit]
        return None

    def forget(self, channel: str | None, ids: list[str]) -> None:
        """Drop removed messages (chathub delete) from ``channel``'s fetched page, so no
        later welcome serves them. No I/O."""
        page = self._pages.get(channel) if channel is not None else None
        if page is not None:
            gone = set(ids)
            pbound, msgs, complete, fetched = page
            self._pages[channel] = (pbound, [m for m in msgs if m.id not in gone], complete, fetched)

    def prefetch(self, channel: str, bound: str | None) -> None:
        """Start fetching ``channel``'s welcome page below ``bound`` unless one is in flight."""
        task = self._inflight.get(channel)
        if task is None or task.done():
            self._inflight[channel] = spawn(self._fetch(channel, bound))

    async def _fetch(self, channel: str, bound: str | None) -> None:
        want = self.page_size * 2  # room for later bounds a little lower than this one
        started = time.monotonic()  # the page holds what PostgreSQL held at the latest then
        try:
            msgs = await self.older(channel, bound, want)
        except DatabaseUnavailable:
            return
        finally:
            self._inflight.pop(channel, None)
        self.fetches += 1
        self._pages[channel] = (parse_id(bound) if bound else _TOP, msgs, len(msgs) < want, started)
        self._pages.move_to_end(channel)
        while len(self._pages) > PAGES_KEPT:
            self._pages.popitem(last=False)

    async def ready(self) -> None:
        """Wait (at most the deadline) for the welcome pages being fetched."""
        tasks = [t for t in self._inflight.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.deadline)
