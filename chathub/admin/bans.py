"""Ban and mute commands on the admin socket: ban, unban, bans, mute, unmute.

:class:`BanCommands` is part of :class:`~chathub.admin.moderation.ModerationCommands`;
each command asks the operator's :class:`~chathub.bandesk.BanDesk` and records what
it changed in the audit trail. docs/admin-protocol.md is the reader's version.
"""

from __future__ import annotations

from typing import Any

from ..bandesk import ban_recorded, unban_recorded
from .peer import PEER


class BanCommands:
    """``cmd_*`` handlers; need ``self._operator()`` and ``self.record`` (ModerationCommands)."""

    _operator: Any
    record: Any

    async def cmd_ban(self, req: dict[str, Any]) -> dict[str, Any]:
        return await ban_recorded(self._operator().bans, self.record, req, PEER.get().user,
                                  mute=False)

    async def cmd_unban(self, req: dict[str, Any]) -> dict[str, Any]:
        return await unban_recorded(self._operator().bans, self.record, req, mute=False)

    async def cmd_mute(self, req: dict[str, Any]) -> dict[str, Any]:
        return await ban_recorded(self._operator().bans, self.record, req, PEER.get().user,
                                  mute=True)

    async def cmd_unmute(self, req: dict[str, Any]) -> dict[str, Any]:
        return await unban_recorded(self._operator().bans, self.record, req, mute=True)

    async def cmd_bans(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._operator().bans.list()
