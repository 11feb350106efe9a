"""What ``chathub delete`` and ``chathub purge`` (and the HTTP API's verbs) do.

:class:`MessageRemoval` runs in the asking task (an admin connection, an API
request), beside the hub loop, in three steps:

1. find the messages: first in Valkey's flush queue (not yet in PostgreSQL), then in
   PostgreSQL. In that order, a message the flusher moves meanwhile is found in one
   of the two: the flusher deletes a queue entry only after PostgreSQL committed it.
2. mark them in PostgreSQL (:func:`chathub.db.removal.mark`): the row is kept with
   ``deleted_at`` / ``deleted_by``; a row the flusher has not written yet is written
   now, already marked, and the flusher's later insert leaves it so.
3. mark them in Valkey (``chathub_delete`` in cache.lua): history, paging and ``since``
   recovery leave them out, and the other hubs hear of it on the bus; this hub's
   clients get the ``delete`` frame through the hub's queue (:meth:`Hub.remote`),
   which only sends frames.

PostgreSQL first: when it is down nothing changes and the caller is told so. When
Valkey fails after PostgreSQL marked the rows, asking again finishes the job (step 3
runs for every message found, marked before or not).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from .cache import MessageCache
from .db import removal as db_removal
from .db.archive import Archive
from .errors import CacheUnavailable, ChathubError
from .protocol import Message, canonical_id, valid_channel, valid_user

#: seconds each PostgreSQL step may take before the request is refused
PG_TIMEOUT = 5.0
#: the longest window ``purge`` reaches back, seconds (30 days): a purge is a spam
#: cleanup, not a way to erase a user's history
MAX_PURGE_SECONDS = 30 * 86400
#: most messages one ``purge`` removes (from each of Valkey and PostgreSQL); purge again
#: for the rest
PURGE_MAX = 10_000
_PG_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class RemovalUnavailable(ChathubError, ValueError):
    """PostgreSQL or Valkey did not take the removal; the message says what changed.
    Asking again is safe."""


class MessageRemoval:
    """Removes messages everywhere; one per daemon.

    Args:
        pool: PostgreSQL, where removed rows are kept and marked.
        cache: Valkey's history, flush queue and deleted sets.
        archive: this hub's cached PostgreSQL pages (removed messages are dropped).
        tell_hub: the hub's :meth:`~chathub.hub.Hub.remote`, given ``{"k": "del", ...}``.
    """

    def __init__(self, pool: asyncpg.Pool, cache: MessageCache, archive: Archive,
                 tell_hub: Callable[[dict[str, Any]], None]) -> None:
        self.pool = pool
        self.cache = cache
        self.archive = archive
        self.tell_hub = tell_hub

    async def delete(self, mid: Any, channel: Any, by: str) -> dict[str, Any]:
        """Remove message ``mid`` (in ``channel`` when given; None for any).

        Returns ``{"msg": id, "channel": name or None (a whisper or not found),
        "deleted": bool}``; ``deleted`` is False when no such message exists (in that
        channel) or it was removed before.

        Raises:
            ValueError: a bad id or channel (one line).
            RemovalUnavailable: PostgreSQL or Valkey is unavailable (one line saying
                what changed).
        """
        cid = canonical_id(mid) if isinstance(mid, str) else None
        if cid is None:
            raise ValueError(f"{str(mid)[:60]!r} is not a message id (like 1732871234567-0)")
        if channel is not None and (not isinstance(channel, str) or not valid_channel(channel)):
            raise ValueError(f"--channel: {str(channel)[:70]!r} is not a channel name")
        queued = await self._queued([cid])
        stored = await self._pg(db_removal.find(self.pool, [cid]))
        msg = queued.get(cid) or (stored[cid][0] if cid in stored else None)
        if msg is None or (channel is not None and msg.channel != channel):
            return {"msg": cid, "channel": channel, "deleted": False}
        removed = await self._remove([msg], by)
        return {"msg": cid, "channel": msg.channel, "deleted": bool(removed)}

    async def purge(self, user: Any, seconds: Any, channel: Any, by: str) -> dict[str, Any]:
        """Remove every message ``user`` sent in the last ``seconds`` (in ``channel`` only
        when given; whispers too when not).

        Returns ``{"user": name, "deleted": count, "ids": [removed ids, oldest first],
        "by_channel": {channel or None (whispers): [those ids]}}``.

        Raises:
            ValueError: bad input (one line).
            RemovalUnavailable: as :meth:`delete`.
        """
        if not isinstance(user, str) or not valid_user(user):
            raise ValueError(f"{str(user)[:40]!r} is not a user name (1-32 of A-Z a-z 0-9 _ - .)")
        if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                or not 0 < seconds <= MAX_PURGE_SECONDS):
            raise ValueError(f"field 'seconds' must be a number from 0 to {MAX_PURGE_SECONDS} "
                             "(30 days)")
        if channel is not None and (not isinstance(channel, str) or not valid_channel(channel)):
            raise ValueError(f"--channel: {str(channel)[:70]!r} is not a channel name")
        since_ms = int(time.time() * 1000 - seconds * 1000)
        try:
            queued = await self.cache.queued_from(user, since_ms, channel, PURGE_MAX)
        except CacheUnavailable:
            raise RemovalUnavailable("Valkey is unavailable; nothing was deleted") from None
        stored = await self._pg(db_removal.sent_by(self.pool, user, since_ms, channel,
                                                   PURGE_MAX))
        found = {m.id: m for m in (*stored, *queued)}
        removed = await self._remove(list(found.values()), by)
        ids = sorted(removed, key=lambda i: tuple(int(p) for p in i.split("-")))
        by_channel: dict[str | None, list[str]] = {}
        for i in ids:
            by_channel.setdefault(found[i].channel, []).append(i)
        return {"user": user, "deleted": len(ids), "ids": ids, "by_channel": by_channel}

    async def _remove(self, msgs: list[Message], by: str) -> set[str]:
        """Steps 2 and 3 of the module docstring; the ids removed now."""
        if not msgs:
            return set()
        marked = await self._pg(db_removal.mark(self.pool, msgs, by))
        groups: dict[tuple[str | None, str, str], list[str]] = {}
        for m in msgs:
            key = (m.channel, "", "") if m.channel is not None else (None, m.from_, m.to or "")
            groups.setdefault(key, []).append(m.id)
        try:
            announced = await self.cache.mark_deleted(
                [(c, f, t, ids) for (c, f, t), ids in groups.items()])
        except CacheUnavailable:
            raise RemovalUnavailable("Valkey is unavailable: the messages are marked deleted in "
                             "PostgreSQL but may still be served from Valkey; try again"
                             ) from None
        fresh = set(announced)
        for (channel, sender, to), ids in groups.items():
            now = [i for i in ids if i in fresh]
            self.archive.forget(channel, ids)
            if now:
                self.tell_hub({"k": "del", "c": channel, "ids": now, "f": sender or None,
                               "to": to or None})
        return set(marked) | fresh

    async def _queued(self, ids: list[str]) -> dict[str, Message]:
        try:
            return await self.cache.queued(ids)
        except CacheUnavailable:
            raise RemovalUnavailable("Valkey is unavailable; nothing was deleted") from None

    @staticmethod
    async def _pg(aw: Any) -> Any:
        try:
            return await asyncio.wait_for(aw, PG_TIMEOUT)
        except _PG_ERRORS as exc:
            raise RemovalUnavailable(f"removed messages are recorded in PostgreSQL, which is "
                             f"unavailable ({type(exc).__name__}); nothing changed") from None
