"""The ``degraded`` scenario: chat latency between connected clients while a dependency is slow.

``python -m bench.degraded`` (``make bench-degraded``) starts a PostgreSQL and a Valkey of
its own on loopback TCP ports, a fault proxy in front of each (tests/faultproxy.py), and
one ``chathub serve`` subprocess behind them. ``--clients`` clients connect; a few of
them chat at ``--rate`` messages per second in all. Each phase lasts ``--seconds``:

- ``healthy``: no fault;
- ``pg_slow``: 2 s added to every round trip to PostgreSQL;
- ``pg_down``: PostgreSQL stopped;
- ``valkey_slow``: 2 s added to every round trip to Valkey (more than ``valkey.timeout``);
- ``valkey_lag``: 0.2 s added to every round trip to Valkey (less than ``valkey.timeout``).

For each phase it prints the latency from a chat being sent to its delivery at
another client (p50, p99, max, in ms), how many chats were delivered, and how many
were answered with an error instead, and how long those answers took. Figures go to docs/performance.md; nothing here
asserts a time. Only loopback addresses are used; each phase is bounded in messages
and in time; only the processes started here are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import websockets

from tests.chaos.services import TcpPostgres, TcpValkey
from tests.faultproxy import FaultProxy
from tests.procs import DaemonProcess, free_port, write_config

#: seconds added per round trip for the "slow" phases
SLOW = 2.0
#: seconds added per round trip for ``valkey_lag``: slow, but under ``valkey.timeout``
LAG = 0.2
PHASES = ("healthy", "pg_slow", "pg_down", "valkey_slow", "valkey_lag")


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def phase(senders: list[Any], observer: Any, rate: float, seconds: float) -> dict[str, Any]:
    """Chat at ``rate``/s for ``seconds``; latency is send → delivery at ``observer``."""
    sent: dict[str, float] = {}
    lat: list[float] = []
    errors: dict[str, int] = {}
    #: milliseconds from sending to an error answer (when a chat is refused)
    err_lat: list[float] = []
    tag = f"{random.getrandbits(32):08x}"
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set() or len(lat) < len(sent):
            try:
                f = json.loads(await asyncio.wait_for(observer.recv(), 1.0))
            except TimeoutError:
                if stop.is_set():
                    return
                continue
            t0 = sent.get(f.get("text", "")) if f.get("type") == "chat" else None
            if t0 is not None:
                lat.append((time.perf_counter() - t0) * 1000)

    async def errs(ws: Any) -> None:
        while True:
            f = json.loads(await ws.recv())
            if f.get("type") == "error":
                errors[f["code"]] = errors.get(f["code"], 0) + 1
                t0 = sent.get(f.get("ref") or "")
                if t0 is not None:
                    err_lat.append((time.perf_counter() - t0) * 1000)

    watcher = asyncio.create_task(watch())
    readers = [asyncio.create_task(errs(s)) for s in senders]
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        text = f"{tag}-{i}"
        sent[text] = time.perf_counter()
        await senders[i % len(senders)].send(json.dumps({"type": "chat", "text": text, "ref": text}))
    stop.set()
    try:
        await asyncio.wait_for(watcher, SLOW * 3)
    except TimeoutError:
        pass
    for r in readers:
        r.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {"sent": n, "delivered": len(lat), "errors": errors,
            "p50_ms": _r(percentile(lat, 0.5)), "p99_ms": _r(percentile(lat, 0.99)),
            "max_ms": _r(max(lat) if lat else None),
            "error_p50_ms": _r(percentile(err_lat, 0.5)), "error_max_ms": _r(max(err_lat) if err_lat else None)}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="chd"))
    pg, vk = TcpPostgres(folder), TcpValkey(folder / "vk")
    hub: DaemonProcess | None = None
    proxies: list[FaultProxy] = []
    conns: list[Any] = []
    results = []
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(vk.start)
        c = await asyncpg.connect(pg.url)
        await c.execute('CREATE DATABASE "bench"')
        await c.close()
        pgp = await FaultProxy("127.0.0.1", pg.port).start()
        vkp = await FaultProxy("127.0.0.1", vk.port).start()
        proxies += [pgp, vkp]
        cfg = write_config(folder / "hub.toml", folder / "hub", {
            "database": {"url": pg.url_for("bench", pgp.port), "migrate": True},
            "valkey": {"url": vk.url_via(vkp.port), "key_prefix": "bench:"},
            "ratelimit": {"chat_rate": 1000.0, "chat_burst": 1000},
            "moderation": {"flood_repeats": 0},
            "log": {"level": "WARNING"},
        })
        hub = await DaemonProcess(cfg, free_port(), folder / "hub.log").start()
        for i in range(args.clients):
            ws = await websockets.connect(f"ws://127.0.0.1:{hub.port}/ws?user=b{i:03d}", max_queue=None)
            json.loads(await ws.recv())  # welcome
            conns.append(ws)
        observer, senders = conns[0], conns[1:1 + args.senders]
        # every connection receives every chat (websockets reads it into its queue)
        for name in args.phases.split(","):
            if name == "pg_slow":
                pgp.set_latency(up=SLOW)
            elif name == "pg_down":
                await asyncio.to_thread(pg.stop)
            elif name == "valkey_slow":
                vkp.set_latency(up=SLOW)
            elif name == "valkey_lag":
                vkp.set_latency(up=LAG)
            res = {"phase": name, **await phase(senders, observer, args.rate, args.seconds)}
            print(json.dumps(res), flush=True)
            results.append(res)
            pgp.set_latency(0, 0)
            vkp.set_latency(0, 0)
            if not await asyncio.to_thread(pg.is_running):
                await asyncio.to_thread(pg.start)
            await asyncio.sleep(1.0)  # let the hub notice the dependency is back
    finally:
        for ws in conns:
            await ws.close()
        if hub is not None:
            hub.stop()
        for p in proxies:
            await p.close()
        await asyncio.to_thread(vk.stop)
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(folder, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.degraded", description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50,
                    help="connected clients (default 50; they share this process's CPU)")
    ap.add_argument("--senders", type=int, default=10, help="clients that chat (default 10)")
    ap.add_argument("--rate", type=float, default=50.0, help="chats per second in all (default 50)")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per phase (default 10)")
    ap.add_argument("--phases", default=",".join(PHASES))
    args = ap.parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
