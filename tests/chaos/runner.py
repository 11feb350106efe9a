"""A chaos run: three hubs on one Valkey and PostgreSQL, clients chatting, scheduled faults.

``python -m tests.chaos.runner --seed 1 --duration 600`` (or ``make chaos SEED=1
DURATION=600``) starts a PostgreSQL and a Valkey of the run's own on loopback TCP
ports, a :class:`~tests.faultproxy.FaultProxy` in front of each, three ``chathub
serve`` processes behind them, and the clients of :mod:`tests.chaos.clients` (50 by
default, one message every ``interval`` seconds each). It plays the fixed-seed
schedule of :mod:`tests.chaos.schedule`, then stops the clients, lets the hubs flush,
stops them with SIGTERM and runs :mod:`tests.chaos.checker` over what the clients saw
and what PostgreSQL holds. It prints the verdict as JSON (and writes it to ``--out``)
and exits 1 when a violation is left unexplained.

Everything listens on 127.0.0.1; every loop is bounded by the run's duration; only the
processes the run started are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from chathub.admin.client import call
from chathub.errors import AdminError
from tests.chaos import checker
from tests.chaos.clients import ChaosClient, Conn
from tests.chaos.schedule import Fault, make_schedule
from tests.chaos.services import TcpPostgres, TcpValkey
from tests.faultproxy import FaultProxy
from tests.procs import DaemonProcess, free_port, write_config

log = logging.getLogger("chaos")

#: hubs in the cluster
HUBS = 3
#: seconds the hubs get to flush everything to PostgreSQL once the clients are gone
SETTLE_TIMEOUT = 60.0
#: the database the run writes to
DB = "chaos"


class Run:
    """One chaos run; see the module docstring."""

    def __init__(self, seed: int, duration: float, clients: int, interval: float,
                 folder: Path) -> None:
        self.seed = seed
        self.duration = duration
        self.n_clients = clients
        self.interval = interval
        self.folder = folder
        self.pg = TcpPostgres(folder)
        self.vk = TcpValkey(folder / "vk")
        self.schedule = make_schedule(seed, duration, HUBS)
        self.hubs: list[DaemonProcess] = []
        self.clients: list[ChaosClient] = []
        self.conns: list[Conn] = []
        #: faults as they happened: run-relative start and length
        self.done: list[dict[str, Any]] = []
        self.valkey_kills_wall: list[float] = []
        self.t0 = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def start(self) -> None:
        await asyncio.to_thread(self.pg.start)
        await asyncio.to_thread(self.vk.start)
        conn = await asyncpg.connect(self.pg.url)
        await conn.execute(f'CREATE DATABASE "{DB}"')
        await conn.close()
        self.pg_proxy = await FaultProxy("127.0.0.1", self.pg.port).start()
        self.vk_proxy = await FaultProxy("127.0.0.1", self.vk.port).start()
        sections: dict[str, dict[str, Any]] = {
            "database": {"url": self.pg.url_for(DB, self.pg_proxy.port), "migrate": True},
            "valkey": {"url": self.vk.url_via(self.vk_proxy.port), "key_prefix": "chaos:"},
            "cache": {"flush_interval": 0.2},
            "ratelimit": {"chat_rate": 1000.0, "chat_burst": 1000, "whisper_rate": 1000.0,
                          "whisper_burst": 1000, "request_rate": 1000.0, "request_burst": 1000},
            "moderation": {"flood_repeats": 0},
            "hub": {"node_ttl": 3.0},
            "server": {"drain_timeout": 5.0},
            "log": {"level": "INFO"},
        }
        for n in range(HUBS):  # one after another: the first applies the migrations
            cfg = write_config(self.folder / f"h{n}.toml", self.folder / f"h{n}", sections)
            hub = DaemonProcess(cfg, free_port(), self.folder / f"h{n}.log")
            self.hubs.append(await hub.start())

    async def play(self) -> None:
        rng = random.Random(self.seed)
        users = [f"u{i:02d}" for i in range(self.n_clients)]
        self.t0 = time.monotonic()
        ports = [h.port for h in self.hubs]
        self.clients = [ChaosClient(i, users, ports, self.interval, random.Random(rng.random()),
                                    self.conns, self.t0) for i in range(self.n_clients)]
        tasks = [asyncio.create_task(c.run()) for c in self.clients]
        for f in self.schedule:
            await asyncio.sleep(max(0.0, f.at - self.now()))
            await self.fault(f)
        await asyncio.sleep(max(0.0, self.duration - self.now()))
        self.run_end = self.now()
        await asyncio.gather(*(c.stop() for c in self.clients))
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

    async def fault(self, f: Fault) -> None:
        started = self.now()
        log.info("t=%.1f %s %s for %.1fs", started, f.kind, f.params, f.down)
        if f.kind == "hub_kill":
            hub = self.hubs[f.params["hub"]]
            hub.kill()
            await asyncio.sleep(f.down)
            await hub.start()
        elif f.kind == "valkey_kill":
            self.valkey_kills_wall.append(time.time())
            await asyncio.to_thread(self.vk.kill)
            await asyncio.sleep(f.down)
            await asyncio.to_thread(self.vk.start)
        elif f.kind == "pg_stop":
            await asyncio.to_thread(self.pg.stop)
            await asyncio.sleep(f.down)
            await asyncio.to_thread(self.pg.start)
        elif f.kind in ("pg_slow", "valkey_slow"):
            proxy = self.pg_proxy if f.kind == "pg_slow" else self.vk_proxy
            proxy.set_latency(up=f.params["latency"])
            await asyncio.sleep(f.down)
            proxy.set_latency(0, 0)
        elif f.kind == "client_drop":
            picks = random.Random(f.params["seed"]).sample(self.clients, f.params["count"])
            f.params["dropped"] = sum(c.drop() for c in picks)
        self.done.append({**f.as_dict(), "at": round(started, 2),
                          "down": round(self.now() - started, 2)})

    async def settle(self) -> None:
        """Wait until the hubs have flushed every message and session, then SIGTERM them."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        sock = self.folder / "h0" / "admin.sock"
        while time.monotonic() < deadline:
            try:
                st = await call(sock, "stats")
                if st.get("flush_backlog") == 0 and st.get("sessions_waiting") == 0:
                    break
            except (AdminError, OSError):
                pass
            await asyncio.sleep(0.2)
        else:
            log.warning("the hubs did not flush everything within %.0fs", SETTLE_TIMEOUT)
        for h in self.hubs:
            await h.terminate()

    async def verdict(self) -> checker.Verdict:
        conn = await asyncpg.connect(self.pg.url_for(DB))
        try:
            msgs = [dict(r) for r in await conn.fetch("SELECT id, sender, recipient, text FROM messages")]
            sess = [dict(r) for r in await conn.fetch("SELECT id FROM sessions")]
        finally:
            await conn.close()
        self.rows = {"messages": msgs, "sessions": sess}
        return checker.check([c.as_dict() for c in self.conns], self.done, self.run_end,
                             self.valkey_kills_wall, msgs, sess)

    async def close(self) -> None:
        for h in self.hubs:
            await asyncio.to_thread(h.stop)
        for p in (getattr(self, "pg_proxy", None), getattr(self, "vk_proxy", None)):
            if p is not None:
                await p.close()
        await asyncio.to_thread(self.vk.stop)
        await asyncio.to_thread(self.pg.stop)


async def run(seed: int, duration: float, clients: int = 50, interval: float = 2.0,
              out: Path | None = None) -> dict[str, Any]:
    """One whole run; returns the report (schedule, faults as played, verdict)."""
    folder = Path(tempfile.mkdtemp(prefix="chc"))
    r = Run(seed, duration, clients, interval, folder)
    try:
        await r.start()
        await r.play()
        await r.settle()
        verdict = await r.verdict()
    finally:
        await r.close()
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            for f in folder.glob("h*.log"):
                shutil.copy(f, out / f.name)
        shutil.rmtree(folder, ignore_errors=True)
    report = {"seed": seed, "duration": duration, "clients": clients, "interval": interval,
              "faults": r.done, "messages_sent": sum(c.sent for c in r.clients),
              "verdict": verdict.as_dict()}
    if out is not None:
        (out / "report.json").write_text(json.dumps(report, indent=2))
        (out / "connections.json").write_text(json.dumps([c.as_dict() for c in r.conns]))
        (out / "rows.json").write_text(json.dumps(getattr(r, "rows", {})))
        (out / "played.json").write_text(json.dumps(
            {"faults": r.done, "run_end": getattr(r, "run_end", 0.0),
             "valkey_kills_wall": r.valkey_kills_wall}))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos.runner", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of faults and chat")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between one client's messages")
    ap.add_argument("--out", type=Path, default=None, help="folder for report.json and hub logs")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = asyncio.run(run(args.seed, args.duration, args.clients, args.interval, args.out))
    print(json.dumps(report, indent=2))
    return 0 if report["verdict"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
