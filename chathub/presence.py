"""Who is online, cluster-wide, in Valkey.

Each node keeps ``conns:<node>`` (user → that node's connections); a user is
online while any live node lists them. :meth:`Presence.connect` and
:meth:`disconnect` update it atomically and tell whether this was the user's
first (or last) connection anywhere, which is when ``join`` (or ``leave``) is
due — once for the cluster, not once per hub. The server-side functions also
publish that ``join``/``leave`` to the other hubs (see :mod:`chathub.bus`).
"""

from __future__ import annotations

import time

from .kv import KV


class Presence:
    """Cluster-wide presence for one node. Every method may raise CacheUnavailable."""

    def __init__(self, kv: KV, node_id: str) -> None:
        self.kv = kv
        self.node_id = node_id
        self.prefix = kv.prefix

    async def connect(self, user: str) -> tuple[bool, list[str]]:
        """Count a new connection of ``user``; return (first anywhere, users online)."""
        first, users = await self.kv.call(
            self.kv.client.fcall, "chathub_connect", 0, self.prefix, self.node_id, user,
            int(time.time() * 1000))
        return bool(first), list(users)

    async def disconnect(self, user: str, reason: str) -> bool:
        """Count a closed connection of ``user``; True when it was the last anywhere."""
        last = await self.kv.call(
            self.kv.client.fcall, "chathub_disconnect", 0, self.prefix, self.node_id, user,
            int(time.time() * 1000), reason)
        return bool(last)

    async def users(self) -> list[str]:
        """Everyone online on any node, sorted."""
        return list(await self.kv.call(self.kv.client.fcall, "chathub_users", 0, self.prefix))

    async def resync(self, counts: dict[str, int]) -> None:
        """Replace this node's presence with ``counts`` (user → connections here)."""
        args: list[object] = []
        for user, n in counts.items():
            args += [user, n]
        await self.kv.call(self.kv.client.fcall, "chathub_resync", 0, self.prefix, self.node_id, *args)
