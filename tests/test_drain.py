"""Slow consumers by drain progress: the rule as a pure function, then against real clients."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
import websockets

from chathub.admin.client import call
from chathub.drain import OVER_CAP, TIMED_OUT, DrainPolicy
from tests.helpers import Chatter, wait_for, ws_url
from tests.procs import proc_status

P = DrainPolicy(limit=1000, cap=10_000, timeout=5.0)

# -- the rule ----------------------------------------------------------------------------


def test_below_limit_is_fine_and_keeps_no_clock():
    assert P.judge(None, 0, 1000, 1.0) == (None, None)
    assert P.judge(3.0, 500, 900, 4.0) == (None, None)  # it came back below: clock gone


def test_first_time_above_starts_the_clock():
    assert P.judge(None, 0, 1001, 7.0) == (7.0, None)


def test_above_without_a_dip_for_longer_than_timeout_is_slow():
    assert P.judge(10.0, 2000, 3000, 15.0) == (10.0, None)  # exactly the timeout: not yet
    assert P.judge(10.0, 2000, 3000, 15.01) == (10.0, TIMED_OUT)


def test_a_dip_to_the_limit_restarts_the_clock():
    """Low at or below the limit before a write that lifts it above: progress, a fresh clock."""
    assert P.judge(10.0, 1000, 5000, 20.0) == (20.0, None)


def test_passing_the_cap_is_slow_at_once():
    assert P.judge(None, 0, 10_001, 1.0) == (None, OVER_CAP)
    assert P.fits(9000, 1000) and not P.fits(9000, 1001)
    assert P.fits(0, 50_000)  # an empty backlog takes any single write


def _simulate(read_rate: float, send: list[tuple[float, int]], until: float,
              step: float = 0.25) -> tuple[str | None, float]:
    """A reader draining ``read_rate`` bytes/s, writes ``(time, bytes)``, watch every ``step`` s.

    Returns (verdict, time of the verdict or ``until``).
    """
    backlog, over, t_prev = 0.0, None, 0.0
    events = sorted([(t, n) for t, n in send] + [(k * step, 0) for k in range(int(until / step) + 1)])
    for t, n in events:
        backlog = max(0.0, backlog - read_rate * (t - t_prev))
        t_prev = t
        low = int(backlog)
        if n and not P.fits(low, n):
            return OVER_CAP, t
        backlog += n
        over, verdict = P.judge(over, low, int(backlog), t)
        if verdict:
            return verdict, t
    return None, until


def test_simulated_burst_reader_keeps_up_trickle_and_stopped_are_cut():
    """A reader behind during a burst survives; one slower than the sender, or stopped, is cut."""
    burst = [(i * 0.001, 300) for i in range(3000)]  # 900 bytes in 3 s at 300 kB/s
    assert _simulate(read_rate=400_000, send=burst, until=20)[0] is None
    # 10x the traffic over 6 s, a reader at half the rate: behind for good
    steady = [(i * 0.01, 100) for i in range(600)]
    verdict, at = _simulate(read_rate=5_000, send=steady, until=20)
    assert verdict in (TIMED_OUT, OVER_CAP)
    verdict, at = _simulate(read_rate=0, send=[(0.0, 2000)], until=20)
    assert verdict == TIMED_OUT and 5.0 < at <= 5.25


# -- against real clients ----------------------------------------------------------------

#: bytes of each chat in the burst test (the issue's 1.4 KB)
TEXT = 1400


def _stalled_socket(port: int, user: str) -> socket.socket:
    """A raw client that completes the handshake, then never reads again."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.connect(("127.0.0.1", port))
    s.sendall(
        f"GET /ws?user={user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    return s


async def test_burst_reaches_twenty_readers_in_order_nobody_cut(spawn):
    """client_queue_limit 256 KiB, 3,000 chats of 1.4 KB: every reader gets all, in order."""
    proc = await spawn(hub={"client_queue_limit": 262144})
    readers = [await Chatter.connect(proc.port, f"r{i}") for i in range(20)]
    sender = await Chatter.connect(proc.port, "sender")
    n = 3000

    async def receive_all(c: Chatter) -> list[int]:
        seen: list[int] = []
        while len(seen) < n:
            f = await c.recv_type("chat", timeout=30)
            seen.append(int(f["text"].split(":")[0]))
        return seen

    async def send_all() -> None:
        for i in range(n):
            await sender.chat(f"{i}:" + "x" * TEXT)

    results = await asyncio.gather(send_all(), *(receive_all(c) for c in readers))
    for seen in results[1:]:
        assert seen == list(range(n))
    sock = proc.config.parent / proc.config.stem / "admin.sock"
    stats = await call(sock, "stats")
    assert stats["slow_consumers"] == 0 and stats["connections"] == 21
    for c in [*readers, sender]:
        await c.close()


async def test_stopped_reader_cut_within_write_timeout_plus_one_second(daemon_factory):
    """A reader that stops is cut with 4002 within write_timeout + 1 s, even once the room is quiet."""
    daemon = await daemon_factory(hub={"client_queue_limit": 65536, "write_timeout": 2.0})
    stalled = _stalled_socket(daemon.port, "stalled")
    try:
        await wait_for(lambda: "stalled" in daemon.node.hub.users(), what="stalled client registered")
        client = next(c for c in daemon.node.hub.clients() if c.user == "stalled")
        async with await Chatter.connect(daemon.port, "sender") as sender:
            started = time.monotonic()
            for i in range(2000):  # bounded: stops as soon as the backlog is over the limit
                await sender.chat(f"{i}:" + "x" * TEXT)
                await sender.recv_type("chat")
                if client.over_since is not None:
                    break
            assert client.over_since is not None, "the backlog never passed the limit"
            (info,) = [c for c in (await call(daemon.cfg.admin_socket, "clients"))["clients"]
                       if c["user"] == "stalled"]
            assert info["backlog"] > 65536 and info["over_limit_s"] >= 0.0
            # the room is quiet now: only the periodic watch can cut it
            await wait_for(lambda: daemon.node.hub.stats.slow_consumers == 1, timeout=10, what="cut")
            elapsed = time.monotonic() - started
            assert elapsed <= 2.0 + 1.0, elapsed
            assert client.close_code == 4002
    finally:
        stalled.close()


async def test_trickle_reader_below_the_send_rate_is_cut(daemon_factory):
    """A reader taking 50 frames/s while 200/s arrive is cut; a full-speed reader gets everything."""
    daemon = await daemon_factory(hub={"client_queue_limit": 65536, "write_timeout": 2.0})
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", daemon.port))
    trickle = await websockets.connect(ws_url(daemon.port, user="trickle"), sock=raw, max_queue=4,
                                       max_size=2**20)
    fast = await Chatter.connect(daemon.port, "fast")
    sender = await Chatter.connect(daemon.port, "sender")
    got = 0

    async def read_slowly() -> None:
        nonlocal got
        try:
            while True:
                await trickle.recv()
                got += 1
                await asyncio.sleep(0.02)  # the trickle: 50 frames per second
        except websockets.ConnectionClosed:
            pass

    reading = asyncio.create_task(read_slowly())
    sent = 0
    try:
        for sent in range(1, 3001):  # bounded: at most 15 s at 200/s
            await sender.chat(f"{sent}:" + "x" * TEXT)
            await asyncio.sleep(0.005)  # pacing the sender at about 200 chats/s
            if daemon.node.hub.stats.slow_consumers:
                break
        assert daemon.node.hub.stats.slow_consumers == 1
        victim = [c for c in daemon.node.hub.clients() if c.user == "trickle"]
        assert not victim or victim[0].close_code == 4002
        seen = [int((await fast.recv_type("chat"))["text"].split(":")[0]) for _ in range(sent)]
        assert seen == list(range(1, sent + 1))
        assert 0 < got < sent
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        trickle.transport.abort()
        await fast.close()
        await sender.close()



@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
async def test_rss_bounded_by_cap_times_stalled_clients(spawn):
    """Four stalled clients, 17 MB of traffic each, cap 1 MiB: peak RSS grows by at most
    4 x cap plus a fixed allowance for the traffic itself, and all four are cut by the cap."""
    cap, stalled_n, n = 1 << 20, 4, 12000
    proc = await spawn(hub={"client_queue_limit": 65536, "client_queue_max": cap,
                            "write_timeout": 120.0})
    sock = proc.config.parent / proc.config.stem / "admin.sock"
    stalled = [_stalled_socket(proc.port, f"s{i}") for i in range(stalled_n)]
    try:
        async def registered() -> bool:
            return (await call(sock, "stats"))["connections"] == stalled_n

        await wait_for(registered, what="stalled clients registered")
        async with await Chatter.connect(proc.port, "sender") as sender:
            # warm up: the daemon's own working set for this traffic, before the peak is read
            for i in range(200):
                await sender.chat(f"w{i}:" + "x" * TEXT)
                await sender.recv_type("chat")
            base = proc_status(proc.pid, "VmHWM")
            for start in range(0, n, 20):  # closed loop, 20 in flight
                for i in range(start, start + 20):
                    await sender.chat(f"{i}:" + "x" * TEXT)
                for _ in range(20):
                    await sender.recv_type("chat")
            stats = await call(sock, "stats")
        growth = proc_status(proc.pid, "VmHWM") - base
        assert stats["slow_consumers"] == stalled_n
        # Measured on the reference machine: about 3 MB with the cap; with a cap of 1 GiB the
        # same traffic grew the peak by about 23 MB (the event loop shares one
        # buffer among recipients where it can), so this bound fails without the cap.
        allowance = 8 << 20
        assert growth <= stalled_n * cap + allowance, f"peak RSS grew by {growth} bytes"
    finally:
        for s in stalled:
            s.close()
