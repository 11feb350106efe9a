"""The HTTP API's moderation verbs: ``kick``, ``ban``, ``unban``, ``mute``, ``unmute``,
``bans`` (docs/api.md).

They check the request's fields (a refusal names the field), then go through the same
code as the admin socket's commands (the cluster kick; :func:`chathub.bandesk.ban_recorded`,
:func:`~chathub.bandesk.unban_recorded` on the node's :class:`~chathub.bandesk.BanDesk`):
applied on every hub, bans recorded in PostgreSQL, everything in the audit trail. The API
key's fingerprint is both ``created_by`` of the entry and ``by_user`` of the audit row.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from .. import protocol
from ..bandesk import BanDesk, ban_recorded, unban_recorded

#: records one action in the audit trail: (action, target, arguments, by_uid, by_user)
Record = Callable[[str, str | None, dict[str, Any], int | None, str | None], Awaitable[Any]]
#: closes a user's connections on every hub, or with a channel takes them out of it:
#: (user, reason, channel) -> how many connections
Kick = Callable[[str, str, str | None], Awaitable[int]]

#: the longest kick reason kept (as the admin socket's); the close frame cuts it further
REASON_MAX = 200


def check_target(args: dict[str, Any], mute: bool) -> None:
    """Check ``user`` | ``ip`` and ``channel`` of a request.

    Raises:
        ValueError: one line naming the field at fault.
    """
    user, ip, channel = args.get("user"), args.get("ip"), args.get("channel")
    if mute:
        if user is None:
            raise ValueError("field 'user' is required (a user name)")
        if ip is not None or channel is not None:
            raise ValueError("a mute takes field 'user' only: it applies everywhere, "
                             "so 'ip' and 'channel' are not accepted")
    elif (user is None) == (ip is None):
        raise ValueError("give field 'user' or field 'ip', not both" if user is not None
                         else "field 'user' or field 'ip' is required")
    if user is not None and not (isinstance(user, str) and protocol.valid_user(user)):
        raise ValueError("field 'user' must be a user name (1-32 of A-Z a-z 0-9 _ - .)")
    if ip is not None:
        try:
            ipaddress.ip_network(str(ip).strip(), strict=False)
            if not isinstance(ip, str):
                raise ValueError
        except ValueError:
            raise ValueError("field 'ip' must be an address or a range like 203.0.113.0/24"
                             ) from None
        if channel is not None:
            raise ValueError("field 'channel' needs field 'user': an address range is "
                             "banned from the whole server")
    if channel is not None and not (isinstance(channel, str)
                                    and protocol.valid_channel(channel)):
        raise ValueError("field 'channel' must be a channel name")


class ApiBans:
    """The moderation verbs for one daemon's API.

    Args:
        desk: the node's ban desk (the admin socket's too).
        record: the audit trail (:meth:`chathub.db.audit.AuditLog.record`).
        kick: the cluster kick (:meth:`chathub.cluster.kick.ClusterKick.kick`).
    """

    def __init__(self, desk: BanDesk, record: Record, kick: Kick) -> None:
        self.desk = desk
        self.record = record
        self.kick_everywhere = kick

    def _audit(self, who: str) -> Callable[[str, str, dict[str, Any]], Awaitable[Any]]:
        return lambda action, target, args: self.record(action, target, args, None, who)

    async def kick(self, args: dict[str, Any], who: str) -> dict[str, Any]:
        """Close ``user``'s connections on every hub (told ``reason``, default "kicked"), or
        with ``channel`` take them out of it (``unsubscribed`` with the reason as
        ``message``, when given); ``{"user", "closed"}``, plus ``channel``.
        Raises ValueError (400)."""
        user, reason, channel = args.get("user"), args.get("reason"), args.get("channel")
        if not isinstance(user, str) or not protocol.valid_user(user):
            raise ValueError("field 'user' is required (a user name)")
        if reason is not None and not isinstance(reason, str):
            raise ValueError("field 'reason' must be a string")
        if channel is not None and not (isinstance(channel, str)
                                        and protocol.valid_channel(channel)):
            raise ValueError("field 'channel' must be a channel name")
        said = (reason or ("" if channel is not None else "kicked"))[:REASON_MAX]
        closed = await self.kick_everywhere(user, said, channel)
        arguments: dict[str, Any] = {"reason": said, "closed": closed}
        out: dict[str, Any] = {"user": user, "closed": closed}
        if channel is not None:
            arguments["channel"] = out["channel"] = channel
        await self.record("kick", user, arguments, None, who)
        return out

    async def ban(self, args: dict[str, Any], who: str) -> dict[str, Any]:
        """Ban ``user`` (in ``channel``) or ``ip`` for ``seconds`` (None: until lifted);
        ``{"ban": ENTRY}``. Raises ValueError (400), TypeError (400), BansUnavailable (503)."""
        check_target(args, mute=False)
        return await ban_recorded(self.desk, self._audit(who), args, who, mute=False)

    async def unban(self, args: dict[str, Any], who: str) -> dict[str, Any]:
        """Lift a ban of ``user`` (in ``channel``) or ``ip``; ``{"lifted": bool}``."""
        check_target(args, mute=False)
        return await unban_recorded(self.desk, self._audit(who), args, mute=False)

    async def mute(self, args: dict[str, Any], who: str) -> dict[str, Any]:
        """Mute ``user`` for ``seconds`` (required); ``{"ban": ENTRY}`` with scope ``mute``."""
        check_target(args, mute=True)
        if args.get("seconds") is None:
            raise ValueError("field 'seconds' is required (a mute needs a duration)")
        return await ban_recorded(self.desk, self._audit(who), args, who, mute=True)

    async def unmute(self, args: dict[str, Any], who: str) -> dict[str, Any]:
        """Lift a mute of ``user``; ``{"lifted": bool}``."""
        check_target(args, mute=True)
        return await unban_recorded(self.desk, self._audit(who), args, mute=True)

    async def bans(self, args: dict[str, Any], who: str) -> dict[str, Any]:
        """Bans and mutes in force: ``{"bans": [ENTRY, ...], "valkey": bool}``."""
        return await self.desk.list()
