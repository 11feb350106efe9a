"""Ban and mute commands on the admin socket: ban, unban, bans, mute, unmute.

:class:`BanCommands` is part of :class:`~chathub.admin.moderation.ModerationCommands`;
each command asks the operator's :class:`~chathub.bandesk.BanDesk` and records what
it changed in the audit trail. docs/admin-protocol.md is the reader's version.
"""

from __future__ import annotations

from typing import Any

from .peer import PEER


def _target(req: dict[str, Any]) -> tuple[Any, Any, Any]:
    return req.get("user"), req.get("ip"), req.get("channel")


def _name(user: Any, ip: Any, channel: Any) -> str:
    return str(ip) if ip is not None else f"{user}" + (f" in {channel}" if channel else "")


class BanCommands:
    """``cmd_*`` handlers; need ``self._operator()`` and ``self.record`` (ModerationCommands)."""

    _operator: Any
    record: Any

    async def _set(self, req: dict[str, Any], mute: bool) -> dict[str, Any]:

        user, ip, channel = _target(req)
        entry = await self._operator().bans.ban(user, ip, channel, req.get("seconds"),
                                                req.get("reason"), PEER.get().user, mute)
        args = {"reason": entry["reason"], "until": entry["until"], "id": entry["id"]}
        if channel is not None:
            args["channel"] = channel
        await self.record("mute" if mute else "ban", _name(user, ip, channel), args)
        return {"ban": entry}

    async def _lift(self, req: dict[str, Any], mute: bool) -> dict[str, Any]:
        user, ip, channel = _target(req)
        result = await self._operator().bans.unban(user, ip, channel, mute)
        await self.record("unmute" if mute else "unban", _name(user, ip, channel),
                          {"lifted": result["lifted"]}
                          | ({"channel": channel} if channel is not None else {}))
        return result

    async def cmd_ban(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._set(req, mute=False)

    async def cmd_unban(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._lift(req, mute=False)

    async def cmd_mute(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._set(req, mute=True)

    async def cmd_unmute(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._lift(req, mute=True)

    async def cmd_bans(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._operator().bans.list()
