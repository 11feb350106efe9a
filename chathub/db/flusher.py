"""Write-behind from Valkey streams to PostgreSQL, exactly once.

A :class:`StreamFlusher` reads a stream through a consumer group, writes each
batch with one bulk statement that ignores ids already present, and only then
acknowledges it. A crash between the two leaves the entries pending in Valkey:
they are read again (by this node after a restart, or claimed by another) and
written again without duplicates. While PostgreSQL is down the backlog stays in
Valkey and the flusher retries with backoff; when it returns, the backlog drains.

Two flushers run in every daemon: :class:`MessageFlusher` (the message stream
into ``messages``) and :class:`SessionFlusher` (finished sessions into ``sessions``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from ..entries import FLUSH_GROUP, entry_fields, entry_to_message
from ..errors import CacheUnavailable
from ..keys import Keys
from ..kv import KV
from ..protocol import Message
from ..tasks import bounded
from . import store

log = logging.getLogger("chathub.db.flusher")

#: first wait after a failed write; doubles up to MAX_BACKOFF
MIN_BACKOFF = 0.2
#: longest wait between two attempts while PostgreSQL is down
MAX_BACKOFF = 5.0
#: pending entries idle this long (ms) belong to a consumer that died; another claims them
CLAIM_IDLE_MS = 5000
#: consumer group of the session stream
SESSION_GROUP = "writer"

T = TypeVar("T")


class StreamFlusher(Generic[T]):
    """Moves one stream into PostgreSQL in batches; subclasses say how to decode and write."""

    group: str = ""
    name: str = "flusher"
    #: delete entries once in PostgreSQL (queues); False keeps them (a history stream)
    delete_acked: bool = True

    def __init__(self, kv: KV, pool: asyncpg.Pool, stream: str, consumer: str,
                 batch: int, interval: float, trim: Callable[[], Any] | None = None, *,
                 on_write: Callable[[float, int], None] | None = None,
                 on_pg_change: Callable[[bool], None] | None = None) -> None:
        """``on_write(seconds, rows)`` after each batch written; ``on_pg_change(up)`` when
        PostgreSQL is seen going down or coming back."""
        self.kv = kv
        self.pool = pool
        self.stream = stream
        self.consumer = consumer
        self.batch = batch
        self.interval = interval
        self._trim = trim
        #: rows written since start
        self.written = 0
        #: whether the last write reached PostgreSQL
        self.pg_up = True
        self.on_write = on_write
        self.on_pg_change = on_pg_change
        self._wake = asyncio.Event()
        self._stopping = False

    def decode(self, entries: list[Any]) -> list[T]:
        raise NotImplementedError

    async def write(self, items: list[T]) -> int:
        raise NotImplementedError

    async def setup(self) -> None:
        """Create the stream's consumer group when missing."""
        try:
            await self.kv.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, start: str) -> list[Any]:
        reply = await self.kv.call(self.kv.client.xreadgroup, self.group, self.consumer,
                                   {self.stream: start}, count=self.batch)
        return reply[0][1] if reply else []

    async def _claim(self) -> list[Any]:
        reply = await self.kv.call(self.kv.client.xautoclaim, self.stream, self.group,
                                   self.consumer, CLAIM_IDLE_MS, "0-0", count=self.batch)
        return [e for e in reply[1] if e[1] is not None]

    def _set_pg(self, up: bool) -> None:
        if up != self.pg_up:
            self.pg_up = up
            if up:
                log.info("%s: PostgreSQL is back; draining the backlog", self.name)
            if self.on_pg_change is not None:
                self.on_pg_change(up)

    async def step(self) -> int:
        """Flush one batch: our pending entries first, then claimed, then new ones.

        Returns the number of entries acknowledged (0 when there was nothing).
        Raises whatever PostgreSQL or Valkey raised; the entries stay pending.
        """
        entries = await self._read("0")
        if not entries:
            entries = await self._claim()
        if not entries:
            entries = await self._read(">")
        if not entries:
            return 0
        items = self.decode(entries)
        started = time.perf_counter()
        try:
            added = await self.write(items)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if self.pg_up:
                log.warning("%s: cannot write to PostgreSQL (%s); %d entries wait in Valkey",
                            self.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                            len(entries))
            self._set_pg(False)
            raise
        self._set_pg(True)
        if self.on_write is not None:
            self.on_write(time.perf_counter() - started, len(items))
        ids = [e[0] for e in entries]
        await self.acked(ids, items)
        self.written += added
        return len(entries)

    async def acked(self, ids: list[str], items: list[T]) -> None:
        """The batch is in PostgreSQL: acknowledge it, and delete it from the stream when
        :attr:`delete_acked` (in one MULTI, so no entry is left acknowledged but kept)."""
        if not self.delete_acked:
            await self.kv.call(self.kv.client.xack, self.stream, self.group, *ids)
            return
        pipe = self.kv.client.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, *ids)
        pipe.xdel(self.stream, *ids)
        await self.kv.call(pipe.execute)

    async def run(self) -> None:
        """Flush until :meth:`stop`; then drain what is left while both servers answer."""
        backoff = MIN_BACKOFF
        while not self._stopping:
            try:
                # bounded(): when the daemon stops it cancels this task, which then ends
                # at once instead of after the cancelled query's cleanup
                n = await bounded(self.step(), None)
                backoff = MIN_BACKOFF
            except CacheUnavailable:
                n = 0
                await self._sleep(MAX_BACKOFF if not self.kv.up else backoff)
                continue
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except Exception:
                log.exception("%s: unexpected error; retrying", self.name)
                await self._sleep(MAX_BACKOFF)
                continue
            if n < self.batch:
                await self._sleep(self.interval)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    def kick(self) -> None:
        """Flush now instead of waiting for the interval."""
        self._wake.set()

    async def drain(self, deadline: float) -> bool:
        """Flush everything readable until empty or ``deadline`` (monotonic); True when empty."""
        self._stopping = True
        self._wake.set()
        while time.monotonic() < deadline:
            try:
                # a batch that cannot finish by the deadline stays pending in Valkey for
                # the next flusher; bounded() does not wait for the cancelled write
                if await bounded(self.step(), deadline - time.monotonic()) == 0:
                    return True
            except Exception:
                return False
        return False


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A channel created in Valkey, on its way to the ``channels`` table."""

    name: str
    private: bool
    #: epoch ms
    created_at: int
    created_by: str | None


class MessageFlusher(StreamFlusher[Message | ChannelRecord]):
    """The flush queue into ``messages`` and ``channels``; then deletes the batch from the
    queue (acknowledge and delete in one MULTI, so no entry is left acknowledged but kept)
    and trims the history streams it touched to ``history_size``."""

    group = FLUSH_GROUP
    name = "message flusher"

    def __init__(self, *args: Any, history_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history_size = history_size
        self.keys = Keys(self.kv.prefix)

    def decode(self, entries: list[Any]) -> list[Message | ChannelRecord]:
        out: list[Message | ChannelRecord] = []
        for e in entries:
            d = entry_fields(e)
            if d.get("k") == "channel":
                out.append(ChannelRecord(d["c"], d.get("p") == "1",
                                         int(str(e[0]).split("-", 1)[0]), d.get("by") or None))
            else:
                out.append(entry_to_message(e))
        return out

    async def write(self, items: list[Message | ChannelRecord]) -> int:
        channels = [(c.name, c.private, c.created_at, c.created_by) for c in items
                    if isinstance(c, ChannelRecord)]
        if channels:
            await store.insert_channels(self.pool, channels)
        return await store.insert_messages(self.pool, [m for m in items if isinstance(m, Message)])

    async def acked(self, ids: list[str], items: list[Message | ChannelRecord]) -> None:
        await super().acked(ids, items)
        streams = {self.keys.stream(m.channel) if m.channel else self.keys.whispers
                   for m in items if isinstance(m, Message)}
        if streams:
            await self.kv.call(self.kv.client.fcall, self.kv.fn("trim"), 1 + len(streams),
                               self.keys.queue, *sorted(streams), self.history_size)


class SessionFlusher(StreamFlusher[dict[str, Any]]):
    """Finished sessions (JSON in field ``s``) into ``sessions``; deletes them once written."""

    group = SESSION_GROUP
    name = "session writer"

    def decode(self, entries: list[Any]) -> list[dict[str, Any]]:
        return [json.loads(entry_fields(e)["s"]) for e in entries]

    async def write(self, items: list[dict[str, Any]]) -> int:
        return await store.insert_sessions(self.pool, items)

