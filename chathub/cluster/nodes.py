"""Node liveness: a heartbeat key with a TTL per hub, and closing out nodes that died.

Every hub process is a *node* with an id (``[hub] node_id``, default
``hostname-pid``). :class:`NodeWatch` refreshes ``node:<id>`` (TTL ``node_ttl``)
and ``nodes[<id>]`` (last time alive, ms) every third of the TTL. It also looks
for nodes whose heartbeat expired — or, on this host, whose process is gone —
and closes out their open sessions atomically (``chathub_reap``), so exactly one
survivor does it, with reason "daemon crashed" and the last time it was alive.

While Valkey is down no hub can beat, so when it comes back every heartbeat may have
expired: a hub reaps nothing for one ``node_ttl`` after its Valkey came back (every
live hub beats within a third of it), and beats at once itself. A hub that finds its
own entry gone from ``nodes`` (reaped all the same, or lost with Valkey's data) says
so through ``on_rejoined``, and its daemon writes its presence again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable

from ..errors import CacheUnavailable
from ..kv import KV
from ..tasks import spawn

log = logging.getLogger("chathub.cluster.nodes")

CRASHED = "daemon crashed"


def default_node_id() -> str:
    """``hostname-pid``: unique per process, and tells this host which pid to check."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _dead_here(node_id: str) -> bool:
    """True when ``node_id`` names a process of this host that no longer runs."""
    host, _, pid = node_id.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class NodeWatch:
    """Heartbeat for this node; close-out of dead ones. Run :meth:`run` as a task."""

    def __init__(self, kv: KV, node_id: str, ttl: float, connections: Callable[[], int],
                 on_reaped: Callable[[str, list[str], list[tuple[str, str]]], None] | None = None,
                 on_rejoined: Callable[[], None] | None = None) -> None:
        """``on_reaped(node, users online nowhere now, (channel, user) pairs it alone held)``
        after a dead node was closed out; ``on_rejoined()`` when a heartbeat found this
        node missing from ``nodes`` (its presence in Valkey is gone too)."""
        self.kv = kv
        self.node_id = node_id
        self.ttl = ttl
        self.connections = connections
        self.nodes_key = kv.key("nodes")
        #: called with (node id, users) after a dead node's sessions were closed out
        self.on_reaped = on_reaped
        self.on_rejoined = on_rejoined
        self.started = int(time.time() * 1000)
        #: monotonic time before which this node reaps nobody (set when Valkey comes back)
        self.quiet_until = 0.0
        #: whether this node has written its entry in ``nodes`` (a first beat adds it anew)
        self._joined = False
        #: whether Valkey went down since this node first reached it
        self._outage = False
        kv.on_change(self._valkey_changed)

    def _valkey_changed(self, up: bool) -> None:
        """Valkey came back after an outage: beat now, and give every other hub a whole TTL
        to beat before reaping any (their heartbeats may have expired meanwhile)."""
        if not up:
            self._outage = True
        elif self._outage:
            self._outage = False
            self.quiet_until = time.monotonic() + self.ttl
            spawn(self._beat_quietly())

    async def _beat_quietly(self) -> None:
        try:
            await self.beat()
        except CacheUnavailable:
            pass  # down again: the next return beats again

    def heartbeat_key(self, node_id: str) -> str:
        return self.kv.key("node", node_id)

    async def beat(self) -> None:
        """Refresh this node's heartbeat."""
        now = int(time.time() * 1000)
        info = json.dumps({"connections": self.connections(), "started": self.started, "last": now})
        pipe = self.kv.client.pipeline(transaction=False)
        pipe.set(self.heartbeat_key(self.node_id), info, px=int(self.ttl * 1000))
        pipe.hset(self.nodes_key, self.node_id, now)
        _, added = await self.kv.call(pipe.execute)
        if added and self._joined:
            log.warning("node %s was missing from the cluster's nodes (reaped, or lost with "
                        "Valkey's data); writing its presence again", self.node_id)
            if self.on_rejoined is not None:
                self.on_rejoined()
        self._joined = True

    async def reap(self) -> dict[str, list[str]]:
        """Close out every dead node; return, by node, the users now online nowhere
        (nothing within a TTL of Valkey coming back: see the module docstring)."""
        if time.monotonic() < self.quiet_until:
            return {}
        nodes = await self.kv.call(self.kv.client.hgetall, self.nodes_key)
        reaped: dict[str, list[str]] = {}
        for node_id in nodes:
            if node_id == self.node_id:
                continue
            if _dead_here(node_id):
                await self.kv.call(self.kv.client.delete, self.heartbeat_key(node_id))
            gone, closed, left = await self.kv.call(
                self.kv.client.fcall, self.kv.fn("reap"), 4, self.kv.key("open", node_id),
                self.heartbeat_key(node_id), self.kv.key("sessions"), self.nodes_key,
                node_id, CRASHED, int(time.time() * 1000), self.kv.prefix, self.node_id)
            if closed < 0:
                continue  # alive
            log.warning("node %s is gone; closed out %d open sessions, %d users left",
                        node_id, closed, len(gone))
            reaped[node_id] = list(gone)
            pairs = [(str(left[i]), str(left[i + 1])) for i in range(0, len(left), 2)]
            if self.on_reaped is not None:
                self.on_reaped(node_id, list(gone), pairs)
        return reaped

    async def cluster(self) -> list[dict[str, object]]:
        """Every live node: id, connections, started, last heartbeat (ms)."""
        nodes = await self.kv.call(self.kv.client.hgetall, self.nodes_key)
        if not nodes:
            return []
        values = await self.kv.call(self.kv.client.mget, [self.heartbeat_key(n) for n in nodes])
        out = []
        for node_id, raw in zip(nodes, values, strict=True):
            if raw:
                out.append({"node": node_id, **json.loads(raw)})
        return sorted(out, key=lambda n: str(n["node"]))

    async def goodbye(self) -> None:
        """Remove this node's heartbeat and presence at a clean stop."""
        pipe = self.kv.client.pipeline(transaction=False)
        # an empty resync takes this node's channel subscriptions out of the member counts
        pipe.fcall(self.kv.fn("resync"), 0, self.kv.prefix, self.node_id, "--")
        pipe.delete(self.heartbeat_key(self.node_id))
        pipe.hdel(self.nodes_key, self.node_id)
        pipe.delete(self.kv.key("conns", self.node_id))
        await self.kv.call(pipe.execute)

    async def run(self) -> None:
        """Beat and reap every third of the TTL, forever (the daemon did the first round
        itself before serving)."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.beat()
                await self.reap()
            except CacheUnavailable:
                pass
            except Exception:
                log.exception("node watch failed; retrying")
