"""The daemon: one chathub process, from its data-dir lock to its last flush.

:class:`Daemon` takes the data-dir lock, claims the admin socket, starts the
embedded services (when no URLs are configured), connects Valkey and PostgreSQL,
checks the schema, then builds and starts a :class:`~chathub.node.Node` (the hub
and everything around it), serves the admin socket and only then opens the
listener: a daemon that answers ``/healthz`` is fully up. :meth:`Daemon.stop` undoes
it in reverse, so that every open session is recorded and every message flushed
before the services stop. Use :func:`run` from Python (``await chathub.run(config)``)
or ``chathub serve`` from a shell.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import signal
import time
from typing import Any

import asyncpg

from . import __version__, fdlimit, protocol, sdnotify
from .admin.server import AdminServer
from .cluster.nodes import default_node_id
from .config import Config
from .datadir import DataDirLock, claim
from .db import migrate as migrations
from .db import pool as dbpool
from .figures import Figures
from .kv import KV
from .listen import host_port, page_url
from .node import Node
from .operator import Operator
from .reload import ConfigSource
from .services import EmbeddedPostgres, EmbeddedValkey
from .tasks import spawn

log = logging.getLogger("chathub.server")


class Daemon:
    """One chathub process. ``await start()``, then ``await stop()`` (idempotent).

    It is the admin socket's :class:`~chathub.admin.server.Control`: what the socket
    asks is answered by the node.
    """

    def __init__(self, cfg: Config, source: ConfigSource | None = None) -> None:
        self.cfg = cfg
        #: where ``cfg`` came from, read again by a reload (None: it cannot be reloaded)
        self.source = source
        self._loaded = copy.deepcopy(cfg)  # as loaded, before start adjusts anything
        self.node_id = cfg.hub.node_id or default_node_id()
        #: the data-dir lock, held from the start of :meth:`start` to the end of :meth:`stop`
        self.lock: DataDirLock | None = None
        #: embedded services this process started (None: external, or not started yet)
        self.pg_service: EmbeddedPostgres | None = None
        self.valkey_service: EmbeddedValkey | None = None
        self.kv: KV | None = None
        self.pool: asyncpg.Pool | None = None
        self.admin = AdminServer(cfg.admin_socket, self)
        #: the hub and its collaborators, once the services are connected
        self.node: Node | None = None
        #: search, audit, live limits and reload, once the node runs
        self._operator: Operator | None = None
        self._stopped = asyncio.Event()
        self._stopping = False

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

    async def start(self) -> None:
        """Bring everything up; raises a :class:`ChathubError` with one clear line on failure.

        The data-dir lock comes first (:mod:`chathub.datadir`): a daemon that cannot take
        it raises :class:`~chathub.errors.DataDirLocked` having touched nothing.
        """
        self.lock = claim(self.cfg.data_dir)
        cfg = self.cfg
        cfg.server.max_connections = fdlimit.ensure_room(cfg.server.max_connections)
        self.admin.claim()  # refuse early when another daemon owns the socket
        db_url, kv_url = await self._services()
        await migrations.prepare(db_url, cfg.database.timeout,
                                 self.pg_service is not None or cfg.database.migrate)
        self.pool = await dbpool.create_pool(db_url, cfg.database.pool_size, cfg.database.timeout)
        self.kv = KV(kv_url, cfg.valkey.timeout, cfg.valkey.key_prefix)
        await self.kv.connect()
        self.node = Node(cfg, self.node_id, self.kv, self.pool, self.admin.publish)
        await self.node.start()
        self._operator = Operator(cfg, self.node, self.source, self._loaded)
        await self._operator.start()
        # the admin socket before the listener: once /healthz answers, so does the socket
        await self.admin.start()
        await self.node.listen()
        log.info("chathub %s node %s listening on ws://%s/ws; the browser page is %s "
                 "(admin socket %s)", __version__, self.node_id,
                 host_port(cfg.server.host, self.port), page_url(cfg.server.host, self.port),
                 cfg.admin_socket)

    @property
    def port(self) -> int:
        """The port the listener bound (0 before :meth:`start`)."""
        return self.node.port if self.node is not None else 0

    # -- what the admin socket asks (chathub.admin.server.Control) ----------------------

    def _running(self) -> Node:
        if self.node is None:
            raise RuntimeError("the daemon is not started")
        return self.node

    def figures(self) -> Figures:
        return self._running().figures()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(ok, body) for /healthz."""
        return self.figures().health()

    def clients(self) -> list[dict[str, Any]]:
        return [c.info() for c in self._running().hub.clients()]

    async def kick(self, user: str, reason: str, channel: str | None = None) -> int:
        """Close every connection of ``user`` on every hub (with ``channel``: take them
        out of it); return how many connections."""
        return await self._running().kicker.kick(user, reason, channel)

    async def cluster(self) -> list[dict[str, Any]]:
        return await self._running().nodes.cluster()

    async def shared_figures(self) -> dict[str, Any]:
        return await self._running().shared_figures()

    async def create_channel(self, name: str, private: bool, by: str) -> str:
        return await self._running().hub.create_channel(name, private, by)

    async def channels(self) -> list[tuple[str, int, bool]]:
        return await self._running().hub.presence.channels(private=True)

    async def channel_figures(self, names: list[str]) -> dict[str, dict[str, Any]]:
        return await self._running().directory.figures(names)

    async def channel(self, name: str, recent: int) -> dict[str, Any] | None:
        node = self._running()
        kind = await node.directory.kind(name)
        if kind is None:
            return None
        history = await node.cache.recent(name, recent)
        return {"name": name, "private": kind == "private",
                "members": await node.hub.presence.members(name),
                "messages": [json.loads(protocol.encode(m)) for m in history.messages]}

    async def delete_channel(self, name: str, force: bool) -> dict[str, Any]:
        node = self._running()
        if name in self.cfg.channels.auto_join:
            return {"result": "auto_join"}
        if await node.directory.kind(name) is None:
            return {"result": "unknown"}
        members = await node.hub.presence.members(name)
        if members and not force:
            return {"result": "members", "members": members}
        moved = await node.kicker.clear(name) if members else 0
        await node.directory.delete(name)
        return {"result": "deleted", "unsubscribed": moved}

    def operator(self) -> Operator:
        """Search, audit, limits and reload (chathub.admin.moderation)."""
        if self._operator is None:
            raise RuntimeError("the daemon is not started")
        return self._operator

    async def reload(self, by_user: str = "SIGHUP") -> None:
        """Reload the configuration (SIGHUP); a failure is logged and changes nothing."""
        try:
            await self.operator().reload(None, by_user)
        except Exception as exc:
            log.error("reload failed; the configuration is unchanged: %s", exc)

    # -- stop ---------------------------------------------------------------------------

    async def stop(self) -> None:
        """Graceful shutdown: the node first (clients, sessions, flush), then the admin
        socket, the clients of Valkey and PostgreSQL, the embedded services, the lock."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        deadline = time.monotonic() + self.cfg.server.drain_timeout
        started = self.node is not None and self.node.server is not None
        try:
            if self.node is not None:
                await self.node.stop(deadline)
        finally:
            if self._operator is not None:
                await self._operator.stop(deadline)
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
              daemon_box: list[Daemon] | None = None, source: ConfigSource | None = None) -> None:
    """Run a daemon until SIGTERM/SIGINT (or cancellation), then stop it gracefully.

    A second signal exits at once; SIGHUP reloads the configuration from ``source``.
    ``ready`` is set once the listener is up; ``daemon_box`` receives the
    :class:`Daemon` (for tests that run it in-process).
    """
    daemon = Daemon(cfg, source)
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
        loop.add_signal_handler(
            signal.SIGHUP, lambda: spawn(daemon.reload()) if daemon.node is not None else
            log.warning("SIGHUP before the daemon started: ignored"))
    try:
        await daemon.start()
        if ready is not None:
            ready.set()
        sdnotify.ready(f"listening on {host_port(cfg.server.host, daemon.port)}")
        await stop.wait()
    finally:
        sdnotify.stopping()
        await asyncio.shield(daemon.stop())
