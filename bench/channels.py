"""The ``channels`` scenario (chathub only: the peers have no channels).

Three measurements, each a row:

- ``channels_layout``: N connections in channels of ``channel_size`` (10) plus one
  channel of ``big_channel`` members; each connection subscribes to its channel after
  its welcome, and the first member of each channel chats in it, closed loop with W in
  flight. Deliveries/s and deliveries per server CPU-second, to set beside ``fanout``'s
  (run ``--scenarios fanout,channels`` for both in one go).
- ``channels_churn``: C clients, each looping ``subscribe``/``unsubscribe`` on a channel
  of its own (the same name every round), ``churn_rounds`` pairs each: pairs/s.
- ``channels_rss``: C idle clients connected, the daemon's RSS read; then each
  subscribes to K more channels (channels of M members, M=10) and RSS is read again:
  KB per subscription, and the growth of Valkey's ``used_memory`` likewise.

Only loopback; every loop is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

from .loadgen import cpu_seconds, subscribe
from .servers import ServerProc
from .wsproto import ERROR_PREFIX, Conn, Tally, client_frame, connect

#: seconds one subscribe or unsubscribe may wait for its reply before it counts as failed
REPLY_TIMEOUT = 10.0
#: seconds the whole churn may take before its clients stop wherever they are
CHURN_TIMEOUT = 60.0
#: seconds to wait after subscribing before reading RSS (the daemon's allocations settle)
RSS_SETTLE = 1.0


async def _open(srv: ServerProc, n: int, prefix: str, concurrency: int) -> list[Conn]:
    """Open ``n`` connections (``concurrency`` at a time) as users ``<prefix><i>``."""
    tally = Tally(None)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Conn:
        async with gate:
            return await connect("127.0.0.1", srv.port, f"/ws?user={prefix}{i}", tally, False,
                                 REPLY_TIMEOUT)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _close(conns: list[Conn]) -> None:
    """Close ``conns`` and wait (bounded) until the server dropped them."""
    for c in conns:
        c.close()
    pending = [c.lost for c in conns if not c.lost.done()]
    if pending:
        await asyncio.wait(pending, timeout=5.0)  # seconds: as the generator's CLOSE_TIMEOUT
    for c in conns:
        if not c.lost.done() and c.transport is not None:
            c.transport.abort()


async def layout(srv: ServerProc, ctx: Any) -> dict[str, Any]:
    """The channels layout under load, through the Python generator (it subscribes)."""
    from .scenarios import _load, _spec

    z = ctx.sizes
    spec = _spec(srv, ctx, n=z.channels_n, senders=0, window=z.channels_window,
                 channel_size=z.channels_size, big_channel=z.channels_big)
    # the Go generator cannot subscribe: this load always runs in the Python one, and so
    # does the fanout it is compared with (same N, S and W as the fanout scenario)
    pyctx = replace(ctx, generator=None)
    out = await _load(srv, spec, pyctx, profile=f"{ctx.profile}.channels" if ctx.profile else None)
    flat = _spec(srv, ctx, n=z.channels_n, senders=z.fanout_senders, window=z.fanout_window)
    fan = await _load(srv, flat, pyctx)
    channels = (spec.n - spec.big_channel + spec.channel_size - 1) // spec.channel_size
    mine, theirs = out.get("deliveries_per_cpu_s"), fan.get("deliveries_per_cpu_s")
    # were chathub's own code free, a delivery in the layout would still cost its kernel
    # time (one send per frame: a client of a small channel gets too few to share one),
    # against all of fan-out's per delivery: the most the ratio could reach
    kernel, whole = out.get("server_sys_us_per_delivery"), fan.get("server_us_per_delivery")
    return {"scenario": "channels_layout", "n": spec.n, "channels": channels,
            "channel_size": spec.channel_size, "big_channel": spec.big_channel,
            "w": spec.window, **out, "fanout_deliveries_per_s": fan.get("deliveries_per_s"),
            "fanout_deliveries_per_cpu_s": theirs, "fanout_us_per_delivery": whole,
            "vs_fanout": round(mine / theirs, 3) if mine and theirs else None,
            "vs_fanout_kernel_ceiling": round(whole / kernel, 3) if kernel and whole else None}


async def churn(srv: ServerProc, clients: int, rounds: int, concurrency: int = 100) -> dict[str, Any]:
    """``clients`` connections each do ``rounds`` subscribe+unsubscribe pairs back to back."""
    conns = await _open(srv, clients, "churn", concurrency)
    done = 0
    failed: dict[str, int] = {}
    finished = asyncio.get_running_loop().create_future()
    left = [clients]

    def client(k: int, conn: Conn) -> None:
        name = f"churn{k}"
        sub = client_frame(json.dumps({"type": "subscribe", "channel": name}).encode())
        unsub = client_frame(json.dumps({"type": "unsubscribe", "channel": name}).encode())
        todo = [rounds]

        def listen(payload: bytes) -> None:
            nonlocal done
            if payload.startswith(b'{"type":"subscribed"'):
                conn._write(unsub)
                return
            if payload.startswith(b'{"type":"unsubscribed"'):
                done += 1
            elif payload.startswith(ERROR_PREFIX):
                code = json.loads(payload).get("code", "unknown")
                failed[code] = failed.get(code, 0) + 1
            else:
                return  # join, leave and the like
            todo[0] -= 1
            if todo[0] > 0 and time.monotonic() < deadline:
                conn._write(sub)
            else:
                left[0] -= 1
                if left[0] == 0 and not finished.done():
                    finished.set_result(None)

        conn.listener = listen
        conn._write(sub)

    cpu0, srv0, t0 = cpu_seconds(), srv.cpu_s(), time.monotonic()
    deadline = t0 + CHURN_TIMEOUT
    for k, conn in enumerate(conns):
        client(k, conn)
    try:
        await asyncio.wait_for(finished, CHURN_TIMEOUT + REPLY_TIMEOUT)
    except TimeoutError:
        failed["timeout"] = failed.get("timeout", 0) + 1
    secs = time.monotonic() - t0
    server_s, gen_s = srv.cpu_s() - srv0, cpu_seconds() - cpu0
    await _close(conns)
    return {"scenario": "channels_churn", "clients": clients, "rounds": rounds, "pairs": done,
            "pairs_per_s": round(done / secs, 1), "seconds": round(secs, 2),
            "server_cpu": round(server_s / secs, 3),
            "pairs_per_cpu_s": round(done / server_s, 1) if server_s > 0 else None,
            "generator_cpu": round(gen_s / secs, 3), "generator_bound": gen_s / secs >= 0.9,
            "errors": failed}


async def valkey_used_memory(srv: ServerProc) -> int | None:
    """``INFO memory`` → ``used_memory`` of chathub's embedded Valkey, or None."""
    if srv.data_dir is None:
        return None
    sock = srv.data_dir / "valkey" / "valkey.sock"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(sock)), 5.0)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")
        head = await asyncio.wait_for(reader.readline(), 5.0)  # seconds: a local Valkey answers at once
        body = await asyncio.wait_for(reader.readexactly(int(head[1:]) + 2), 5.0)
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()
    for line in body.decode().splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    return None


async def rss(srv: ServerProc, clients: int, per_client: int, members: int,
              concurrency: int = 100) -> dict[str, Any]:
    """KB of daemon RSS (and of Valkey ``used_memory``) per idle subscription.

    Client k takes channels ``k*K .. k*K+K-1`` (modulo the pool of C*K/M names), so each
    channel has about M members and a client none twice.
    """
    pool = max(per_client, clients * per_client // max(1, members))
    conns = await _open(srv, clients, "idle", concurrency)
    await asyncio.sleep(RSS_SETTLE)
    rss0, vk0 = srv.rss_kb(), await valkey_used_memory(srv)
    gate = asyncio.Semaphore(concurrency)
    made = 0

    async def one(k: int, conn: Conn) -> None:
        nonlocal made
        async with gate:
            for j in range(per_client):
                if await subscribe(conn, f"pool{(k * per_client + j) % pool}", REPLY_TIMEOUT):
                    made += 1

    await asyncio.gather(*(one(k, c) for k, c in enumerate(conns)))
    await asyncio.sleep(RSS_SETTLE)
    rss1, vk1 = srv.rss_kb(), await valkey_used_memory(srv)
    await _close(conns)
    subs = made or 1
    out = {"scenario": "channels_rss", "clients": clients, "per_client": per_client,
           "channels": pool, "subscriptions": made, "rss_before_mb": round(rss0 / 1024, 1),
           "rss_after_mb": round(rss1 / 1024, 1),
           "rss_per_subscription_kb": round((rss1 - rss0) / subs, 3)}
    if vk0 is not None and vk1 is not None:
        out["valkey_per_subscription_kb"] = round((vk1 - vk0) / 1024 / subs, 3)
    return out


async def channels(srv: ServerProc, ctx: Any) -> list[dict[str, Any]]:
    """The three rows of the ``channels`` scenario (chathub only: none for the peers)."""
    if srv.kind != "chathub":
        return []
    from .scenarios import _settle

    z = ctx.sizes
    # RSS first, on a heap not yet grown (and then freed) by the load
    rss_row = await rss(srv, z.rss_clients, z.rss_per_client, z.rss_members, ctx.concurrency)
    await _settle(srv)
    churn_row = await churn(srv, z.churn_clients, z.churn_rounds, ctx.concurrency)
    await _settle(srv)
    return [await layout(srv, ctx), churn_row, rss_row]
