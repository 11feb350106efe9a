"""tasks.bounded(): a deadline that does not wait for the cancelled work's cleanup."""

from __future__ import annotations

import asyncio
import time

import pytest

from chathub.tasks import bounded

#: how long the slow work's cleanup takes (an asyncpg cancel + reset on a slow link)
CLEANUP = 1.0


async def slow_work(cleaned: asyncio.Event, started: asyncio.Event | None = None) -> str:
    if started is not None:
        started.set()
    try:
        await asyncio.sleep(60)
        return "done"
    except asyncio.CancelledError:
        await asyncio.sleep(CLEANUP)  # cleanup that takes round trips
        cleaned.set()
        raise


async def test_deadline_returns_at_once_and_cleanup_runs_on() -> None:
    cleaned = asyncio.Event()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await bounded(slow_work(cleaned), 0.05)
    assert time.monotonic() - started < CLEANUP / 2
    await asyncio.wait_for(cleaned.wait(), CLEANUP * 5)  # the cleanup still finished


async def test_result_and_errors_pass_through() -> None:
    async def ok() -> int:
        return 7

    async def fails() -> None:
        raise OSError("refused")

    assert await bounded(ok(), 1.0) == 7
    assert await bounded(ok(), None) == 7
    with pytest.raises(OSError, match="refused"):
        await bounded(fails(), 1.0)


async def test_cancelling_the_caller_does_not_wait_for_cleanup() -> None:
    cleaned, running = asyncio.Event(), asyncio.Event()
    caller = asyncio.create_task(bounded(slow_work(cleaned, running), None))
    await running.wait()
    started = time.monotonic()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert time.monotonic() - started < CLEANUP / 2
    await asyncio.wait_for(cleaned.wait(), CLEANUP * 5)
