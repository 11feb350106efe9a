"""serve(): wiring the daemon together, handling connections, and stopping cleanly.

:class:`Daemon` starts, in order: the embedded services (when no URLs are
configured), Valkey and PostgreSQL clients, the schema check, the message cache,
the flushers, the node watch, the hub, the admin socket, and the WebSocket/HTTP
listener. :meth:`Daemon.stop` undoes it in reverse, so that every open session is
recorded and every message flushed before the services stop. Use :func:`run`
from Python (``await chathub.run(config)``) or ``chathub serve`` from a shell.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from functools import partial
from typing import Any

import asyncpg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from . import __version__, fdlimit, sdnotify
from .admin.server import AdminServer
from .cache import MessageCache
from .cluster.bus import Bus
from .cluster.nodes import CRASHED, NodeWatch, default_node_id
from .cluster.presence import Presence
from .config import Config
from .connection import ConnectionHandler
from .datadir import DataDirLock, claim
from .db import migrate as migrations
from .db import pool as dbpool
from .db import store
from .db.archive import Archive
from .db.flusher import MessageFlusher, SessionFlusher
from .db.sessions import SessionRecorder
from .edge.guard import Guard
from .edge.routes import Admission, Routes, refuse
from .errors import CacheUnavailable, ChathubError, MigrationError
from .hub import Hub
from .keepalive import Keepalive, TrackedConnection
from .kv import KV
from .metrics import Metrics
from .services import EmbeddedPostgres, EmbeddedValkey
from .tasks import spawn

log = logging.getLogger("chathub.server")

#: seconds websockets waits for the peer's close frame before dropping the TCP connection
CLOSE_TIMEOUT = 2.0
#: pending TCP connections the kernel queues before the hub accepts them (asyncio's
#: default of 100 makes a connection storm wait for SYN retries)
LISTEN_BACKLOG = 2048
#: seconds a kick waits for the other hubs to say how many connections they closed
KICK_REPLY_TIMEOUT = 2.0


class Daemon:
    """One chathub process. ``await start()``, then ``await stop()`` (idempotent)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.node_id = cfg.hub.node_id or default_node_id()
        self.pg_service: EmbeddedPostgres | None = None
        self.valkey_service: EmbeddedValkey | None = None
        self.kv: KV | None = None
        self.pool: asyncpg.Pool | None = None
        self.server: Server | None = None
        self.admin: AdminServer | None = None
        #: the data-dir lock, held from the start of :meth:`start` to the end of :meth:`stop`
        self.lock: DataDirLock | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._kick_replies: dict[str, asyncio.Queue[int]] = {}
        self._stopped = asyncio.Event()
        self._stopping = False
        self.started = time.time()
        #: the port actually bound (useful with port 0)
        self.port: int = 0

    # -- start --------------------------------------------------------------------

    async def _services(self) -> tuple[str, str]:
        db_url, kv_url = self.cfg.database.url, self.cfg.valkey.url
        if not kv_url:
            self.valkey_service = EmbeddedValkey(self.cfg.data_dir)
            kv_url = await asyncio.to_thread(self.valkey_service.start)
        if not db_url:
            self.pg_service = EmbeddedPostgres(self.cfg.data_dir)
            db_url = await asyncio.to_thread(self.pg_service.start)
        return db_url, kv_url

    async def _schema(self, db_url: str) -> None:
        conn = await dbpool.connect(db_url, self.cfg.database.timeout)
        try:
            if self.pg_service is not None or self.cfg.database.migrate:
                done = await migrations.migrate(conn)
                for m in done:
                    log.info("applied migration %04d_%s", m.version, m.name)
            else:
                st = await migrations.status(conn)
                if st.pending:
                    raise MigrationError(
                        f"the database schema is behind ({len(st.pending)} pending migrations): "
                        "run 'chathub migrate' or start with --migrate")
        finally:
            await conn.close()

    async def start(self) -> None:
        """Bring everything up; raises a :class:`ChathubError` with one clear line on failure.

        The data-dir lock comes first (:mod:`chathub.datadir`): a daemon that cannot take
        it raises :class:`~chathub.errors.DataDirLocked` having touched nothing.
        """
        self.lock = claim(self.cfg.data_dir)
        cfg = self.cfg
        cfg.server.max_connections = fdlimit.ensure_room(cfg.server.max_connections)
        self.admin = AdminServer(cfg.admin_socket, self)
        self.admin.claim()  # refuse early when another daemon owns the socket
        db_url, kv_url = await self._services()
        await self._schema(db_url)
        self.pool = await dbpool.create_pool(db_url, cfg.database.pool_size, cfg.database.timeout)
        self.kv = KV(kv_url, cfg.valkey.timeout, cfg.valkey.key_prefix)
        await self.kv.connect()
        pool = self.pool
        self.archive = Archive(partial(store.older_public, pool), cfg.cache.history_on_join,
                               self._pg_up)
        self.cache = MessageCache(self.kv, cfg.cache, cfg.ratelimit, self.node_id, self.archive)
        await self.cache.setup()
        self.metrics = Metrics(self)
        self.message_flusher = MessageFlusher(
            self.kv, self.pool, self.cache.stream, self.node_id, cfg.cache.flush_batch,
            cfg.cache.flush_interval, history_size=cfg.cache.history_size)
        self.session_flusher = SessionFlusher(
            self.kv, self.pool, self.kv.key("sessions"), self.node_id, cfg.cache.flush_batch,
            cfg.cache.flush_interval)
        for f in (self.message_flusher, self.session_flusher):
            await f.setup()
            f.on_write = self.metrics.observe_pg_write
            f.on_pg_change = lambda up: self._service_event("postgres", up)
        self.sessions = SessionRecorder(self.kv, self.node_id)
        self.hub = Hub(self.cache, Presence(self.kv, self.node_id), cfg.hub, self.node_id)
        self.hub.fanout.on_fanout = self.metrics.observe_fanout
        self.hub.on_remote = self._on_remote
        self.bus = Bus(self.kv, self.node_id, self.hub.remote, self.hub.resubscribed)
        self.nodes = NodeWatch(self.kv, self.node_id, cfg.hub.node_ttl, lambda: self.hub.connection_count)
        self.nodes.on_reaped = lambda node, users: self.hub.users_left(users, CRASHED)
        self.kv.on_change(lambda up: self._service_event("valkey", up))
        self.kv.on_change(lambda up: self.hub.resync() if up else None)
        self.guard = Guard(cfg)
        self.hub.on_event = self.admin.publish
        await self.nodes.beat()
        for coro in (self.hub.run(), self.message_flusher.run(), self.session_flusher.run(),
                     self.bus.run()):
            self._tasks.append(asyncio.create_task(coro))
        await self.bus.wait_subscribed()
        await self.hub.mark_subscribed()
        self.hub.resync()  # load who is online elsewhere before the first welcome
        await self.nodes.reap()
        await self.cache.warm()  # the first welcomes need no wait for PostgreSQL
        self._tasks.append(asyncio.create_task(self.nodes.run()))
        if cfg.server.ping_interval > 0:
            self.keepalive = Keepalive(self.hub.clients, cfg.server.ping_interval, cfg.server.ping_timeout)
            self._tasks.append(asyncio.create_task(self.keepalive.run()))
        await self.admin.start()
        self.routes = Routes(self._admit, self.health, self.metrics.render)
        guard = self.guard

        class Connection(TrackedConnection):
            on_handshake_timeout = staticmethod(lambda: guard.count_refusal("handshake_timeout"))

        self.connections = ConnectionHandler(cfg, self.node_id, self.hub, self.cache, self.sessions,
                                             self.guard)
        self.server = await serve(
            self.connections.handle, cfg.server.host, cfg.server.port,
            create_connection=Connection,
            process_request=self.routes.process_request,
            compression=None,
            max_size=cfg.server.max_message_bytes,
            ping_interval=None,  # one Keepalive task for all connections instead
            open_timeout=cfg.server.handshake_timeout,
            close_timeout=CLOSE_TIMEOUT,
            server_header=f"chathub/{__version__}",
            reuse_port=cfg.server.reuse_port,
            backlog=LISTEN_BACKLOG,
        )
        sock = next(iter(self.server.sockets))
        self.port = sock.getsockname()[1]
        log.info("chathub %s node %s listening on ws://%s:%d/ws (admin socket %s)",
                 __version__, self.node_id, cfg.server.host, self.port, cfg.admin_socket)

    def _service_event(self, name: str, up: bool) -> None:
        if self.admin is not None:
            self.admin.publish({"type": f"{name}_{'up' if up else 'down'}"})

    # -- connections ----------------------------------------------------------------

    def _admit(self, connection: ServerConnection, request: Request,
               query: dict[str, list[str]]) -> Admission | Response:
        if self._stopping:
            return refuse(503, "the server is shutting down")
        return self.guard.admit(connection, request, query, self.hub.connection_count)

    async def kick(self, user: str, reason: str) -> int:
        """Close every connection of ``user`` on every hub; return how many were closed."""
        total = self.hub.kick(user, reason)
        try:
            others = [n for n in await self.nodes.cluster() if n["node"] != self.node_id]
        except CacheUnavailable:
            return total
        if not others:
            return total
        req = uuid.uuid4().hex
        replies: asyncio.Queue[int] = asyncio.Queue()
        self._kick_replies[req] = replies
        try:
            await self.bus.publish({"k": "kick", "u": user, "r": reason, "q": req})
            deadline = time.monotonic() + KICK_REPLY_TIMEOUT
            for _ in others:
                total += await asyncio.wait_for(replies.get(), max(0.01, deadline - time.monotonic()))
        except (TimeoutError, CacheUnavailable):
            log.warning("kick %s: not every hub answered; the count may be low", user)
        finally:
            del self._kick_replies[req]
        return total

    def _on_remote(self, p: dict[str, Any]) -> None:
        """Kick traffic from other hubs."""
        if p.get("k") == "kick":
            n = self.hub.kick(str(p["u"]), str(p.get("r") or ""))
            spawn(self.bus.publish({"k": "kick_reply", "q": p["q"], "c": n}))
        elif p.get("k") == "kick_reply":
            q = self._kick_replies.get(str(p.get("q")))
            if q is not None:
                q.put_nowait(int(p.get("c") or 0))


    # -- health and stats -------------------------------------------------------------

    def _pg_up(self) -> bool:
        """Whether PostgreSQL answered the flushers' last writes."""
        return self.message_flusher.pg_up and self.session_flusher.pg_up

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(ok, body) for /healthz: the hub, Valkey and PostgreSQL reachable."""
        down = []
        if any(t.done() for t in self._tasks):
            down.append("hub")
        if self.kv is None or not self.kv.up:
            down.append("valkey")
        if not self._pg_up():
            down.append("postgres")
        body: dict[str, Any] = {
            "status": "ok" if not down else "unavailable",
            "connections": self.hub.connection_count,
            "uptime_s": round(time.time() - self.started, 1),
            "node": self.node_id,
        }
        if down:
            body["down"] = down
        return not down, body

    # -- stop ---------------------------------------------------------------------------

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, tell clients, record sessions, flush, stop services."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        deadline = time.monotonic() + self.cfg.server.drain_timeout
        hub: Hub | None = getattr(self, "hub", None)
        started = self.server is not None
        if started:
            log.info("shutting down: closing %d connections", hub.connection_count if hub else 0)
        try:
            if self.server is not None and hub is not None:
                self.server.close(close_connections=False)
                hub.shutdown()
                try:
                    await asyncio.wait_for(self.server.wait_closed(),
                                           max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    log.warning("some connections did not close within the drain timeout")
            if self.kv is not None and hasattr(self, "sessions"):
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
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.admin is not None:
                await self.admin.stop()
            if self.pool is not None:
                await dbpool.close_pool(self.pool)
            if self.kv is not None:
                await self.kv.close()
            await asyncio.to_thread(self._stop_services)
            if self.lock is not None:
                self.lock.release()  # last: everything in the data dir is put away
            self._stopped.set()
            if started:
                log.info("stopped")

    def _stop_services(self) -> None:
        if self.valkey_service is not None:
            self.valkey_service.stop()
        if self.pg_service is not None:
            self.pg_service.stop()


async def run(cfg: Config, *, install_signals: bool = True, ready: asyncio.Event | None = None,
              daemon_box: list[Daemon] | None = None) -> None:
    """Run a daemon until SIGTERM/SIGINT (or cancellation), then stop it gracefully.

    A second signal exits at once. ``ready`` is set once the listener is up;
    ``daemon_box`` receives the :class:`Daemon` (for tests that run it in-process).
    """
    daemon = Daemon(cfg)
    if daemon_box is not None:
        daemon_box.append(daemon)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signals:
        def on_signal() -> None:
            if stop.is_set():
                log.warning("second signal: exiting now")
                import os

                os._exit(1)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
    try:
        await daemon.start()
        if ready is not None:
            ready.set()
        sdnotify.ready(f"listening on {cfg.server.host}:{daemon.port}")
        await stop.wait()
    finally:
        sdnotify.stopping()
        await asyncio.shield(daemon.stop())
