"""The ``bans`` table (migration 0005): bans and mutes as operators set and lift them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

_TARGET = ("kind = $1 AND user_name IS NOT DISTINCT FROM $2 AND channel IS NOT DISTINCT FROM $3 "
           "AND ip IS NOT DISTINCT FROM $4::cidr")


def _ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _ms(ts: datetime | None) -> int | None:
    return None if ts is None else int(ts.timestamp() * 1000)


async def insert(pool: asyncpg.Pool, kind: str, user: str | None, channel: str | None,
                 ip: str | None, reason: str, expires_ms: int | None, by: str | None
                 ) -> tuple[int, int]:
    """Lift what is in force for the same target, then record the new entry; (id, created ms)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"UPDATE bans SET lifted_at = now() WHERE {_TARGET} "
                           "AND lifted_at IS NULL", kind, user, channel, ip)
        row = await conn.fetchrow(
            "INSERT INTO bans (kind, user_name, channel, ip, reason, expires_at, created_by) "
            "VALUES ($1, $2, $3, $4::cidr, $5, $6, $7) RETURNING id, created_at",
            kind, user, channel, ip, reason, _ts(expires_ms), by)
    return int(row["id"]), _ms(row["created_at"]) or 0


async def lift(pool: asyncpg.Pool, kind: str, user: str | None, channel: str | None,
               ip: str | None) -> int:
    """Mark the target's entries in force as lifted; how many were."""
    status = await pool.execute(
        f"UPDATE bans SET lifted_at = now() WHERE {_TARGET} AND lifted_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > now())", kind, user, channel, ip)
    return int(status.split()[-1])


async def in_force(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every entry neither lifted nor expired, oldest first."""
    rows = await pool.fetch(
        "SELECT id, kind, user_name, channel, ip::text AS ip, reason, "
        "created_at, expires_at, created_by FROM bans WHERE lifted_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at, id")
    return [{**dict(r), "created_at": _ms(r["created_at"]), "expires_at": _ms(r["expires_at"])}
            for r in rows]
