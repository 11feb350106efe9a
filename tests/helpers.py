"""Real WebSocket clients for tests, with waits on events instead of sleeps.

Tests of behaviour use the project's own client, :class:`chathub.client.ChatClient`
(:func:`chat_client`, :func:`connected`, :func:`event`); :class:`Chatter` speaks raw
frames, for tests that check the wire format, bad input, hostile clients and close
codes on purpose.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection

from chathub.client import ChatClient, Event

#: seconds a test waits for an expected frame before failing
RECV_TIMEOUT = 10.0


def ws_url(port: int, host: str = "127.0.0.1", **query: str) -> str:
    return f"ws://{host}:{port}/ws?{urlencode(query)}"


def chat_client(port: int, user: str | None = None, *, token: str | None = None,
                host: str = "127.0.0.1", **options: Any) -> ChatClient:
    """A :class:`ChatClient` for ``port`` that does not reconnect: a dropped connection
    ends it (and fails the test) instead of being repaired out of sight. Use it as
    ``async with``, or :func:`connected`."""
    return ChatClient(f"ws://{host}:{port}/ws", user=user, token=token,
                      **{"reconnect": False, **options})


async def connected(port: int, user: str | None = None, **options: Any) -> ChatClient:
    """:func:`chat_client`, connected (its welcome is ``.welcome``); close it when done."""
    c = chat_client(port, user, **options)
    await c.connect()
    return c


async def event(c: ChatClient, *types: type[Event], timeout: float = RECV_TIMEOUT) -> Any:
    """The next event of one of ``types`` on ``c``, skipping others; fails after ``timeout`` s."""
    return await c.next_event(*types, timeout=timeout)


async def quiet_events(c: ChatClient, timeout: float = 0.3) -> list[Event]:
    """Events that arrive within ``timeout`` (a bounded wait for something that must not
    come, used after a marker message proved everything before it was delivered)."""
    got: list[Event] = []
    try:
        while True:
            got.append(await c.next_event(timeout=timeout))
    except TimeoutError:
        return got


class Chatter:
    """A test client: a real WebSocket connection plus the welcome it got."""

    def __init__(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome

    @classmethod
    async def connect(cls, port: int, user: str | None = None, host: str = "127.0.0.1",
                      local_host: str | None = None, **query: str) -> Chatter:
        """Connect (from ``local_host`` when given, e.g. 127.0.0.2) and read the welcome."""
        q = dict(query)
        if user is not None:
            q["user"] = user
        extra = {"local_addr": (local_host, 0)} if local_host else {}
        # max_queue=None: a test client never stops reading, so close() is never stuck
        # behind frames the test did not consume.
        ws = await websockets.connect(ws_url(port, host, **q), max_size=2**24, open_timeout=10,
                                      max_queue=None, **extra)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
        assert welcome["type"] == "welcome", welcome
        return cls(ws, welcome)

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def chat(self, text: str, **extra: Any) -> None:
        await self.send(type="chat", text=text, **extra)

    async def whisper(self, to: str, text: str, **extra: Any) -> None:
        await self.send(type="whisper", to=to, text=text, **extra)

    async def recv(self, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def recv_type(self, *types: str, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """The next frame of one of ``types``, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] in types:
                return frame

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> Chatter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0,
                   what: str = "condition") -> None:
    """Poll ``predicate`` (sync or async) until true; fail after ``timeout`` seconds.

    For state that has no event to await (rows in PostgreSQL, a counter in the daemon).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def assert_shared_budget(first: Chatter, second: Chatter) -> None:
    """Two connections of one user with a chat burst of 4: after three chats on ``first``,
    ``second`` gets one through and two ``rate_limited``."""
    for i in range(3):
        await first.chat(f"first {i}")
    for _ in range(3):
        await first.recv_type("chat")
    for i in range(3):
        await second.chat(f"second {i}")
    # second also sees first's three chats (same user, another tab): six frames in all
    res = [await second.recv_type("chat", "error") for _ in range(6)]
    own = [r for r in res if r["type"] == "chat" and r["text"].startswith("second")]
    limited = [r for r in res if r["type"] == "error" and r["code"] == "rate_limited"]
    assert len(own) == 1 and len(limited) == 2
