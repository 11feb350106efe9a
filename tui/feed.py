"""The dashboard's one link to the daemon: connect, subscribe, poll, reconnect.

:class:`Feed` runs inside a Textual worker. It speaks only the admin protocol
(docs/admin-protocol.md) through :class:`chathub.admin.client.AdminClient` and
turns everything it hears into :mod:`chathub.tui.messages`, handed to ``post``. It never
touches a widget and never raises for a daemon that is missing, stops or restarts:
it says so and tries again with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.message import Message

from chathub.admin.client import AdminClient
from chathub.errors import AdminError

from .messages import (
    ChannelsReceived,
    ClientsReceived,
    DaemonEvent,
    FeedProblem,
    LinkChanged,
    LinkState,
    StatsReceived,
)

#: what a lost or refused admin connection can raise
LINK_ERRORS = (AdminError, ConnectionError, OSError, TimeoutError)
#: events after which the client list is fetched at once instead of at the next tick
REFRESH_ON = frozenset({"connect", "disconnect", "join", "leave", "kick", "slow_consumer", "channel_created",
                        "channel_emptied", "channel_deleted"})


@dataclass(frozen=True)
class FeedOptions:
    """Timings of the feed; the defaults suit a person watching, tests shorten them."""

    poll_interval: float = 1.0
    """seconds between ``clients`` requests"""
    min_poll_gap: float = 0.2
    """shortest pause between two ``clients`` requests, however many events arrive"""
    retry_min: float = 0.25
    """first delay before reconnecting; doubled after each failed attempt"""
    retry_max: float = 5.0
    """longest delay between two attempts"""
    stale_after: float = 5.0
    """seconds without any pushed line (stats come every second) before the link is
    considered dead and reopened"""


class Feed:
    """Keeps one admin connection to the daemon alive and reports what it hears.

    ``await run()`` loops until cancelled: connect and say hello, fetch ``stats``,
    subscribe, and request ``clients`` and ``channels`` every ``poll_interval``; when the daemon goes
    away, post :class:`LinkChanged` and retry after a growing delay.
    """

    def __init__(self, path: str | Path, post: Callable[[Message], object],
                 options: FeedOptions | None = None) -> None:
        self.path = Path(path)
        self.post = post
        self.options = options or FeedOptions()
        #: set by events that change the client list, to fetch it without waiting
        self._refresh = asyncio.Event()

    async def run(self) -> None:
        """Connect, stream, reconnect; forever (cancel the worker to stop)."""
        opts = self.options
        loop = asyncio.get_running_loop()
        delay = opts.retry_min
        self.post(LinkChanged(LinkState.CONNECTING, detail=f"connecting to {self.path}"))
        while True:
            admin = AdminClient(self.path)
            try:
                try:
                    hello = await admin.connect()
                except Exception as exc:  # LINK_ERRORS, or a daemon that answers nonsense
                    state, reason = LinkState.DOWN, _say(exc)
                else:
                    started = loop.time()
                    reason = await self._session(admin, hello)
                    state = LinkState.RECONNECTING
                    if loop.time() - started >= opts.retry_max:
                        delay = opts.retry_min  # a session that lasted starts the backoff over
            finally:
                await _close_quietly(admin)
            self.post(LinkChanged(state, detail=reason, retry_in=delay))
            await asyncio.sleep(delay)
            delay = min(delay * 2, opts.retry_max)

    async def _session(self, admin: AdminClient, hello: dict[str, Any]) -> str:
        """Stream one connection until it ends; return why it ended.

        CONNECTED is posted once the subscription is live: the first item of the
        ``subscribe`` stream is the daemon's reply to it, a ``stats`` snapshot taken
        as the subscription started, so no event after it can be missed.
        """
        stream = admin.subscribe().__aiter__()
        try:
            async with asyncio.timeout(self.options.stale_after):
                first = await anext(stream)
        except StopAsyncIteration:
            return "the daemon closed the admin connection"
        except TimeoutError:
            return f"no answer to subscribe within {self.options.stale_after:g}s"
        except LINK_ERRORS as exc:
            return _say(exc)
        self.post(LinkChanged(LinkState.CONNECTED, hello=hello,
                              detail=f"node {hello.get('node')}, pid {hello.get('pid')}"))
        self.post(StatsReceived(first))
        events = asyncio.create_task(self._events(stream))
        poll = asyncio.create_task(self._poll(admin))
        try:
            done, _ = await asyncio.wait({events, poll}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (events, poll):
                task.cancel()
            await asyncio.gather(events, poll, return_exceptions=True)
        exc = next((t.exception() for t in done if not t.cancelled() and t.exception()), None)
        return "the daemon closed the admin connection" if exc is None else _say(exc)

    async def _events(self, stream: AsyncIterator[dict[str, Any]]) -> None:
        """Relay pushed lines until the connection ends or falls silent."""
        while True:
            try:
                async with asyncio.timeout(self.options.stale_after):
                    event = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise AdminError(f"nothing from the daemon for {self.options.stale_after:g}s") from None
            name = event.get("event")
            if name == "stats":
                self.post(StatsReceived(event))
            else:
                self.post(DaemonEvent(event))
                if name in REFRESH_ON:
                    self._refresh.set()

    async def _poll(self, admin: AdminClient) -> None:
        """Request ``clients`` and ``channels`` each ``poll_interval``, and soon after a
        connect, a disconnect or a channel event.

        A failed request is reported and retried; a connection that is gone ends
        :meth:`_events`, which ends the session.
        """
        opts = self.options
        loop = asyncio.get_running_loop()
        last_problem = ""
        while True:
            started = loop.time()
            self._refresh.clear()
            try:
                reply = await admin.request("clients")
                channels = await admin.request("channels")
            except AdminError as exc:
                if str(exc) != last_problem:
                    last_problem = str(exc)
                    self.post(FeedProblem(f"clients: {exc}"))
            else:
                last_problem = ""
                clients = reply.get("clients")
                self.post(ClientsReceived(clients if isinstance(clients, list) else []))
                listed = channels.get("channels")
                self.post(ChannelsReceived(listed if isinstance(listed, list) else []))
            await asyncio.sleep(opts.min_poll_gap)
            remaining = opts.poll_interval - (loop.time() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._refresh.wait()


def _say(exc: BaseException) -> str:
    """One line for the header and the log."""
    if isinstance(exc, LINK_ERRORS):
        return str(exc) or type(exc).__name__
    return f"unexpected {type(exc).__name__}: {exc}"


async def _close_quietly(admin: AdminClient) -> None:
    with contextlib.suppress(*LINK_ERRORS):
        await admin.close()
