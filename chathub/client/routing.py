"""Frame routing of :class:`~chathub.client.ChatClient`: requests and their replies,
de-duplication, welcomes and resubscribing after a reconnect.

Each decoded frame goes to :meth:`Routing._handle`: a reply goes to the request
waiting for its ``ref``, an event to the bounded buffer the application iterates,
a message seen before is dropped, and what could not be recovered is reported as a
:class:`~.events.Gap`. No I/O here but sending a request's frame.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .buffer import EventBuffer
from .errors import Disconnected, NotConnected, ReplyTimeout, Terminated, error_for
from .events import (
    TERMINAL,
    Channels,
    Chat,
    Delete,
    Error,
    Event,
    Gap,
    History,
    Subscribed,
    Unsubscribed,
    Users,
    Welcome,
    Whisper,
)
from .tracker import Tracker

_encode = msgspec.json.Encoder().encode


class Routing:
    """Requests by ``ref`` and the routing of every frame received.

    A part of :class:`~chathub.client.ChatClient`, which sets every attribute below in
    its constructor (documented there) and provides ``_finish`` (:class:`~.link.Link`).
    """

    reply_timeout: float
    welcome: Welcome | None
    _tracker: Tracker
    _buffer: EventBuffer
    _channels: dict[str, str | None]
    _ws: ClientConnection | None
    _sent_since: str | None
    _ready: bool
    _welcomed: asyncio.Future[Welcome] | None
    _pending: dict[str, tuple[asyncio.Future[Event], dict[str, Any]]]
    _refs: itertools.count[int]
    _resubscriber: asyncio.Task[None] | None
    _terminal: Event | None
    _welcomed_here: bool
    _finish: Callable[[Event], None]

    async def _subscribe(self, channel: str, since: str | None) -> Subscribed:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if since is not None:
            frame["since"] = since
        return await self._request(frame, Subscribed)


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

