"""The connection and reconnect machinery of :class:`~chathub.client.ChatClient`.

:class:`Link` opens the WebSocket, runs the one task per client that reads it all the
time (handing each frame to ``_handle``, :mod:`.routing`), and when the connection
drops reconnects with backoff, resuming the default channel with ``?since=``. Terminal
closes (kicked, banned, expired token) and refused upgrades that no retry can pass
end it with one last event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlencode

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .backoff import Backoff
from .buffer import EventBuffer
from .errors import Disconnected, NotConnected, Refused, Terminated
from .events import Banned, Closed, ConnectionLost, Event, Kicked, Welcome, decode
from .tracker import Tracker

#: close code of a kick (chathub.closecodes.KICKED): stop, do not reconnect
KICKED = 4001
#: close code of an expired token: reconnecting with the same token cannot work
TOKEN_EXPIRED = 4003
#: close code of a ban (chathub.closecodes.BANNED): stop, do not reconnect
BANNED = 4004
#: HTTP statuses of a refused reconnect that a later attempt may get past (limits,
#: a proxy with no daemon behind it); any other refusal (400, 401, 403) is terminal
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class Link:
    """Keeps one connection up: connect, read, reconnect, close.

    A part of :class:`~chathub.client.ChatClient`, which sets every attribute below
    in its constructor (documented there) and provides ``_handle`` and
    ``_fail_pending`` (:class:`~.routing.Routing`).
    """

    url: str
    user: str | None
    token: str | None
    backoff: Backoff
    reconnect: bool
    open_timeout: float
    close_timeout: float
    max_size: int
    _initial_since: str | None
    _tracker: Tracker
    _buffer: EventBuffer
    _ws: ClientConnection | None
    _sent_since: str | None
    _ready: bool
    _welcomed: asyncio.Future[Welcome] | None
    _task: asyncio.Task[None] | None
    _resubscriber: asyncio.Task[None] | None
    _closing: asyncio.Event
    _terminal: Event | None
    _welcomed_here: bool
    _handle: Callable[[Event], None]
    _fail_pending: Callable[[Exception], None]

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

