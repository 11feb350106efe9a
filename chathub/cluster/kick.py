"""Kicking a user on every hub: a request on the bus, and a count back from each hub.

The hub where the operator asked kicks locally, publishes ``{"k": "kick", ...}``
with a request id, and waits (at most :data:`KICK_REPLY_TIMEOUT`) for one
``kick_reply`` from each other live hub with how many connections it closed.
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
                 kick_local: Callable[[str, str], int]) -> None:
        self.kv = kv
        self.nodes = nodes
        self.node_id = node_id
        self.kick_local = kick_local
        self._replies: dict[str, asyncio.Queue[int]] = {}

    async def kick(self, user: str, reason: str) -> int:
        """Close every connection of ``user`` on every hub; return how many were closed
        (low when a hub did not answer in time; that is logged)."""
        total = self.kick_local(user, reason)
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
            await publish(self.kv, self.node_id, {"k": "kick", "u": user, "r": reason, "q": req})
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
        if kind == "kick":
            n = self.kick_local(str(payload["u"]), str(payload.get("r") or ""))
            spawn(publish(self.kv, self.node_id, {"k": "kick_reply", "q": payload["q"], "c": n}))
            return True
        if kind == "kick_reply":
            q = self._replies.get(str(payload.get("q")))
            if q is not None:
                q.put_nowait(int(payload.get("c") or 0))
            return True
        return False
