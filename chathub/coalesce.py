"""Coalesced reads: callers asking the same question at once share one answer, never a stale one.

A ``channels`` or ``users`` reply costs one Valkey call whose work grows with the
server: with 10,000 channels a listing takes about 12 ms of Valkey's one thread and
as much of the hub's. Made once per request, a few clients asking in a loop (each
within its request budget) keep Valkey busy, and every chat waits behind them.

:class:`Coalesced` runs at most one call per key at a time. Callers who ask while it
runs wait for the *next* call, which starts when the running one ends and answers all
of them at once: no caller gets an answer read before it asked (a client that has just
subscribed finds itself in ``users``), and however many ask, Valkey works on one
listing per key at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Coalesced(Generic[K, T]):
    """``await get(key)`` is ``await fetch(key)``, shared with every concurrent caller.

    Args:
        fetch: the read; its exceptions reach every caller it answers.
    """

    def __init__(self, fetch: Callable[[K], Awaitable[T]]) -> None:
        self._fetch = fetch
        #: key -> the call in flight
        self._running: dict[K, asyncio.Future[T]] = {}
        #: key -> the answer of the call that starts when the running one ends
        self._next: dict[K, asyncio.Future[T]] = {}

    async def get(self, key: K) -> T:
        """The answer of a ``fetch(key)`` that started after this call did.

        Raises:
            Whatever ``fetch`` raised. Cancelling one caller cancels no other's read.
        """
        if key not in self._running:
            fut = self._start(key, None)
        else:
            fut = self._next.get(key)
            if fut is None:
                fut = self._next[key] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(fut)

    def _start(self, key: K, into: asyncio.Future[T] | None) -> asyncio.Future[T]:
        task: asyncio.Future[T] = asyncio.ensure_future(self._fetch(key))
        self._running[key] = task
        task.add_done_callback(partial(self._done, key, into))
        return task

    def _done(self, key: K, into: asyncio.Future[T] | None, task: asyncio.Future[T]) -> None:
        del self._running[key]
        exc = None if task.cancelled() else task.exception()  # retrieved: no "never retrieved"
        if into is not None and not into.done():
            if task.cancelled():
                into.cancel()
            elif exc is not None:
                into.set_exception(exc)
                into.exception()  # callers that were cancelled meanwhile leave it unread
            else:
                into.set_result(task.result())
        waiting = self._next.pop(key, None)
        if waiting is not None:
            self._start(key, waiting)
