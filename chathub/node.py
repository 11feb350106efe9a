"""Node: everything one hub runs once Valkey and PostgreSQL are connected, wired in one place.

Read :meth:`Node.__init__` to see where every event and every page goes: each
collaborator is built here and handed to the ones that use it, in their
constructors. :meth:`Node.start` sets up the streams, starts the background tasks
and opens the listener; :meth:`Node.stop` undoes it so that every open session is
recorded and every message flushed. The process around it (lock, embedded
services, admin socket) is :class:`chathub.server.Daemon`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import asyncpg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from . import __version__
from .bandesk import BanDesk
from .bans import Ban, BanSync
from .cache import MessageCache
from .cluster.bus import Bus
from .cluster.directory import ChannelDirectory
from .cluster.kick import ClusterKick
from .cluster.nodes import CRASHED, NodeWatch
from .cluster.presence import Presence
from .config import Config
from .connection import ConnectionHandler
from .db import store
from .db.archive import Archive
from .db.audit import AuditLog
from .db.flusher import MessageFlusher, SessionFlusher
from .db.health import PostgresProbe
from .db.sessions import SessionRecorder
from .edge.api import Api
from .edge.guard import Guard
from .edge.routes import Admission, Routes, refuse
from .errors import CacheUnavailable, ChathubError
from .figures import Figures
from .hub import Hub
from .keepalive import Keepalive
from .keys import Keys
from .kv import KV
from .limits import LiveLimits, rebuild_filters
from .listen import cannot_listen
from .metrics import Metrics
from .removal import MessageRemoval
from .slowmode import SlowMode
from .tasks import spawn
from .wsconnection import TrackedConnection

log = logging.getLogger("chathub.node")

#: seconds the background tasks get to end once cancelled (they end at once unless one is
#: stuck: stopping goes on without it, and the log names it)
STOP_TASKS_TIMEOUT = 5.0

#: seconds websockets waits for the peer's close frame before dropping the TCP connection
CLOSE_TIMEOUT = 2.0
#: pending TCP connections the kernel queues before the hub accepts them (asyncio's
#: default of 100 makes a connection storm wait for SYN retries)
LISTEN_BACKLOG = 2048
#: seconds to wait for the bus's first subscription at start
SUBSCRIBE_TIMEOUT = 5.0


class Node:
    """One hub and its collaborators.

    Args:
        cfg: the whole configuration.
        node_id: this hub's name in the cluster.
        kv: a connected Valkey client.
        pool: a PostgreSQL pool.
        publish: where admin events go (the admin socket's subscribers); must not block.
    """

    def __init__(self, cfg: Config, node_id: str, kv: KV, pool: asyncpg.Pool,
                 publish: Callable[[dict[str, Any]], None]) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.kv = kv
        self.pool = pool
        self.publish = publish
        self.started = time.time()
        #: set once :meth:`stop` began: new upgrades are refused with 503
        self.stopping = False
        self.metrics = Metrics(self.figures)
        self.message_flusher = MessageFlusher(
            kv, pool, Keys(kv.prefix).queue, node_id, cfg.cache.flush_batch, cfg.cache.flush_interval,
            history_size=cfg.cache.history_size, on_write=self.metrics.observe_pg_write,
            on_pg_change=self._pg_changed)
        self.session_flusher = SessionFlusher(
            kv, pool, kv.key("sessions"), node_id, cfg.cache.flush_batch, cfg.cache.flush_interval,
            on_write=self.metrics.observe_pg_write,
            on_pg_change=self._pg_changed)
        #: PostgreSQL's health between writes (down within a second, slow)
        self.pg_probe = PostgresProbe(pool, self._pg_changed)
        self._pg_reported = True
        self.archive = Archive(partial(store.older_public, pool), cfg.cache.history_on_join,
                               self.postgres_up)
        #: the channels in slow mode (chathub limits set --channel), read by the cache
        self.slow = SlowMode(kv, node_id)
        self.cache = MessageCache(kv, cfg.cache, cfg.ratelimit, node_id, self.archive, cfg.channels,
                                  slow=self.slow.active)
        self.sessions = SessionRecorder(kv, node_id)
        #: bans and mutes every hub enforces from memory (chathub ban / mute)
        self.bans = BanSync(kv, node_id, self._enforce_ban, self._ban_lifted)
        self.bus = Bus(kv, node_id, self._from_bus, self._bus_back,
                       on_watching=self._bus_watching, on_dropped=self._bus_dropped)
        self.hub = Hub(self.cache, Presence(kv, node_id), cfg.hub, node_id,
                       channels=cfg.channels, watch=self.bus.watch, unwatch=self.bus.unwatch,
                       on_event=publish, on_fanout=self.metrics.observe_fanout,
                       bans=self.bans.active)
        self.nodes = NodeWatch(kv, node_id, cfg.hub.node_ttl, lambda: self.hub.connection_count,
                               on_reaped=lambda _node, gone, left: self.hub.users_left(
                                   left, gone, CRASHED),
                               on_rejoined=self.hub.resync)
        self.kicker = ClusterKick(kv, self.nodes, node_id, self.hub.kick, self.hub.kick_from,
                                  self.hub.clear_channel)
        #: channel figures and deletion in Valkey (the admin socket's channel commands)
        self.directory = ChannelDirectory(kv)
        self.guard = Guard(cfg, self.bans.active)
        #: rate budgets and flood filter, with the override every hub shares (chathub limits)
        self.limits = LiveLimits(kv, node_id, cfg, on_flood=lambda: rebuild_filters(self.guard),
                                 channels=self.slow)
        self.keepalive = (Keepalive(self.hub.clients, cfg.server.ping_interval,
                                    cfg.server.ping_timeout)
                          if cfg.server.ping_interval > 0 else None)
        #: the audit trail (its writer is run by chathub.operator.Operator)
        self.audit = AuditLog(kv, pool, node_id, cfg.cache.flush_batch, cfg.cache.flush_interval)
        #: the HTTP API under /api/v1/ (docs/api.md)
        #: chathub delete / purge and the API's verbs (chathub.removal)
        self.removal = MessageRemoval(pool, self.cache, self.archive, self.hub.remote)
        #: chathub ban / mute and the API's ban verbs: PostgreSQL, then every hub
        self.bandesk = BanDesk(pool, self.bans)
        self.api = Api(cfg, self.hub, self.guard, kv, self.kicker.kick, self.removal,
                       self.bandesk, self.audit.record, self.metrics.registry)
        self.routes = Routes(self._admit, lambda: self.figures().health(), self.metrics.render,
                             self.api.handle)
        self.connections = ConnectionHandler(cfg, node_id, self.hub, self.cache, self.sessions,
                                             self.guard)
        kv.on_change(partial(self._service_changed, "valkey"))
        kv.on_change(lambda up: self.hub.resync() if up else None)
        kv.on_change(lambda up: spawn(self.limits.refresh()) if up else None)
        kv.on_change(lambda up: spawn(self.bans.refresh()) if up else None)
        #: the listener, once :meth:`start` opened it
        self.server: Server | None = None
        #: the port actually bound (useful with port 0)
        self.port = 0
        self._tasks: list[asyncio.Task[Any]] = []

    # -- wiring ---------------------------------------------------------------------

    def _from_bus(self, payload: dict[str, Any]) -> None:
        """A bus payload: kick traffic to the kicker, the rest to the hub, in order."""
        if payload.get("k") == "del":  # removed messages leave the cached archive pages too
            self.archive.forget(payload.get("c"), [str(i) for i in payload.get("ids") or ()])
        if (not self.kicker.receive(payload) and not self.limits.receive(payload)
                and not self.bans.receive(payload)):
            self.hub.remote(payload)

    def _enforce_ban(self, ban: Ban) -> None:
        self.hub.enforcement.enforce_ban(ban)

    def _ban_lifted(self, scope: str, key: str) -> None:
        self.hub.enforcement.ban_lifted(scope, key)

    def _bus_back(self) -> None:
        self.hub.resubscribed()

    def _bus_watching(self, channel: str) -> None:
        self.hub.watching(channel)

    def _bus_dropped(self, channel: str) -> None:
        self.hub.dropped(channel)

    def _service_changed(self, name: str, up: bool) -> None:
        self.publish({"type": f"{name}_{'up' if up else 'down'}"})

    def _admit(self, connection: ServerConnection, request: Request,
               query: dict[str, list[str]]) -> Admission | Response:
        if self.stopping:
            return refuse(503, "the server is shutting down")
        return self.guard.admit(connection, request, query, self.hub.connection_count)

    # -- figures ----------------------------------------------------------------------

    def postgres_up(self) -> bool:
        """Whether PostgreSQL answered the last probe and took the flushers' last writes."""
        return self.pg_probe.up and self.message_flusher.pg_up and self.session_flusher.pg_up

    def _pg_changed(self, _up: bool) -> None:
        up = self.postgres_up()
        if up != self._pg_reported:
            self._pg_reported = up
            self._service_changed("postgres", up)

    def figures(self) -> Figures:
        """This node's figures now; see :mod:`chathub.figures`."""
        hub = self.hub
        return Figures(
            node=self.node_id, uptime_s=round(time.time() - self.started, 1),
            connections=hub.connection_count, users=len(hub.users()),
            broadcast_queue=hub.fanout.broadcasts_waiting, whisper_queue=hub.fanout.whispers_waiting,
            inbox=hub.inbox_depth(), max_backlog=hub.max_backlog(),
            hub_running=not any(t.done() for t in self._tasks), valkey_up=self.kv.up,
            postgres_up=self.postgres_up(),
            postgres_slow=self.pg_probe.up and self.pg_probe.slow,
            postgres_round_trip_s=self.pg_probe.round_trip, sessions_unsent=len(self.sessions.unsent),
            bus_resubscribes=self.bus.resubscribes, messages_flushed=self.message_flusher.written,
            sessions_written=self.session_flusher.written, refusals=dict(self.guard.refusals),
            channels=len(hub.subs), subscriptions=hub.subs.count, stats=hub.stats)

    async def shared_figures(self) -> dict[str, Any]:
        """Figures Valkey keeps for the whole cluster (None where Valkey is down)."""
        out: dict[str, Any] = {"flush_backlog": None, "rate_limit_hits_cluster": None}
        try:
            out["flush_backlog"] = await self.cache.flush_backlog()
            out["rate_limit_hits_cluster"] = (await self.cache.rate_limit_hits())[0]
        except CacheUnavailable:
            pass
        out["sessions_waiting"] = await self.sessions.waiting()
        return out

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Set up the streams and start the background tasks; :meth:`listen` then opens
        the listener (the daemon opens its admin socket in between, so that a daemon
        answering ``/healthz`` answers on its admin socket too)."""
        await self.cache.setup()
        await self.limits.refresh()  # an override set earlier applies from the first message
        await self.bans.refresh()  # and bans from the first upgrade
        for flusher in (self.message_flusher, self.session_flusher):
            await flusher.setup()
        await self.nodes.beat()
        for coro in (self.hub.run(), self.message_flusher.run(), self.session_flusher.run(),
                     self.bus.run(), self.pg_probe.run()):
            self._tasks.append(asyncio.create_task(coro))
        await self.bus.wait_subscribed(SUBSCRIBE_TIMEOUT)
        await self.hub.mark_subscribed()
        self.hub.resync()  # load who is online elsewhere before the first welcome
        await self.nodes.reap()
        await self.cache.warm()  # the first welcomes need no wait for PostgreSQL
        self._tasks.append(asyncio.create_task(self.nodes.run()))
        self._tasks.append(asyncio.create_task(self.limits.run()))
        self._tasks.append(asyncio.create_task(self.bans.run()))
        if self.keepalive is not None:
            self._tasks.append(asyncio.create_task(self.keepalive.run()))

    async def listen(self) -> None:
        """Open the listener (after :meth:`start`); :attr:`port` is the port it bound."""
        cfg = self.cfg
        try:
            self.server = await self._serve()
        except OSError as exc:  # a port in use or privileged, a host that is not here
            raise cannot_listen(cfg.server.host, cfg.server.port, exc) from None
        self.port = next(iter(self.server.sockets)).getsockname()[1]

    async def _serve(self) -> Server:
        cfg = self.cfg
        return await serve(
            self.connections.handle, cfg.server.host, cfg.server.port,
            create_connection=partial(TrackedConnection,
                                      on_handshake_timeout=self.guard.count_handshake_timeout,
                                      on_body_too_large=self.api.metrics.body_too_large,
                                      max_body=cfg.api.max_body,
                                      backlog_limit=cfg.hub.client_queue_limit,
                                      max_frames_per_second=cfg.server.max_frames_per_second),
            process_request=self.routes.process_request,
            compression=None,  # frames are built once for every recipient (framing.py)
            max_size=cfg.server.max_message_bytes,
            ping_interval=None,  # one Keepalive task for all connections instead
            open_timeout=cfg.server.handshake_timeout,
            close_timeout=CLOSE_TIMEOUT,
            server_header=f"chathub/{__version__}",
            reuse_port=cfg.server.reuse_port,
            backlog=LISTEN_BACKLOG,
        )

    async def stop(self, deadline: float) -> None:
        """Stop accepting, tell clients, record sessions, flush (until ``deadline``, a
        ``time.monotonic()`` value), then stop the background tasks. Idempotent."""
        self.stopping = True
        try:
            if self.server is not None:
                log.info("shutting down: closing %d connections", self.hub.connection_count)
                self.server.close(close_connections=False)
                self.hub.shutdown()
                try:
                    await asyncio.wait_for(self.server.wait_closed(),
                                           max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    log.warning("some connections did not close within the drain timeout")
            await self.sessions.resend()
            await self.message_flusher.drain(deadline)
            await self.session_flusher.drain(deadline)
            await self.sessions.last_resort(self.pool)
            try:
                await self.nodes.goodbye()
            except ChathubError:
                pass
        finally:
            for t in self._tasks:
                t.cancel()
            if self._tasks:
                # A background task must end when cancelled; one that does not is a bug,
                # named here, and must not keep the daemon from stopping.
                _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TASKS_TIMEOUT)
                for t in stuck:
                    log.error("stopping: a background task did not end when cancelled: %r",
                              t.get_coro())
            self._tasks.clear()
