"""Fire-and-forget tasks that cannot vanish half-way.

The event loop keeps only weak references to tasks: one nobody holds may be
garbage-collected before it finishes. :func:`spawn` holds each task until it is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("chathub.tasks")

_running: set[asyncio.Task[Any]] = set()


def _done(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coro`` in the background, keeping the task alive until it finishes."""
    task = asyncio.get_running_loop().create_task(coro)
    _running.add(task)
    task.add_done_callback(_done)
    return task


def _forget(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("abandoned task ended with %r", task.exception())


async def bounded(coro: Coroutine[Any, Any, Any], seconds: float | None) -> Any:
    """Await ``coro`` for at most ``seconds`` (None: no limit); on timeout cancel it and
    raise TimeoutError at once. When the caller is cancelled, ``coro`` is cancelled and
    the caller's cancellation goes on at once too.

    Unlike :func:`asyncio.wait_for`, this does not wait for the cancelled work to
    finish cleaning up. That matters for network clients whose cleanup is more round
    trips: a cancelled asyncpg query sends a cancel request and resets its connection,
    which on a link that adds 2 s per round trip takes several times the deadline. The
    cleanup runs on in the background, held like a :func:`spawn` task.

    Raises:
        TimeoutError: ``coro`` did not finish within ``seconds``.
    """
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=None if seconds is None else max(0.0, seconds))
    except asyncio.CancelledError:
        task.cancel()
        _running.add(task)
        task.add_done_callback(_forget)
        raise
    if not done:
        task.cancel()
        _running.add(task)
        task.add_done_callback(_forget)
        raise TimeoutError
    return task.result()
