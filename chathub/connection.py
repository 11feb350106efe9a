"""One WebSocket connection, from the upgrade to its session record.

:meth:`ConnectionHandler.handle` is what websockets runs for each admitted
connection: register with the hub (which sends ``welcome``), note the open
session, read frames until the connection ends — parsing, moderating and
submitting each — then unregister and record the finished session.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from . import closecodes, protocol
from .backends import MessageCache
from .bucket import TokenBucket
from .coalesce import Coalesced
from .config import Config
from .db.archive import RETRY_AFTER_MS
from .db.sessions import SessionRecorder
from .edge.guard import Guard
from .edge.routes import Admission
from .errors import CacheUnavailable, DatabaseUnavailable, RegistrationFailed
from .hub import Hub
from .peer import Client
from .protocol import (
    Channels,
    Chat,
    History,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    Users,
    Whisper,
)
from .wsconnection import TrackedConnection, forget_handshake

log = logging.getLogger("chathub.connection")

#: seconds a finished connection waits for the hub to settle its counters before recording
UNREGISTER_WAIT = 5.0


class ConnectionHandler:
    """Runs each connection; one per daemon."""

    def __init__(self, cfg: Config, node_id: str, hub: Hub, cache: MessageCache,
                 sessions: SessionRecorder, guard: Guard) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.hub = hub
        self.cache = cache
        self.sessions = sessions
        self.guard = guard
        #: ``users`` and ``channels`` answers, one Valkey read at a time however many ask
        #: (their cost grows with the server; see chathub/coalesce.py)
        self.users = Coalesced(hub.users_everywhere)
        self.channel_list: Coalesced[None, list[tuple[str, int]]] = Coalesced(
            lambda _key: hub.channel_list())

    async def handle(self, ws: TrackedConnection) -> None:
        """The websockets handler: the whole life of one connection."""
        adm = ws.admission
        if adm is None:  # pragma: no cover - process_request always admits first
            await ws.close(closecodes.INTERNAL_ERROR, "not admitted")
            return
        forget_handshake(ws)  # ~4 KB per idle connection; the admission has what is needed
        client = Client(ws, adm.user, adm.remote_addr, adm.user_agent, adm.rights)
        client.sink = self.hub.fanout  # replies and pongs count against the backlog rule too
        ws.peer = client
        if self.cfg.server.socket_send_buffer:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.cfg.server.socket_send_buffer)
        self.guard.opened(adm.remote_addr)
        try:
            try:
                await self.hub.register(client, adm.since)
            except RegistrationFailed as exc:
                client.close_code, client.close_reason = int(exc.close), exc.close.reason
                await ws.close(exc.close, exc.close.reason)
                return
            log.info("connect %s session=%s from %s", client.user, client.session, client.remote_addr)
            await self.sessions.opened(client.record(self.node_id))
            expiry = None
            if adm.expires_at is not None:
                loop = asyncio.get_running_loop()
                expiry = loop.call_at(loop.time() + max(0.0, adm.expires_at - time.time()),
                                      client.close_soon, closecodes.TOKEN_EXPIRED)
            try:
                await self._read(client)
            finally:
                if expiry is not None:
                    expiry.cancel()
        finally:
            await self._finish(client, adm)

    async def _finish(self, client: Client, adm: Admission) -> None:
        client.ws.peer = None  # type: ignore[attr-defined]  # no cycle left to the collector
        self.guard.closed(adm.remote_addr)
        if client.close_code is None:
            client.close_code, client.close_reason = close_of(client.ws)
        self.hub.count_close(closecodes.counted(client.close_code, client.close_reason))
        try:
            await asyncio.wait_for(asyncio.shield(self.hub.unregister(client)), UNREGISTER_WAIT)
        except TimeoutError:
            log.warning("hub did not confirm unregistering %s in time", client.session)
        log.info("disconnect %s session=%s code=%s reason=%s", client.user, client.session,
                 client.close_code, client.close_reason)
        await self.sessions.closed(client.record(self.node_id, int(time.time() * 1000)))

    async def _read(self, client: Client) -> None:
        ws = client.ws
        max_chars = self.cfg.server.max_text_chars
        moderate = self.guard.moderate
        hub = self.hub
        limits = self.cfg.ratelimit
        #: users/history requests cost a round trip each: a budget per connection, made
        #: on the first request (most connections only chat, and idle ones send nothing)
        requests: TokenBucket | None = None
        try:
            while True:  # not `async for`: its async generator costs ~0.4 KB per idle connection
                data = await ws.recv()
                client.frames_received += 1
                client.bytes_in += len(data)
                try:
                    msg = protocol.parse(data, max_chars)
                    if isinstance(msg, (Chat, Whisper)):
                        await hub.submit(client, moderate(client.user, msg))
                        continue
                    if requests is None:
                        requests = TokenBucket(limits.request_rate, limits.request_burst)
                    wait = requests.take()
                    if wait:
                        raise ProtocolError(protocol.RATE_LIMITED, "too many requests", msg.ref,
                                            math.ceil(wait * 1000))
                    if isinstance(msg, Subscribe):
                        await hub.subscribe(client, msg.channel, msg.since, msg.ref)
                    elif isinstance(msg, Unsubscribe):
                        await hub.unsubscribe(client, msg.channel, msg.ref)
                    elif isinstance(msg, Users):
                        await self._users(client, msg)
                    elif isinstance(msg, Channels):
                        await self._channels(client, msg)
                    else:
                        await self._history(client, msg)
                except ProtocolError as err:
                    hub.count_error(err.code)
                    client.send(err.frame())
        except ConnectionClosed:
            pass

    async def _users(self, client: Client, msg: Users) -> None:
        if (msg.channel is not None and protocol.is_private(msg.channel)
                and msg.channel not in client.channels):
            raise ProtocolError(protocol.NOT_SUBSCRIBED,
                                f"this connection is not in {msg.channel}", msg.ref)
        try:
            users = await self.users.get(msg.channel)
        except CacheUnavailable:
            raise ProtocolError(protocol.UNAVAILABLE, "the user list is unavailable right now",
                                msg.ref, RETRY_AFTER_MS) from None
        client.send(protocol.encode_users(users, msg.ref, msg.channel))

    async def _channels(self, client: Client, msg: Channels) -> None:
        try:
            listed = await self.channel_list.get(None)
        except CacheUnavailable:
            raise ProtocolError(protocol.UNAVAILABLE, "the channel list is unavailable right now",
                                msg.ref, RETRY_AFTER_MS) from None
        client.send(protocol.encode_channels(listed, msg.ref))

    async def _history(self, client: Client, msg: History) -> None:
        channel = msg.channel or self.hub.default_channel
        if channel not in client.channels:
            raise ProtocolError(protocol.NOT_SUBSCRIBED, f"this connection is not in {channel}",
                                msg.ref)
        try:
            msgs = await self.cache.history(msg.before, msg.limit, channel)
        except DatabaseUnavailable as exc:
            raise ProtocolError(protocol.UNAVAILABLE, "older history is unavailable right now",
                                msg.ref, exc.retry_after_ms) from None
        except CacheUnavailable:
            raise ProtocolError(protocol.UNAVAILABLE, "history is unavailable right now",
                                msg.ref, RETRY_AFTER_MS) from None
        client.send(protocol.encode_history(msgs, msg.ref, msg.channel))


def close_of(ws: ServerConnection) -> tuple[int, str]:
    """The close code and reason to record for a connection that ended by itself."""
    sent, rcvd = ws.protocol.close_sent, ws.protocol.close_rcvd
    if sent is not None and (rcvd is None or not ws.protocol.close_rcvd_then_sent):
        # websockets closed it: frame too big, keepalive timeout, protocol error, ...
        return sent.code, closecodes.reason_for(sent.code, sent.reason)
    if rcvd is not None:
        return rcvd.code, closecodes.reason_for(rcvd.code, rcvd.reason)
    return closecodes.ABNORMAL, closecodes.reason_for(None, None)
