"""Coalesced reads (chathub/coalesce.py): shared, never older than the question."""

from __future__ import annotations

import asyncio

import pytest

from chathub.coalesce import Coalesced


class Gate:
    """A fetch that counts its calls and waits until released; answers its call number."""

    def __init__(self) -> None:
        self.calls = 0
        self.open = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, key: str) -> tuple[str, int]:
        self.calls += 1
        n = self.calls
        await self.open.wait()
        if self.fail is not None:
            raise self.fail
        return key, n


async def test_callers_during_a_read_share_the_next_one():
    """One read in flight, ten callers arrive: they share one more read, started after them."""
    gate = Gate()
    c = Coalesced(gate)
    first = asyncio.ensure_future(c.get("k"))
    await asyncio.sleep(0)  # the first read starts
    later = [asyncio.ensure_future(c.get("k")) for _ in range(10)]
    await asyncio.sleep(0)
    assert gate.calls == 1
    gate.open.set()
    assert await first == ("k", 1)
    assert await asyncio.gather(*later) == [("k", 2)] * 10
    assert gate.calls == 2


async def test_keys_do_not_share():
    gate = Gate()
    gate.open.set()
    c = Coalesced(gate)
    assert sorted(await asyncio.gather(c.get("a"), c.get("b"))) == [("a", 1), ("b", 2)]


async def test_an_error_reaches_every_caller_and_the_next_read_runs():
    gate = Gate()
    c = Coalesced(gate)
    gate.fail = RuntimeError("valkey down")
    first = asyncio.ensure_future(c.get("k"))
    await asyncio.sleep(0)
    later = asyncio.ensure_future(c.get("k"))
    gate.open.set()
    with pytest.raises(RuntimeError):
        await first
    with pytest.raises(RuntimeError):
        await later
    gate.fail = None
    assert await c.get("k") == ("k", 3)


async def test_a_cancelled_caller_does_not_cancel_the_read_of_others():
    gate = Gate()
    c = Coalesced(gate)
    first = asyncio.ensure_future(c.get("k"))
    await asyncio.sleep(0)
    quitter = asyncio.ensure_future(c.get("k"))
    stayer = asyncio.ensure_future(c.get("k"))  # both wait for the same next read
    await asyncio.sleep(0)
    quitter.cancel()
    first.cancel()
    gate.open.set()
    assert await stayer == ("k", 2)
    assert quitter.cancelled() and first.cancelled()
