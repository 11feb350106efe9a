"""PostgreSQL's side of removing messages (chathub delete / purge).

A removed message keeps its row, marked with ``deleted_at`` and ``deleted_by``
(migration 0006); every read leaves marked rows out. :func:`mark` writes the whole
row with the mark (``INSERT ... ON CONFLICT (id) DO UPDATE``), so it is the same
statement whether the flusher wrote the message already, writes it at the same
moment, or writes it later:

- written already: the conflict updates the row's mark;
- written later: the flusher's ``INSERT ... ON CONFLICT DO NOTHING`` keeps the
  marked row;
- written at the same moment: PostgreSQL makes the second insert of the id wait
  for the first to commit, then takes the conflict branch.

Each statement is idempotent, so a crash or a retry anywhere marks nothing twice
and loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from ..protocol import Message


def _message(r: asyncpg.Record) -> Message:
    return Message(type="whisper" if r["recipient"] is not None else "chat", id=r["id"],
                   from_=r["sender"], text=r["text"], ts=r["id_ms"], to=r["recipient"],
                   channel=r["channel"])


async def find(pool: asyncpg.Pool, ids: Sequence[str]) -> dict[str, tuple[Message, bool]]:
    """The stored messages among ``ids``: id -> (message, whether already deleted)."""
    rows = await pool.fetch(
        "SELECT id, id_ms, sender, recipient, text, channel, deleted_at FROM messages "
        "WHERE id = ANY($1::text[])", list(ids))
    return {r["id"]: (_message(r), r["deleted_at"] is not None) for r in rows}


async def sent_by(pool: asyncpg.Pool, sender: str, since_ms: int, channel: str | None,
                  limit: int) -> list[Message]:
    """``sender``'s messages not yet deleted, stamped at or after ``since_ms`` (epoch ms),
    in ``channel`` only when given (whispers included when not), oldest first."""
    rows = await pool.fetch(
        "SELECT id, id_ms, sender, recipient, text, channel FROM messages "
        "WHERE sender = $1 AND id_ms >= $2 AND deleted_at IS NULL "
        "AND ($3::text IS NULL OR channel = $3) ORDER BY id_ms, id_seq LIMIT $4",
        sender, since_ms, channel, limit)
    return [_message(r) for r in rows]


async def mark(pool: asyncpg.Pool, messages: Sequence[Message], by: str) -> list[str]:
    """Mark ``messages`` deleted by ``by``, inserting the rows the flusher has not written
    yet; returns the ids that were not marked before (see the module docstring)."""
    if not messages:
        return []
    now = datetime.now(UTC)
    cols: list[list[object]] = [[] for _ in range(8)]
    for m in messages:
        ms, seq = m.id.split("-")
        for col, value in zip(cols, (m.id, int(ms), int(seq), m.from_, m.to, m.text,
                                     datetime.fromtimestamp(m.ts / 1000, UTC), m.channel),
                              strict=True):
            col.append(value)
    marked = await pool.fetch(
        "INSERT INTO messages AS m (id, id_ms, id_seq, sender, recipient, text, ts, channel, "
        "deleted_at, deleted_by) "
        "SELECT *, $9::timestamptz, $10::text FROM unnest($1::text[], $2::bigint[], "
        "$3::bigint[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[]) "
        "ON CONFLICT (id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at, "
        "deleted_by = EXCLUDED.deleted_by WHERE m.deleted_at IS NULL RETURNING m.id",
        *cols, now, by)
    return [r["id"] for r in marked]
