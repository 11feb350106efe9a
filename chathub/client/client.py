"""ChatClient: one user's connection to a chathub daemon, kept alive across drops.

    async with ChatClient("ws://127.0.0.1:8765/ws", user="alice") as c:
        msg = await c.chat("hello")            # the stamped message, matched by ref
        async for event in c:                  # typed events (chathub.client.events)
            ...

One task per client reads the socket all the time and hands each frame to
:meth:`ChatClient._handle`: replies go to the request waiting for their ``ref``,
events to a bounded :class:`~.buffer.EventBuffer` the application iterates. When the
connection drops, the same task reconnects with backoff, resumes the default channel
with ``?since=`` and every subscribed channel with its own ``since``, drops messages
already delivered, and reports what could not be recovered as a :class:`~.events.Gap`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .backoff import Backoff
from .buffer import EventBuffer
from .errors import (
    Disconnected,
    NotConnected,
    Refused,
    ReplyTimeout,
    Terminated,
    error_for,
)
from .events import (
    TERMINAL,
    Banned,
    ChannelInfo,
    Channels,
    Chat,
    Closed,
    ConnectionLost,
    Delete,
    Error,
    Event,
    Gap,
    History,
    Kicked,
    Subscribed,
    Unsubscribed,
    Users,
    Welcome,
    Whisper,
    decode,
)
from .tracker import Tracker, id_key

log = logging.getLogger("chathub.client")

#: close code of a kick (chathub.closecodes.KICKED): stop, do not reconnect
KICKED = 4001
#: close code of an expired token: reconnecting with the same token cannot work
TOKEN_EXPIRED = 4003
#: close code reserved for a ban (not sent by protocol v1): stop, do not reconnect
BANNED = 4004
#: HTTP statuses of a refused reconnect that a later attempt may get past (limits,
#: a proxy with no daemon behind it); any other refusal (400, 401, 403) is terminal
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

_encode = msgspec.json.Encoder().encode


class ChatClient:
    """A chathub client that reconnects by itself. Use as ``async with``.

    Args:
        url: the WebSocket endpoint, ``ws://HOST:PORT/ws``.
        user: the user name (auth mode ``none``); or
        token: a JWT (auth mode ``token``), sent as ``Authorization: Bearer``.
        since: resume the default channel after this message id on the first connect.
        backoff: reconnect delays (exponential, jittered, capped).
        reconnect: False to stop (with a :class:`~.events.Closed` event) at the first drop.
        max_events: events held for the application before messages are dropped and
            reported as :class:`~.events.Overflow` (the socket is read regardless).
        reply_timeout: seconds a request waits for its reply (:class:`ReplyTimeout`).
        open_timeout: seconds for the TCP connect, upgrade and welcome.
        close_timeout: seconds ``close()`` waits for the server's answer to its close
            frame before dropping the TCP connection (the server has the close frame by
            then and records a normal close). The reader never stops reading, and stops
            parsing once closing, so the answer is normally read within milliseconds
            (50 clients closing during a broadcast: 0.1 s in all); this only bounds a
            server or network that does not answer.
        max_size: largest frame accepted, in bytes (a welcome with long history is big).
    """

    def __init__(self, url: str, *, user: str | None = None, token: str | None = None,
                 since: str | None = None, backoff: Backoff | None = None,
                 reconnect: bool = True, max_events: int = 10_000, reply_timeout: float = 10.0,
                 open_timeout: float = 10.0, close_timeout: float = 1.0,
                 max_size: int = 2**24) -> None:
        if (user is None) == (token is None):
            raise ValueError("give exactly one of user= or token=")
        self.url = url
        self.user = user
        self.token = token
        self.backoff = backoff or Backoff()
        self.reconnect = reconnect
        self.reply_timeout = reply_timeout
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_size = max_size
        #: the last welcome (None before the first)
        self.welcome: Welcome | None = None
        self._initial_since = since
        self._tracker = Tracker()
        self._buffer = EventBuffer(max_events)
        #: subscribed channels -> the ``since`` given to subscribe() (used until a
        #: message of that channel is seen)
        self._channels: dict[str, str | None] = {}
        self._ws: ClientConnection | None = None
        #: ``since`` sent on the current connection's URL
        self._sent_since: str | None = None
        self._ready = False
        self._welcomed: asyncio.Future[Welcome] | None = None
        self._pending: dict[str, tuple[asyncio.Future[Event], dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._resubscriber: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._terminal: Event | None = None
        #: the current connection got its welcome (a drop after it resets the backoff)
        self._welcomed_here = False

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> ChatClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> Welcome:
        """Connect and wait for the welcome; then keep the connection up in the background.

        Raises:
            Refused: the upgrade was refused (bad name or token, limits).
            OSError, TimeoutError: the daemon cannot be reached within ``open_timeout``.
            Terminated: the server ended the connection before the welcome.
        """
        if self._task is not None:
            raise RuntimeError("connect() was already called")
        loop = asyncio.get_running_loop()
        self._welcomed = loop.create_future()
        ws = await self._open()
        self._ws = ws
        self._task = asyncio.create_task(self._run(ws), name="chathub-client")
        done, _ = await asyncio.wait({self._welcomed, self._task}, timeout=self.open_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._welcomed in done:
            return self._welcomed.result()
        await self.close()
        if not done:
            raise TimeoutError(f"no welcome within {self.open_timeout} s")
        raise Terminated(self._terminal)

    async def close(self) -> None:
        """Close the connection and stop reconnecting. Idempotent; returns promptly.

        Events already received can still be iterated; the iteration then ends.
        """
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await ws.close()  # bounded by close_timeout (websockets aborts after it)
        if self._task is not None and not self._task.done():
            if ws is None:  # sleeping in backoff or connecting: nothing to close politely
                self._task.cancel()
            # the reader ends as soon as the close completes; the bound covers anything else
            done, _ = await asyncio.wait({self._task}, timeout=self.close_timeout)
            if not done:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        self._buffer.end()

    @property
    def connected(self) -> bool:
        """Whether a connection is up and welcomed (requests can be sent)."""
        return self._ready

    @property
    def channels(self) -> list[str]:
        """The channels subscribed with :meth:`subscribe` (resubscribed on reconnect)."""
        return list(self._channels)

    @property
    def dropped(self) -> int:
        """Events dropped because the application did not keep up (see Overflow)."""
        return self._buffer.dropped_total

    def since(self, channel: str | None = None) -> str | None:
        """The id of the last message seen in ``channel`` (None: default channel)."""
        return self._tracker.since(channel)

    # -- events ----------------------------------------------------------------

    def __aiter__(self) -> ChatClient:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._buffer.get()
        except EOFError:
            raise StopAsyncIteration from None

    async def next_event(self, *types: type[Event], timeout: float | None = None) -> Event:
        """The next event that is one of ``types`` (any event when none is given); events
        of other types before it are taken and dropped.

        Raises:
            TimeoutError: none came within ``timeout`` seconds (None: no limit).
            Terminated: the client stopped for good before one came; ``event`` is the
                terminal event (Kicked, Banned, Closed), or None after :meth:`close`.
        """
        async with asyncio.timeout(timeout):
            while True:
                try:
                    ev = await self._buffer.get()
                except EOFError:
                    raise Terminated(self._terminal) from None
                if not types or isinstance(ev, types):
                    return ev

    # -- requests ----------------------------------------------------------------

    async def chat(self, text: str, channel: str | None = None) -> Chat:
        """Send a public message; return it as the server stamped it (id, ts).

        Raises:
            ServerError: its subclass for the code (RateLimited, TooLong, Blocked, ...).
            NotConnected, Disconnected, ReplyTimeout: see :mod:`.errors`.
        """
        frame: dict[str, Any] = {"type": "chat", "text": text}
        if channel is not None:
            frame["channel"] = channel
        return await self._request(frame, Chat)

    async def whisper(self, to: str, text: str) -> Whisper:
        """Send a private message to ``to``; return it stamped. UnknownUser when offline."""
        return await self._request({"type": "whisper", "to": to, "text": text}, Whisper)

    async def users(self, channel: str | None = None) -> list[str]:
        """Who is online (in ``channel``, v2), sorted."""
        frame: dict[str, Any] = {"type": "users"}
        if channel is not None:
            frame["channel"] = channel
        return (await self._request(frame, Users)).users

    async def list_channels(self) -> list[ChannelInfo]:
        """Protocol v2: the public channels and how many users are in each, sorted by name."""
        return (await self._request({"type": "channels"}, Channels)).channels

    async def history(self, channel: str | None = None, before: str | None = None,
                      limit: int = 50) -> AsyncIterator[Chat]:
        """Public messages going back in time, newest first, to the first one.

        Pages of ``limit`` (1-200) messages are fetched as the iteration goes, each
        ``before`` the oldest of the last page; it ends at an empty page.
        """
        last: tuple[int, int] | None = None
        while True:
            frame: dict[str, Any] = {"type": "history", "limit": limit}
            if before is not None:
                frame["before"] = before
            if channel is not None:
                frame["channel"] = channel
            page = await self._request(frame, History)
            if not page.messages:
                return
            oldest = page.messages[0].id
            # a page that does not go back would repeat forever: stop instead
            if last is not None and id_key(oldest) >= last:
                return
            for m in reversed(page.messages):
                yield m
            before, last = oldest, id_key(oldest)

    async def subscribe(self, channel: str, since: str | None = None) -> Subscribed:
        """Protocol v2: receive ``channel`` too (resubscribed on every reconnect).

        ``since``: recover what was sent after this id. A protocol v1 server raises
        UnknownType.
        """
        since = since or self._tracker.since(channel)
        reply = await self._subscribe(channel, since)
        self._channels.setdefault(channel, since)
        return reply

    async def _subscribe(self, channel: str, since: str | None) -> Subscribed:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if since is not None:
            frame["since"] = since
        return await self._request(frame, Subscribed)

    async def unsubscribe(self, channel: str) -> Unsubscribed:
        """Protocol v2: stop receiving ``channel``. A protocol v1 server raises UnknownType."""
        reply = await self._request({"type": "unsubscribe", "channel": channel}, Unsubscribed)
        self._channels.pop(channel, None)
        return reply

    async def _request(self, frame: dict[str, Any], reply_type: type[Any]) -> Any:
        """Send ``frame`` with a fresh ``ref``; the reply with that ref, or its error raised."""
        ws = self._ws
        if ws is None or not self._ready:
            if self._terminal is not None:
                raise Terminated(self._terminal)
            raise NotConnected("not connected (reconnecting or closed); nothing was sent")
        ref = f"py{next(self._refs)}"
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._pending[ref] = (fut, frame)
        try:
            try:
                await ws.send(_encode({**frame, "ref": ref}).decode())
            except ConnectionClosed:
                raise Disconnected("the connection dropped while sending") from None
            try:
                reply = await asyncio.wait_for(fut, self.reply_timeout)
            except TimeoutError:
                raise ReplyTimeout(f"no reply to {frame['type']} within {self.reply_timeout} s") from None
        finally:
            self._pending.pop(ref, None)
        if not isinstance(reply, reply_type):
            raise Disconnected(f"unexpected reply {type(reply).__name__} to {frame['type']}")
        return reply

    def _fail_pending(self, exc: Exception) -> None:
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    # -- connection loop -----------------------------------------------------------

    async def _open(self) -> ClientConnection:
        """One connection attempt (no retry)."""
        params: dict[str, str] = {}
        if self.user is not None:
            params["user"] = self.user
        since = self._tracker.since(None) or self._initial_since
        if since is not None:
            params["since"] = since
        url = self.url + ("&" if "?" in self.url else "?") + urlencode(params)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            ws = await websockets.connect(
                url, additional_headers=headers, open_timeout=self.open_timeout,
                close_timeout=self.close_timeout, max_size=self.max_size)
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
            raise Refused(exc.response.status_code, body) from None
        self._sent_since = since
        return ws

    async def _run(self, ws: ClientConnection | None) -> None:
        """Read, and reconnect when the connection drops, until closed or terminal."""
        attempt = 0
        lost = ConnectionLost()
        try:
            while not self._closing.is_set():
                if ws is not None:
                    code, reason = await self._read(ws)
                    ws = None
                    if self._closing.is_set() or self._terminal is not None:
                        return
                    if self._end_for_close(code, reason):
                        return
                    if self._welcomed_here:
                        attempt = 0
                    lost = ConnectionLost(code=code, reason=reason)
                if not self.reconnect or self.backoff.gives_up(attempt):
                    self._finish(Closed(code=lost.code, reason=lost.reason, status=lost.status))
                    return
                delay = self.backoff.delay(attempt)
                self._buffer.put(msgspec.structs.replace(lost, retry_in=delay, attempt=attempt))
                attempt += 1
                try:
                    await asyncio.wait_for(self._closing.wait(), delay)
                    return  # closed while waiting
                except TimeoutError:
                    pass
                try:
                    ws = await self._open()
                except Refused as exc:
                    if exc.status not in RETRY_STATUSES:
                        self._finish(Closed(status=exc.status, reason=exc.body.strip()))
                        return
                    lost = ConnectionLost(status=exc.status, reason=exc.body.strip())
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    lost = ConnectionLost(reason=str(exc) or type(exc).__name__)
        finally:
            if ws is not None:  # cancelled between connecting and reading
                ws.transport.abort()
            self._ready = False
            self._fail_pending(NotConnected("the client is closed"))
            if self._resubscriber is not None:
                self._resubscriber.cancel()
            self._buffer.end()

    def _end_for_close(self, code: int | None, reason: str) -> bool:
        """Handle a terminal close code; True when the client stops."""
        if code == KICKED:
            self._finish(Kicked(reason=reason))
        elif code == BANNED:
            self._finish(Banned(reason=reason))
        elif code == TOKEN_EXPIRED:
            self._finish(Closed(code=code, reason=reason))
        else:
            return False
        return True

    def _finish(self, event: Event) -> None:
        """Queue the terminal ``event``; nothing follows it."""
        if self._terminal is None:
            self._terminal = event
            self._buffer.put(event)

    async def _read(self, ws: ClientConnection) -> tuple[int | None, str]:
        """Hand every frame of ``ws`` to :meth:`_handle` until it closes; its close code and reason."""
        self._ws = ws
        self._welcomed_here = False
        try:
            while True:  # ends with ConnectionClosed
                # bytes: msgspec decodes UTF-8 JSON itself, saving a str per frame
                data = await ws.recv(decode=False)
                if not self._closing.is_set():  # closing: read on to the close frame, unparsed
                    self._handle(decode(data))
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            self._ready = False
            self._fail_pending(Disconnected("the connection dropped before the reply came"))
        rcvd = ws.protocol.close_rcvd
        if rcvd is None:
            return None, "connection lost"
        return rcvd.code, rcvd.reason

    # -- frames ----------------------------------------------------------------------

    def _reply(self, ref: str | None, value: Event | Exception) -> bool:
        """Give a reply to the request waiting for ``ref``; False when none is."""
        entry = self._pending.get(ref) if ref else None
        if entry is None or entry[0].done():
            return False
        if isinstance(value, Exception):
            entry[0].set_exception(value)
        else:
            entry[0].set_result(value)
        return True

    def _handle(self, ev: Event) -> None:
        """Route one decoded frame: de-duplicate, answer requests, queue events."""
        if isinstance(ev, Welcome):
            self._on_welcome(ev)
        elif isinstance(ev, (Chat, Whisper)):
            self._reply(ev.ref, ev)
            if self._tracker.admit(ev):
                self._buffer.put(ev)
        elif isinstance(ev, Error):
            if not self._reply(ev.ref, error_for(ev.code, ev.message, ev.retry_after_ms)):
                self._buffer.put(ev)
        elif isinstance(ev, Subscribed):
            sent = self._pending.get(ev.ref or "", (None, {}))[1].get("since")
            if ev.recovered is False:
                self._tracker.view(ev.channel).reset()
            ev = msgspec.structs.replace(ev, history=self._tracker.fresh(list(ev.history)))
            if ev.recovered is False and sent is not None:
                self._buffer.put(Gap(channel=ev.channel, since=sent))
            self._reply(ev.ref, ev)
            self._buffer.put(ev)
        elif isinstance(ev, Unsubscribed):
            self._reply(ev.ref, ev)
            self._buffer.put(ev)
        elif isinstance(ev, (Users, History, Channels)):
            if not self._reply(ev.ref, ev):
                self._buffer.put(ev)
        elif isinstance(ev, TERMINAL):
            self._finish(ev)
        elif isinstance(ev, Delete):
            self._buffer.discard(ev.id)  # the application never sees a message deleted unread
            self._buffer.put(ev)
        else:
            self._buffer.put(ev)

    def _on_welcome(self, ev: Welcome) -> None:
        reconnected = self.welcome is not None
        if ev.channels:
            self._tracker.default = ev.channels[0]
        if ev.recovered is False:  # start this view over: what was missed is out of reach
            self._tracker.view(None).reset()
        ev = msgspec.structs.replace(ev, history=self._tracker.fresh(list(ev.history)),
                                     reconnected=reconnected)
        self.welcome = ev
        self._welcomed_here = True
        self._ready = True
        if ev.recovered is False:
            self._buffer.put(Gap(channel=None, since=self._sent_since))
        self._buffer.put(ev)
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_result(ev)
        # the other auto-joined channels are joined again by the server, but only a
        # subscribe can carry their since: ask again where something was seen
        resume = {ch: None for ch in ev.channels[1:] if self._tracker.since(ch)}
        resume.update(self._channels)
        if resume:
            self._resubscriber = asyncio.create_task(self._resubscribe(resume))

    async def _resubscribe(self, channels: dict[str, str | None]) -> None:
        """After a reconnect: subscribe every channel again, each from its own ``since``."""
        for channel, first_since in channels.items():
            try:
                await self._subscribe(channel, self._tracker.since(channel) or first_since)
            except (Disconnected, NotConnected, ReplyTimeout):
                return  # the next connection tries again
            except Exception as exc:  # a typed ServerError: tell the application
                code = getattr(exc, "code", "error")
                self._buffer.put(Error(code=code, message=f"resubscribe {channel}: {exc}"))
