"""Moderation commands on the admin socket: search, audit, limits, reload (and, mixed
in, bans and message removal).

:class:`ModerationCommands` is mixed into :class:`~chathub.admin.server.AdminServer`;
its commands ask the daemon's :class:`~chathub.operator.Operator` (through
``control.operator()``). Every command that changes something is recorded in the
audit trail with the Unix user of the socket's peer, read from the accepted
socket with ``SO_PEERCRED`` when the connection opens (:data:`PEER`).
docs/admin-protocol.md is the reader's version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg

from ..db.pool import failure_reason
from ..db.search import SearchQuery, SearchTimeout
from ..errors import CacheUnavailable, ConfigError
from .bans import BanCommands
from .peer import PEER
from .removal import RemovalCommands

if TYPE_CHECKING:
    from ..operator import Operator


class ModerationCommands(BanCommands, RemovalCommands):
    """``cmd_*`` handlers for the moderation commands (and bans and mutes, from
    :mod:`chathub.admin.bans`; delete and purge, from :mod:`chathub.admin.removal`);
    needs ``self.control.operator()``."""

    control: Any

    def _operator(self) -> Operator:
        return self.control.operator()  # type: ignore[no-any-return]

    async def record(self, action: str, target: str | None, arguments: dict[str, Any]) -> None:
        """Record an action asked on this admin connection in the audit trail."""
        peer = PEER.get()
        await self._operator().audit.record(action, target, arguments, peer.uid, peer.user)

    async def cmd_search(self, req: dict[str, Any]) -> dict[str, Any]:
        q = SearchQuery.from_request(req)
        try:
            return await self._operator().search(q)
        except SearchTimeout as exc:
            raise ValueError(str(exc)) from None
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ValueError(f"search needs PostgreSQL, which is unavailable "
                             f"({failure_reason(exc)})") from None

    async def cmd_audit(self, req: dict[str, Any]) -> dict[str, Any]:
        since, limit = req.get("since"), req.get("limit", 100)
        if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
            raise TypeError("field 'since' must be an integer (epoch ms)")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError("field 'limit' must be an integer from 1 to 1000")
        return await self._operator().audit.list(since, limit)

    async def cmd_limits(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._operator().limits.show()

    async def cmd_limits_set(self, req: dict[str, Any]) -> dict[str, Any]:
        values, channel = req["values"], req.get("channel")
        if not isinstance(values, dict):
            raise TypeError("field 'values' must be an object, e.g. {\"chat_rate\": 2}")
        try:
            if channel is None:
                await self._operator().limits.set(values)
            else:  # slow mode (chathub.slowmode)
                budget = await self._operator().slow.set(channel, values)
        except CacheUnavailable:
            raise ValueError("Valkey is unavailable; the limits were not changed") from None
        if channel is None:
            await self.record("limits_set", None, {"values": values})
        else:
            await self.record("limits_set", channel, {"channel": channel, "values": budget})
        return self._operator().limits.show()

    async def cmd_limits_reset(self, req: dict[str, Any]) -> dict[str, Any]:
        channel = req.get("channel")
        try:
            if channel is None:
                await self._operator().limits.reset()
            else:
                was = await self._operator().slow.reset(channel)
        except CacheUnavailable:
            raise ValueError("Valkey is unavailable; the limits were not changed") from None
        if channel is None:
            await self.record("limits_reset", None, {})
        else:
            await self.record("limits_reset", channel, {"channel": channel, "was_slow": was})
        return self._operator().limits.show()

    async def cmd_reload(self, req: dict[str, Any]) -> dict[str, Any]:
        peer = PEER.get()
        try:
            return await self._operator().reload(peer.uid, peer.user)
        except ConfigError as exc:
            raise ValueError(f"configuration not reloaded: {exc}") from None
