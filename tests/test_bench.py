"""Smoke tests of the benchmark's load generator against real servers (no timing assertions)."""

from __future__ import annotations

from dataclasses import asdict

from websockets.asyncio.server import serve

from bench import reference
from bench.loadgen import LoadSpec, Shard, merge_runs, summarize_run


async def _load(port: int) -> tuple[dict, int]:
    """Run N=20, S=2 for about a second; return the run's summary and frames counted."""
    shard = Shard(LoadSpec(port=port, n=20, senders=2, window=4, duration=1.0, sample_every=5))
    try:
        ramp = await shard.ramp()
        assert ramp.connected == 20, ramp.errors
        res = await shard.run()
    finally:
        await shard.close()
    return summarize_run(merge_runs([asdict(res)]), 1), res.chats_total


async def test_load_generator_counts_every_delivery_from_chathub(daemon_factory):
    """Every chat of the two senders reaches all 20 connections of a daemon, and is counted."""
    daemon = await daemon_factory(ratelimit={"chat_rate": 1e6, "chat_burst": 1000000})
    summary, delivered = await _load(daemon.port)
    assert delivered > 0 and summary["acked"] > 0
    assert summary["delivery_ratio"] == 1.0
    assert summary["samples"] > 0


async def test_load_generator_counts_every_delivery_from_reference():
    """The reference server's frames are counted the same way as chathub's."""
    async with serve(reference.handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        summary, delivered = await _load(port)
    assert delivered > 0 and summary["delivery_ratio"] == 1.0
