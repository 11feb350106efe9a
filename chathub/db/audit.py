"""The audit trail: every operator action, kept in PostgreSQL (``admin_actions``).

An action (kick, limits set/reset, reload, ...) is recorded when it happens with
an id made on the spot, then written behind the hub the way messages and sessions
are (:mod:`chathub.db.flusher`): it goes into the Valkey stream
``<prefix>audit``, and :class:`AuditFlusher` moves it into PostgreSQL, acknowledging
only what was written. While PostgreSQL is down the entries wait in Valkey. While
Valkey is down they are written to PostgreSQL directly; when both are down they
wait in this process (:data:`UNSENT_MAX` at most, oldest dropped with an error
line) and go to Valkey as soon as it answers. A row written twice is kept once.

``chathub audit`` lists what PostgreSQL holds plus what still waits in Valkey or in
this process, so an action shows at once, whatever is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..entries import entry_fields
from ..errors import CacheUnavailable
from ..kv import KV
from .flusher import StreamFlusher

log = logging.getLogger("chathub.db.audit")

#: consumer group of the audit stream
AUDIT_GROUP = "writer"
#: actions kept in this process while both Valkey and PostgreSQL are down
UNSENT_MAX = 10_000
#: seconds a direct write to PostgreSQL may take (when Valkey is down)
DIRECT_TIMEOUT = 2.0
#: most rows ``chathub audit`` lists
MAX_LIST = 1000
_PG_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def new_entry(action: str, target: str | None, arguments: dict[str, Any],
              by_uid: int | None, by_user: str | None) -> dict[str, Any]:
    """One action as it travels and is listed (``at`` in epoch ms)."""
    return {"id": uuid.uuid4().hex, "action": action, "target": target,
            "arguments": arguments, "at": int(time.time() * 1000),
            "by_uid": by_uid, "by_user": by_user}


async def insert_actions(pool: asyncpg.Pool, entries: list[dict[str, Any]]) -> int:
    """Write ``entries``; an id already present is left as it is. Returns rows added."""
    cols = list(zip(*[(e["id"], e["action"], e["target"], json.dumps(e["arguments"], default=str),
                       datetime.fromtimestamp(e["at"] / 1000, UTC), e["by_uid"], e["by_user"])
                      for e in entries], strict=True))
    if not cols:
        return 0
    status = await pool.execute(
        "INSERT INTO admin_actions (id, action, target, arguments, at, by_uid, by_user) "
        "SELECT i, a, t, g::jsonb, w, u, n FROM unnest($1::text[], $2::text[], $3::text[], "
        "$4::text[], $5::timestamptz[], $6::integer[], $7::text[]) AS x(i, a, t, g, w, u, n) "
        "ON CONFLICT (id) DO NOTHING", *[list(c) for c in cols])
    return int(status.rsplit(" ", 1)[1])


class AuditFlusher(StreamFlusher[dict[str, Any]]):
    """The audit stream (JSON in field ``a``) into ``admin_actions``; deletes what it wrote."""

    group = AUDIT_GROUP
    name = "audit writer"

    def __init__(self, *args: Any, resend: Callable[[], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resend = resend

    def decode(self, entries: list[Any]) -> list[dict[str, Any]]:
        return [json.loads(entry_fields(e)["a"]) for e in entries]

    async def write(self, items: list[dict[str, Any]]) -> int:
        return await insert_actions(self.pool, items)

    async def step(self) -> int:
        await self._resend()  # what waited in this process goes to Valkey first
        return await super().step()


class AuditLog:
    """Records operator actions for one daemon; run :attr:`flusher` beside the hub."""

    def __init__(self, kv: KV, pool: asyncpg.Pool, node_id: str, batch: int = 500,
                 interval: float = 1.0) -> None:
        self.kv = kv
        self.pool = pool
        self.stream = kv.key("audit")
        #: actions neither Valkey nor PostgreSQL took yet, oldest first
        self.unsent: deque[dict[str, Any]] = deque()
        self.flusher = AuditFlusher(kv, pool, self.stream, node_id, batch, interval,
                                    resend=self.resend)

    async def record(self, action: str, target: str | None, arguments: dict[str, Any],
                     by_uid: int | None, by_user: str | None) -> dict[str, Any]:
        """Record one action; never raises for an outage (see the module docstring)."""
        entry = new_entry(action, target, arguments, by_uid, by_user)
        log.info("audit: %s %s by %s (uid %s) %s", action, target or "-", by_user or "?",
                 by_uid if by_uid is not None else "?", json.dumps(arguments, default=str))
        try:
            await self._send(entry)
        except CacheUnavailable:
            try:
                await asyncio.wait_for(insert_actions(self.pool, [entry]), DIRECT_TIMEOUT)
            except _PG_ERRORS:
                self._keep(entry)
        return entry

    async def _send(self, entry: dict[str, Any]) -> None:
        await self.kv.call(self.kv.client.xadd, self.stream, {"a": json.dumps(entry, default=str)})
        self.flusher.kick()

    def _keep(self, entry: dict[str, Any]) -> None:
        if len(self.unsent) >= UNSENT_MAX:
            lost = self.unsent.popleft()
            log.error("audit: more than %d actions wait for Valkey and PostgreSQL; dropping %s",
                      UNSENT_MAX, json.dumps(lost, default=str))
        self.unsent.append(entry)
        log.warning("audit: Valkey and PostgreSQL are both down; %d actions wait in memory",
                    len(self.unsent))

    async def resend(self) -> None:
        """Move what waits in this process into Valkey, oldest first, while it answers."""
        while self.unsent:
            try:
                await self._send(self.unsent[0])
            except CacheUnavailable:
                return
            self.unsent.popleft()

    async def last_resort(self) -> None:
        """At stop: write what still waits in this process straight to PostgreSQL, or log it."""
        if not self.unsent:
            return
        try:
            await asyncio.wait_for(insert_actions(self.pool, list(self.unsent)), DIRECT_TIMEOUT)
            self.unsent.clear()
        except _PG_ERRORS as exc:
            for e in self.unsent:
                log.error("audit: not recorded (%s): %s", exc, json.dumps(e, default=str))

    async def waiting(self) -> list[dict[str, Any]]:
        """Actions not yet in PostgreSQL: those in Valkey (when it answers) and in memory."""
        out = list(self.unsent)
        try:
            entries = await self.kv.call(self.kv.client.xrange, self.stream, "-", "+", count=MAX_LIST)
            out.extend(json.loads(entry_fields(e)["a"]) for e in entries)
        except CacheUnavailable:
            pass
        return out

    async def list(self, since_ms: int | None = None, limit: int = 100) -> dict[str, Any]:
        """Recorded actions, newest first: ``{"actions": [...], "postgres": bool}``.

        ``postgres`` is False when PostgreSQL could not be read: then only the actions
        still waiting are listed.
        """
        limit = max(1, min(limit, MAX_LIST))
        rows: list[dict[str, Any]] = []
        postgres = True
        try:
            recs = await asyncio.wait_for(self.pool.fetch(
                "SELECT id, action, target, arguments, at, by_uid, by_user FROM admin_actions "
                "WHERE at >= $1 ORDER BY at DESC, id DESC LIMIT $2",
                datetime.fromtimestamp((since_ms or 0) / 1000, UTC), limit), DIRECT_TIMEOUT)
            rows = [{"id": r["id"], "action": r["action"], "target": r["target"],
                     "arguments": json.loads(r["arguments"]),
                     "at": int(r["at"].timestamp() * 1000), "by_uid": r["by_uid"],
                     "by_user": r["by_user"]} for r in recs]
        except _PG_ERRORS:
            postgres = False
        seen = {r["id"] for r in rows}
        for e in await self.waiting():
            if e["id"] not in seen and (since_ms is None or e["at"] >= since_ms):
                rows.append({**e, "waiting": True})
                seen.add(e["id"])
        rows.sort(key=lambda r: (r["at"], r["id"]), reverse=True)
        return {"actions": rows[:limit], "postgres": postgres}
