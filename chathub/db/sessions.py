"""Session records: open ones in a Valkey hash, finished ones in a durable Valkey stream.

When a connection opens, :meth:`SessionRecorder.opened` notes it in
``open:<node>``; when it ends, :meth:`closed` moves it, in one transaction, to the
``sessions`` stream that the :class:`~chathub.db.flusher.SessionFlusher` writes to
PostgreSQL. Nothing here awaits PostgreSQL, and a SIGKILL of the daemon loses no
finished session (the stream is in Valkey's AOF). Open sessions of a node that
died are closed out by :class:`~chathub.cluster.nodes.NodeWatch` with reason
"daemon crashed". While Valkey itself is down, records wait in memory and are
sent when it returns; at shutdown they are written straight to PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg

from ..errors import CacheUnavailable
from ..kv import KV
from ..tasks import spawn
from . import store

log = logging.getLogger("chathub.db.sessions")


class SessionRecorder:
    """Durable session bookkeeping for one node. Safe to call from connection handlers."""

    def __init__(self, kv: KV, node_id: str) -> None:
        self.kv = kv
        self.node_id = node_id
        self.open_key = kv.key("open", node_id)
        self.stream = kv.key("sessions")
        #: finished sessions that could not reach Valkey yet
        self.unsent: list[dict[str, Any]] = []
        kv.on_change(self._valkey_changed)

    def _valkey_changed(self, up: bool) -> None:
        if up and self.unsent:
            spawn(self.resend())

    async def opened(self, record: dict[str, Any]) -> None:
        """Note an open session (so a crash can close it out later).

        Kept until the session ends, so it costs Valkey memory per open connection:
        fields that are 0 or None (the counters of a session just opened) are left out,
        and the flusher reads a missing field as 0 or NULL, as the full record has it.
        """
        compact = {k: v for k, v in record.items() if v is not None and v != 0}
        try:
            await self.kv.call(self.kv.client.hset, self.open_key, record["id"], json.dumps(
                compact, separators=(",", ":")))
        except CacheUnavailable:
            pass  # closed() still records it; only crash close-out needs this entry

    async def closed(self, record: dict[str, Any]) -> None:
        """Queue a finished session for PostgreSQL; never raises."""
        try:
            await self._send(record)
        except CacheUnavailable:
            self.unsent.append(record)

    async def _send(self, record: dict[str, Any]) -> None:
        pipe = self.kv.client.pipeline(transaction=True)
        pipe.xadd(self.stream, {"s": json.dumps(record)})
        pipe.hdel(self.open_key, record["id"])
        await self.kv.call(pipe.execute)

    async def resend(self) -> None:
        """Send what waited in memory while Valkey was down."""
        while self.unsent:
            record = self.unsent[0]
            try:
                await self._send(record)
            except CacheUnavailable:
                return
            self.unsent.pop(0)

    async def last_resort(self, pool: asyncpg.Pool | None) -> None:
        """At shutdown: write what never reached Valkey straight to PostgreSQL."""
        await self.resend()
        if not self.unsent or pool is None:
            return
        try:
            await store.insert_sessions(pool, self.unsent)
            self.unsent.clear()
        except Exception as exc:
            log.error("%d finished sessions could not be recorded: %s", len(self.unsent), exc)

    async def waiting(self) -> int:
        """Finished sessions not yet in PostgreSQL (in Valkey or in memory)."""
        try:
            return int(await self.kv.call(self.kv.client.xlen, self.stream)) + len(self.unsent)
        except CacheUnavailable:
            return len(self.unsent)
