"""The queries chathub runs against PostgreSQL, each idempotent where it writes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..protocol import Message

SESSION_COLUMNS = (
    "id", "user_name", "remote_addr", "user_agent", "node_id", "connected_at",
    "disconnected_at", "duration_ms", "chats_sent", "whispers_sent", "whispers_received",
    "frames_received", "bytes_in", "bytes_out", "rate_limit_hits", "close_code", "close_reason",
)
MESSAGE_COLUMNS = ("id", "id_ms", "id_seq", "sender", "recipient", "text", "ts", "channel")
CHANNEL_COLUMNS = ("name", "private", "created_at", "created_by")


def _ts(ms: float | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def session_row(s: dict[str, Any]) -> tuple[Any, ...]:
    """A session record (as queued in Valkey, times in epoch ms) as a row tuple."""
    connected, disconnected = s["connected_at"], s.get("disconnected_at")
    duration = None if disconnected is None else int(disconnected - connected)
    return (
        s["id"], s["user_name"], s.get("remote_addr"), s.get("user_agent"), s["node_id"],
        _ts(connected), _ts(disconnected), duration,
        s.get("chats_sent", 0), s.get("whispers_sent", 0), s.get("whispers_received", 0),
        s.get("frames_received", 0), s.get("bytes_in", 0), s.get("bytes_out", 0),
        s.get("rate_limit_hits", 0), s.get("close_code"), s.get("close_reason"),
    )


async def _copy_upsert(conn: asyncpg.Connection, table: str, columns: Sequence[str],
                       rows: Sequence[tuple[Any, ...]]) -> int:
    """COPY ``rows`` into a temporary table, then insert the new ones; returns rows added."""
    tmp = f"_in_{table}"
    async with conn.transaction():
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {tmp} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        await conn.copy_records_to_table(tmp, records=rows, columns=list(columns))
        status = await conn.execute(
            f"INSERT INTO {table} SELECT * FROM {tmp} ON CONFLICT (id) DO NOTHING")
    return int(status.rsplit(" ", 1)[1])


async def insert_sessions(pool: asyncpg.Pool, sessions: Sequence[dict[str, Any]]) -> int:
    """Write finished sessions; a session id already present is left as it is."""
    async with pool.acquire() as conn:
        return await _copy_upsert(conn, "sessions", SESSION_COLUMNS,
                                  [session_row(s) for s in sessions])


async def insert_messages(pool: asyncpg.Pool, messages: Sequence[Message]) -> int:
    """Write stamped messages; an id already present is left as it is."""
    rows = []
    for m in messages:
        ms, seq = m.id.split("-")
        rows.append((m.id, int(ms), int(seq), m.from_, m.to, m.text, _ts(m.ts), m.channel))
    async with pool.acquire() as conn:
        return await _copy_upsert(conn, "messages", MESSAGE_COLUMNS, rows)


async def insert_channels(pool: asyncpg.Pool, channels: Sequence[tuple[str, bool, int, str]]) -> int:
    """Record created channels (name, private, created_at epoch ms, created_by); a name
    already present is left as it is."""
    rows = [(name, private, _ts(at), by) for name, private, at, by in channels]
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO channels (name, private, created_at, created_by) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (name) DO NOTHING", rows)
    return len(rows)


#: the largest value of PostgreSQL's bigint, which holds each part of an id
_BIGINT_MAX = 2**63 - 1


async def older_public(pool: asyncpg.Pool, channel: str, ms: int, seq: int, limit: int
                       ) -> list[Message]:
    """Messages of ``channel`` strictly older than id (ms, seq), newest first; removed
    ones (chathub delete) left out.

    Ids are two unsigned 64-bit integers; the columns are signed bigints. A bound past
    their range is clamped: (ms, seq) with seq past it stands for "everything at ms",
    ms past it for "everything" (the clamped bound itself is never a stored id).
    """
    if ms > _BIGINT_MAX:
        ms, seq = _BIGINT_MAX, _BIGINT_MAX
    elif seq > _BIGINT_MAX:
        seq = _BIGINT_MAX
    rows = await pool.fetch(
        "SELECT id, sender, text, id_ms FROM messages WHERE channel = $1 "
        "AND deleted_at IS NULL AND (id_ms, id_seq) < ($2, $3) ORDER BY id_ms DESC, id_seq DESC LIMIT $4",
        channel, ms, seq, limit)
    return [Message(type="chat", id=r["id"], from_=r["sender"], text=r["text"], ts=r["id_ms"],
                    channel=channel) for r in rows]
