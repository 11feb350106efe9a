"""Figures: one snapshot of what operators read, filled by the daemon, read by everyone.

The admin socket's ``stats``, ``/metrics`` and ``/healthz`` all read a
:class:`Figures` made by one function (:meth:`chathub.server.Daemon.figures`),
so "is PostgreSQL up" and every other figure is computed in one place and none
of them reaches into the hub or the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .stats import HubStats


@dataclass(frozen=True, slots=True)
class Figures:
    """This node's figures at one moment. Counters are totals since start."""

    node: str
    #: seconds since the daemon started
    uptime_s: float
    connections: int
    #: users with a connection on this node
    users: int
    #: broadcasts and whispers waiting for fan-out, events waiting for the hub loop
    broadcast_queue: int
    whisper_queue: int
    inbox: int
    #: the largest outgoing backlog of one client, bytes
    max_backlog: int
    #: whether the hub loop and the daemon's background tasks are all running
    hub_running: bool
    valkey_up: bool
    #: whether the flushers' last writes reached PostgreSQL
    postgres_up: bool
    #: finished sessions held in memory while Valkey is down
    sessions_unsent: int
    bus_resubscribes: int
    messages_flushed: int
    sessions_written: int
    #: refused upgrades by reason
    refusals: dict[str, int]
    #: PostgreSQL answers, but a probe took longer than chathub.db.health.SLOW_AFTER
    postgres_slow: bool = False
    #: seconds the last PostgreSQL probe took (None before the first answer)
    postgres_round_trip_s: float | None = None
    #: channels with at least one subscriber on this node, and subscriptions here
    channels: int = 0
    subscriptions: int = 0
    #: the hub's counters (messages, deliveries, errors, closes, ...)
    stats: HubStats = field(default_factory=HubStats)

    def down(self) -> list[str]:
        """What is not working: a subset of ``["hub", "valkey", "postgres"]``."""
        return [name for name, ok in (("hub", self.hub_running), ("valkey", self.valkey_up),
                                      ("postgres", self.postgres_up)) if not ok]

    def health(self) -> tuple[bool, dict[str, object]]:
        """(ok, body) for ``/healthz``: 200 with ``status: ok``, or 503 naming what is down;
        a slow PostgreSQL is named under ``slow`` with 200 (chat works; history pages past
        the stream and the flush lag)."""
        down = self.down()
        body: dict[str, object] = {"status": "ok" if not down else "unavailable",
                                   "connections": self.connections, "uptime_s": self.uptime_s,
                                   "node": self.node}
        if down:
            body["down"] = down
        if self.postgres_slow:
            body["slow"] = ["postgres"]
        return not down, body
