"""The admin socket: newline-delimited JSON over a Unix socket (mode 0600).

Requests are ``{"id": N, "cmd": "...", ...}``; each gets one reply
``{"id": N, "ok": true, ...}`` or ``{"id": N, "ok": false, "error": "..."}``.
``subscribe`` then pushes ``{"event": "stats", ...}`` every second and other
events as they happen. docs/admin-protocol.md is the reader's version.

A subscriber that stops reading cannot slow the hub: events go through a bounded
per-connection queue and are dropped (and counted) when it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import __version__
from ..errors import CacheUnavailable, ServiceError
from ..figures import Figures
from ..protocol import valid_channel, valid_user
from .channels import ChannelCommands, ChannelRates
from .moderation import ModerationCommands
from .peer import PEER, peer_of

if TYPE_CHECKING:
    from ..operator import Operator

log = logging.getLogger("chathub.admin")

ADMIN_PROTOCOL_VERSION = 4
#: events a subscriber may have waiting before new ones are dropped
SUBSCRIBER_QUEUE = 1000
#: seconds between pushed stats snapshots
STATS_PERIOD = 1.0
#: longest request line accepted, bytes
MAX_LINE = 64 * 1024


class Control(Protocol):
    """What the admin socket may ask of the daemon; :class:`chathub.server.Daemon` is one.

    A test can serve the admin protocol from fixed figures with its own ``Control``.
    """

    node_id: str

    def figures(self) -> Figures:
        """This node's figures now (no I/O)."""
        ...

    def clients(self) -> list[dict[str, Any]]:
        """Every connection on this node, as the ``clients`` reply lists them."""
        ...

    async def kick(self, user: str, reason: str, channel: str | None = None) -> int:
        """Close ``user``'s connections on every hub, or with ``channel`` take them out of
        it (``unsubscribed``, reason ``kicked``); how many connections."""
        ...

    async def cluster(self) -> list[dict[str, Any]]:
        """Every live hub. Raises :class:`~chathub.errors.CacheUnavailable`."""
        ...

    async def create_channel(self, name: str, private: bool, by: str) -> str:
        """Create a channel: "ok", "exists" or "full"."""
        ...

    async def channels(self) -> list[tuple[str, int, bool]]:
        """Every channel, private ones too: (name, members, private)."""
        ...

    async def channel_figures(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """For each channel: ``history`` (Valkey stream length) and ``nodes`` (node ->
        subscriptions there). Raises :class:`~chathub.errors.CacheUnavailable`."""
        ...

    async def channel(self, name: str, recent: int) -> dict[str, Any] | None:
        """One channel: ``name``, ``private``, ``members`` (every hub), ``messages`` (the
        newest ``recent``, oldest first); None when there is no such channel."""
        ...

    async def delete_channel(self, name: str, force: bool) -> dict[str, Any]:
        """Delete a channel: ``result`` is "deleted" (with ``unsubscribed``), "unknown",
        "auto_join" (refused), or "members" (refused without ``force``; with ``members``)."""
        ...

    async def shared_figures(self) -> dict[str, Any]:
        """Figures kept in Valkey for the whole cluster: ``flush_backlog``,
        ``rate_limit_hits_cluster``, ``sessions_waiting`` (None when Valkey is down)."""
        ...

    def operator(self) -> Operator:
        """Search, audit, live limits and reload (:mod:`chathub.admin.moderation`)."""
        ...


class AdminServer(ModerationCommands, ChannelCommands):
    """Serves the admin protocol for one daemon (``control``); the moderation commands
    (search, audit, limits, reload) are in :mod:`chathub.admin.moderation`, the channel
    commands in :mod:`chathub.admin.channels`."""

    def __init__(self, path: Path, control: Control) -> None:
        self.path = Path(path)
        self.control = control
        self._server: asyncio.AbstractServer | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._conns: set[asyncio.Task[Any]] = set()
        #: events dropped because a subscriber did not keep up
        self.dropped = 0
        #: (st_dev, st_ino) of the socket file this server bound; only that file is removed
        self._bound: tuple[int, int] | None = None
        self._rate: list[tuple[float, int, int]] = []
        #: messages per minute per channel, from the samples :meth:`watch_channels` takes
        self.rates = ChannelRates()
        self._watcher: asyncio.Task[None] | None = None

    def claim(self) -> None:
        """Refuse when another daemon answers on the socket; remove a stale one.

        Raises:
            ServiceError: another daemon is running on this socket.
        """
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(str(self.path))
            except OSError:
                log.info("removing stale admin socket %s", self.path)
                self.path.unlink(missing_ok=True)
                return
        raise ServiceError(f"another chathub daemon is running on admin socket {self.path}")

    async def start(self) -> None:
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self._bound = (st.st_dev, st.st_ino)
        self._watcher = asyncio.create_task(self.watch_channels())

    async def stop(self) -> None:
        """Stop serving and remove the socket file, if it is still the one this server bound.

        A server that never started (its daemon refused to run) removes nothing.
        """
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if self._bound is not None:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._bound:
                    self.path.unlink()
            except FileNotFoundError:
                pass
            self._bound = None

    def publish(self, event: dict[str, Any]) -> None:
        """Push an event to every subscriber; never blocks."""
        if not self._subscribers:
            return
        event = {"event": event["type"], "ts": int(time.time() * 1000),
                 **{k: v for k, v in event.items() if k != "type"}}
        for q in self._subscribers:
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1

    # -- one admin connection ---------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        PEER.set(peer_of(writer))  # who asks, for the audit trail
        out: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_QUEUE)
        pump = asyncio.create_task(self._pump(out, writer))
        ticker: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    self._put(out, {"id": None, "ok": False, "error": "request line too long"})
                    break
                if not line:
                    break
                reply = await self._request(line)
                if reply.get("subscribed") and ticker is None:
                    self._subscribers.add(out)
                    ticker = asyncio.create_task(self._tick(out))
                self._put(out, reply)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(out)
            if ticker is not None:
                ticker.cancel()
            pump.cancel()
            writer.close()
            self._conns.discard(task)

    def _put(self, out: asyncio.Queue[dict[str, Any]], msg: dict[str, Any]) -> None:
        try:
            out.put_nowait(msg)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _pump(self, out: asyncio.Queue[dict[str, Any]], writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                msg = await out.get()
                writer.write(json.dumps(msg, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def _tick(self, out: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            await asyncio.sleep(STATS_PERIOD)
            self._put(out, {"event": "stats", **await self.stats()})

    async def _request(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except ValueError:
            return {"id": None, "ok": False, "error": "request is not valid JSON"}
        if not isinstance(req, dict):
            return {"id": None, "ok": False, "error": "request must be a JSON object"}
        rid = req.get("id")
        cmd = req.get("cmd")
        handler = getattr(self, f"cmd_{cmd}", None) if isinstance(cmd, str) else None
        if handler is None:
            return {"id": rid, "ok": False, "error": f"unknown command {cmd!r}"}
        try:
            result = await handler(req)
        except KeyError as exc:
            return {"id": rid, "ok": False, "error": f"missing field {exc.args[0]!r}"}
        except (TypeError, ValueError) as exc:
            return {"id": rid, "ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("admin command %s failed", cmd)
            return {"id": rid, "ok": False, "error": f"internal error: {exc}"}
        return {"id": rid, "ok": True, **result}

    # -- commands -------------------------------------------------------------------------

    async def cmd_hello(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"protocol": ADMIN_PROTOCOL_VERSION, "version": __version__,
                "node": self.control.node_id, "pid": os.getpid()}

    async def cmd_stats(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self.stats()

    async def cmd_clients(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"clients": self.control.clients()}

    async def cmd_kick(self, req: dict[str, Any]) -> dict[str, Any]:
        user = req["user"]
        if not isinstance(user, str) or not valid_user(user):
            raise ValueError("field 'user' must be a user name (1-32 of A-Z a-z 0-9 _ - .)")
        given = req.get("reason") or ""
        if not isinstance(given, str):
            raise TypeError("field 'reason' must be a string")
        channel = req.get("channel")
        if channel is not None and (not isinstance(channel, str) or not valid_channel(channel)):
            raise ValueError("field 'channel' must be a channel name")
        # a disconnect always says why; a channel kick passes on only the operator's words
        # (its unsubscribed frame already says "kicked")
        reason = given or ("" if channel is not None else "kicked by an operator")
        closed = await self.control.kick(user, reason[:200], channel)
        arguments: dict[str, Any] = {"reason": reason[:200], "closed": closed}
        if channel is not None:
            arguments["channel"] = channel
            self.publish({"type": "kick", "user": user, "reason": reason[:200],
                          "channel": channel, "connections": closed})
        await self.record("kick", user, arguments)
        out: dict[str, Any] = {"user": user, "closed": closed}
        if channel is not None:
            out["channel"] = channel
        return out

    async def cmd_subscribe(self, req: dict[str, Any]) -> dict[str, Any]:
        await self.channel_baseline()
        return {"subscribed": True, "stats": await self.stats()}

    async def cmd_cluster(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"nodes": await self.control.cluster()}
        except CacheUnavailable:
            return {"nodes": [], "error": "valkey unavailable"}

    async def stats(self) -> dict[str, Any]:
        """The ``stats`` figures (see docs/admin-protocol.md)."""
        f = self.control.figures()
        s = f.stats
        now = time.monotonic()
        self._rate.append((now, s.messages_in, s.deliveries_out))
        while len(self._rate) > 2 and now - self._rate[0][0] > 5:
            self._rate.pop(0)
        t0, m0, d0 = self._rate[0]
        span = now - t0
        msgs_rate = (s.messages_in - m0) / span if span > 0 else 0.0
        deliv_rate = (s.deliveries_out - d0) / span if span > 0 else 0.0
        out: dict[str, Any] = {
            "node": f.node,
            "uptime_s": f.uptime_s,
            "connections": f.connections,
            "users": f.users,
            "messages_in": s.messages_in,
            "deliveries_out": s.deliveries_out,
            "messages_per_s": round(msgs_rate, 1),
            "deliveries_per_s": round(deliv_rate, 1),
            "broadcast_queue": f.broadcast_queue,
            "whisper_queue": f.whisper_queue,
            "inbox": f.inbox,
            "max_backlog": f.max_backlog,
            "rate_limit_hits": s.rate_limit_hits,
            "rate_limit_hits_last_minute": s.hits_last_minute(),
            "slow_consumers": s.slow_consumers,
            "kicks": s.kicks,
            "errors": dict(s.by_error),
            "refusals": dict(f.refusals),
            "closes": dict(s.by_close),
            "valkey_up": f.valkey_up,
            "postgres_up": f.postgres_up,
            "postgres_slow": f.postgres_slow,
            "bus_resubscribes": f.bus_resubscribes,
            "events_dropped": self.dropped,
            "tasks": len(asyncio.all_tasks()),
        }
        out.update(await self.control.shared_figures())
        try:
            out["cluster"] = await self.control.cluster()
        except CacheUnavailable:
            out["cluster"] = []
        return out
