"""Message removal on the admin socket: delete, purge.

:class:`RemovalCommands` is part of :class:`~chathub.admin.moderation.ModerationCommands`;
each command asks the node's :class:`~chathub.removal.MessageRemoval`, records what
it did in the audit trail (actions ``delete`` and ``purge``), and pushes a ``delete``
event to this socket's subscribers. docs/admin-protocol.md is the reader's version.
"""

from __future__ import annotations

from typing import Any

from .peer import PEER


class RemovalCommands:
    """``cmd_*`` handlers; need ``self._operator()``, ``self.record`` and ``self.publish``."""

    _operator: Any
    record: Any
    publish: Any

    def _announce(self, channel: str | None, ids: list[str], by: str | None) -> None:
        if ids:
            self.publish({"type": "delete", "channel": channel, "ids": ids, "by": by})

    async def cmd_delete(self, req: dict[str, Any]) -> dict[str, Any]:
        mid, channel = req["msg"], req.get("channel")
        by = PEER.get().user
        out = await self._operator().node.removal.delete(mid, channel, by or "admin")
        await self.record("delete", out["msg"], {"channel": out["channel"],
                                                 "deleted": out["deleted"]})
        if out["deleted"]:
            self._announce(out["channel"], [out["msg"]], by)
        return out

    async def cmd_purge(self, req: dict[str, Any]) -> dict[str, Any]:
        user, seconds, channel = req["user"], req["seconds"], req.get("channel")
        by = PEER.get().user
        out = await self._operator().node.removal.purge(user, seconds, channel, by or "admin")
        args: dict[str, Any] = {"seconds": seconds, "deleted": out["deleted"], "ids": out["ids"]}
        if channel is not None:
            args["channel"] = channel
        await self.record("purge", user, args)
        for ch, ids in out["by_channel"].items():
            self._announce(ch, ids, by)
        return {"user": out["user"], "deleted": out["deleted"], "ids": out["ids"]}
