"""What ``chathub ban | unban | bans | mute | unmute`` do on the daemon the operator asked.

:class:`BanDesk` checks the request, records it in PostgreSQL (``bans``), then stores
it in Valkey and tells every hub (:class:`~chathub.bans.BanSync`). It runs in the
admin connection's task; nothing here waits inside the hub loop. The admin
socket records each action in the audit trail.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from . import protocol
from .bans import Ban, BanSync, channel_key, now_ms
from .db import bans as db_bans
from .db.pool import failure_reason
from .errors import CacheUnavailable

log = logging.getLogger("chathub.bandesk")

#: longest reason kept, in characters
MAX_REASON = 200
#: longest ban or mute, in seconds (about 317 years: until lifted, in practice)
MAX_SECONDS = 1e10
#: seconds a ban waits for PostgreSQL before it is refused
PG_TIMEOUT = 5.0
_PG_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

#: records one action in the audit trail: (action, target, arguments); the caller adds who
Audit = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class BansUnavailable(ValueError):
    """PostgreSQL or Valkey could not take the change (one line; nothing or part changed)."""


def target(user: Any, channel: Any, ip: Any, mute: bool = False) -> tuple[str, str, str | None]:
    """Check a request's target; (scope, hash field, normalised CIDR or None).

    Raises:
        ValueError: not exactly one of a user and an address, a bad name, a bad range
            (one line naming the field).
    """
    if (user is None) == (ip is None):
        raise ValueError("name a user or an address range (--ip), not both" if user is not None
                         else "name a user or an address range (--ip)")
    if ip is not None:
        if mute or channel is not None:
            raise ValueError("an address range is banned from the whole server; "
                             "--channel and mute need a user")
        try:
            net = ipaddress.ip_network(str(ip).strip(), strict=False)
        except ValueError:
            raise ValueError(f"--ip: {str(ip)[:60]!r} is not an address or range "
                             "(like 203.0.113.0/24)") from None
        return "ip", str(net), str(net)
    if not isinstance(user, str) or not protocol.USER_RE.fullmatch(user):
        raise ValueError(f"{str(user)[:40]!r} is not a user name (1-32 of A-Z a-z 0-9 _ - .)")
    if channel is not None:
        if mute:
            raise ValueError("a mute applies to every channel; --channel is for bans")
        if not isinstance(channel, str) or not protocol.CHANNEL_RE.fullmatch(channel):
            raise ValueError(f"--channel: {str(channel)[:70]!r} is not a channel name")
        return "channel", channel_key(channel, user), None
    return ("mute" if mute else "user"), user, None


def clean_reason(reason: Any) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str):
        raise TypeError("field 'reason' must be a string")
    return " ".join(reason.split())[:MAX_REASON]


class BanDesk:
    """Bans and mutes for one daemon's operator.

    Args:
        pool: PostgreSQL, where every entry is recorded.
        sync: this hub's Valkey copy and bus (:class:`~chathub.bans.BanSync`).
    """

    def __init__(self, pool: asyncpg.Pool, sync: BanSync) -> None:
        self.pool = pool
        self.sync = sync

    async def ban(self, user: str | None, ip: str | None, channel: str | None,
                  seconds: float | None, reason: Any, by: str | None, mute: bool = False
                  ) -> dict[str, Any]:
        """Record and apply a ban (or a mute) on every hub; the entry as stored.

        Raises:
            ValueError: bad input (one line).
            TypeError: ``reason`` is not a string.
            BansUnavailable: PostgreSQL or Valkey is unavailable (a ValueError too).
        """
        scope, key, net = target(user, channel, ip, mute)
        why = clean_reason(reason)
        if seconds is not None and not (isinstance(seconds, (int, float))
                                        and not isinstance(seconds, bool)
                                        and 0 < seconds < MAX_SECONDS):
            raise ValueError(f"field 'seconds' must be a positive number below {MAX_SECONDS:.0f} "
                             "(about 300 years; leave it out for a ban until lifted)")
        if mute and seconds is None:
            raise ValueError("a mute needs a duration (--for)")
        until = None if seconds is None else now_ms() + int(seconds * 1000)
        kind = "mute" if mute else "ban"
        try:
            ban_id, at = await asyncio.wait_for(db_bans.insert(
                self.pool, kind, user, channel, net, why, until, by), PG_TIMEOUT)
        except _PG_ERRORS as exc:
            raise BansUnavailable(f"{kind}s are recorded in PostgreSQL, which is unavailable "
                                  f"({failure_reason(exc)}); nothing changed") from None
        entry = Ban(scope, key, why, until, ban_id, at, by)
        try:
            await self.sync.store(entry)
        except CacheUnavailable:
            raise BansUnavailable(f"Valkey is unavailable: the {kind} is recorded in "
                                  "PostgreSQL and applies when a hub starts again; try again"
                                  ) from None
        return entry.to_dict()

    async def unban(self, user: str | None, ip: str | None, channel: str | None,
                    mute: bool = False) -> dict[str, Any]:
        """Lift a ban (or a mute) on every hub; ``{"lifted": bool}`` (False: none in force)."""
        scope, key, net = target(user, channel, ip, mute)
        kind = "mute" if mute else "ban"
        try:
            rows = await asyncio.wait_for(
                db_bans.lift(self.pool, kind, user, channel, net), PG_TIMEOUT)
        except _PG_ERRORS as exc:
            raise BansUnavailable(f"{kind}s are recorded in PostgreSQL, which is unavailable "
                                  f"({failure_reason(exc)}); nothing changed") from None
        try:
            held = await self.sync.lift(scope, key)
        except CacheUnavailable:
            raise BansUnavailable(f"Valkey is unavailable: the {kind} is lifted in PostgreSQL; "
                                  "try again so that every hub lifts it") from None
        return {"lifted": bool(rows or held)}

    async def list(self) -> dict[str, Any]:
        """Every ban and mute in force, as Valkey holds them (this hub's copy if it is down)."""
        try:
            entries, fresh = await self.sync.load(), True
        except CacheUnavailable:
            entries, fresh = self.sync.active.all(), False
        entries.sort(key=lambda b: (b.at or 0, b.id or 0))
        return {"bans": [b.to_dict() for b in entries], "valkey": fresh}

    async def restore(self) -> None:
        """Copy PostgreSQL's entries in force into Valkey where it lacks them (at start)."""
        try:
            rows = await asyncio.wait_for(db_bans.in_force(self.pool), PG_TIMEOUT)
        except _PG_ERRORS as exc:
            log.warning("bans: could not read PostgreSQL's bans at start (%s)", type(exc).__name__)
            return
        bans = []
        for r in rows:
            user, channel, ip = r["user_name"], r["channel"], r["ip"]
            scope, key = (("ip", ip) if ip else ("mute", user) if r["kind"] == "mute"
                          else ("channel", channel_key(channel, user)) if channel
                          else ("user", user))
            bans.append(Ban(scope, key, r["reason"], r["expires_at"], r["id"], r["created_at"],
                            r["created_by"]))
        try:
            await self.sync.restore(bans)
        except CacheUnavailable:
            log.warning("bans: Valkey is unavailable; PostgreSQL's bans were not copied to it")


def audit_name(user: Any, ip: Any, channel: Any) -> str:
    """The audit trail's target of a ban: the range, or the user (``in CHANNEL``)."""
    return str(ip) if ip is not None else f"{user}" + (f" in {channel}" if channel else "")


async def ban_recorded(desk: BanDesk, audit: Audit, req: dict[str, Any], by: str | None,
                       mute: bool) -> dict[str, Any]:
    """Ban or mute as ``req`` asks (``user``, ``ip``, ``channel``, ``seconds``, ``reason``),
    ``created_by`` = ``by``, and record it in the audit trail; ``{"ban": ENTRY}``.

    The admin socket's and the HTTP API's ban and mute both come here. Raises as
    :meth:`BanDesk.ban`; nothing is recorded when it raises.
    """
    user, ip, channel = req.get("user"), req.get("ip"), req.get("channel")
    entry = await desk.ban(user, ip, channel, req.get("seconds"), req.get("reason"), by, mute)
    args = {"reason": entry["reason"], "until": entry["until"], "id": entry["id"]}
    if channel is not None:
        args["channel"] = channel
    await audit("mute" if mute else "ban", audit_name(user, ip, channel), args)
    return {"ban": entry}


async def unban_recorded(desk: BanDesk, audit: Audit, req: dict[str, Any], mute: bool
                         ) -> dict[str, Any]:
    """Lift a ban or mute as ``req`` asks and record it; ``{"lifted": bool}`` (False: none
    was in force). Raises as :meth:`BanDesk.unban`."""
    user, ip, channel = req.get("user"), req.get("ip"), req.get("channel")
    result = await desk.unban(user, ip, channel, mute)
    await audit("unmute" if mute else "unban", audit_name(user, ip, channel),
                {"lifted": result["lifted"]} | ({"channel": channel} if channel is not None else {}))
    return result
