"""Kicking a user on every hub: a request on the bus, and a count back from each hub.

The hub where the operator asked kicks locally, publishes ``{"k": "kick", ...}``
with a request id, and waits (at most :data:`KICK_REPLY_TIMEOUT`) for one
``kick_reply`` from each other live hub with how many connections it closed.

A kick that names a channel (``"c"``) takes the user out of that channel instead
of closing their connections; ``{"k": "clear", "c": ...}`` takes everyone out of a
channel that is being deleted. Both are answered with ``kick_reply`` the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import CacheUnavailable
from ..kv import KV
from ..tasks import spawn
from .bus import publish
from .nodes import NodeWatch

log = logging.getLogger("chathub.cluster.kick")

#: seconds a kick waits for the other hubs to say how many connections they closed
KICK_REPLY_TIMEOUT = 2.0


class ClusterKick:
    """Kicks across the cluster for one hub.

    Args:
        kv: publishes requests and replies on the bus channel.
        nodes: which other hubs are alive (how many replies to wait for).
        node_id: this hub.
        kick_local: closes a user's connections on this hub; returns how many.
    """

    def __init__(self, kv: KV, nodes: NodeWatch, node_id: str,
                 kick_local: Callable[[str, str], int],
                 kick_from: Callable[[str, str, str], int] = lambda _u, _c, _r: 0,
                 clear_local: Callable[[str], int] = lambda _c: 0) -> None:
        """``kick_from(user, channel, reason)`` takes a user out of a channel on this hub and
        ``clear_local(channel)`` everyone; each returns how many connections it moved."""
        self.kv = kv
        self.nodes = nodes
        self.node_id = node_id
        self.kick_local = kick_local
        self.kick_from = kick_from
        self.clear_local = clear_local
        self._replies: dict[str, asyncio.Queue[int]] = {}

    async def kick(self, user: str, reason: str, channel: str | None = None) -> int:
        """Close every connection of ``user`` on every hub (or, with ``channel``, take
        them out of it); return how many connections (low when a hub did not answer in
        time; that is logged)."""
        if channel is not None:
            return await self._ask(self.kick_from(user, channel, reason),
                                   {"k": "kick", "u": user, "r": reason, "c": channel})
        return await self._ask(self.kick_local(user, reason), {"k": "kick", "u": user, "r": reason})

    async def clear(self, channel: str) -> int:
        """Take every connection on every hub out of ``channel``; how many."""
        return await self._ask(self.clear_local(channel), {"k": "clear", "c": channel})

    async def _ask(self, total: int, request: dict[str, Any]) -> int:
        """Publish ``request`` to the other hubs and add up their counts to ``total``."""
        user = request.get("u") or request.get("c")
        try:
            others = [n for n in await self.nodes.cluster() if n["node"] != self.node_id]
        except CacheUnavailable:
            return total
        if not others:
            return total
        req = uuid.uuid4().hex
        replies: asyncio.Queue[int] = asyncio.Queue()
        self._replies[req] = replies
        try:
            await publish(self.kv, self.node_id, {**request, "q": req})
            deadline = time.monotonic() + KICK_REPLY_TIMEOUT
            for _ in others:
                total += await asyncio.wait_for(replies.get(), max(0.01, deadline - time.monotonic()))
        except (TimeoutError, CacheUnavailable):
            log.warning("kick %s: not every hub answered; the count may be low", user)
        finally:
            del self._replies[req]
        return total

    def receive(self, payload: dict[str, Any]) -> bool:
        """Handle kick traffic from another hub; False for any other payload."""
        kind = payload.get("k")
        if kind in ("kick", "clear"):
            channel = payload.get("c")
            if kind == "clear":
                n = self.clear_local(str(channel))
            elif channel is not None:
                n = self.kick_from(str(payload["u"]), str(channel), str(payload.get("r") or ""))
            else:
                n = self.kick_local(str(payload["u"]), str(payload.get("r") or ""))
            spawn(publish(self.kv, self.node_id, {"k": "kick_reply", "q": payload["q"], "c": n}))
            return True
        if kind == "kick_reply":
            q = self._replies.get(str(payload.get("q")))
            if q is not None:
                q.put_nowait(int(payload.get("c") or 0))
            return True
        return False
