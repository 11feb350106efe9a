"""ChatClient: one user's connection to a chathub daemon, kept alive across drops.

    async with ChatClient("ws://127.0.0.1:8080/ws", user="alice") as c:
        msg = await c.chat("hello")            # the stamped message, matched by ref
        async for event in c:                  # typed events (chathub.client.events)
            ...

This module is the client's public face: its settings, the events it yields and the
requests it sends. The connection and reconnect machinery is :class:`~.link.Link` (one
task per client reads the socket all the time and reconnects with backoff); the
routing of each frame (replies by ``ref``, de-duplication, gaps, resubscribing every
channel with its own ``since``) is :class:`~.routing.Routing`. Both are bases of
:class:`ChatClient` and share the state its constructor sets.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection

from .backoff import Backoff
from .buffer import EventBuffer
from .errors import Terminated
from .events import (
    ChannelInfo,
    Channels,
    Chat,
    Event,
    History,
    Subscribed,
    Unsubscribed,
    Users,
    Welcome,
    Whisper,
)
from .link import Link
from .routing import Routing
from .tracker import Tracker, id_key


class ChatClient(Link, Routing):
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

    async def unsubscribe(self, channel: str) -> Unsubscribed:
        """Protocol v2: stop receiving ``channel``. A protocol v1 server raises UnknownType."""
        reply = await self._request({"type": "unsubscribe", "channel": channel}, Unsubscribed)
        self._channels.pop(channel, None)
        return reply

