"""Day two on the embedded servers: PostgreSQL stopped under a running daemon, as an
operator (or the OOM killer) would, and brought back by restarting chathub
(docs/failure-modes.md, "When the embedded servers stop").

The daemon is a real ``chathub serve`` subprocess on a data dir of its own, so its
PostgreSQL can be stopped without touching the suite's.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from chathub.admin.client import call
from chathub.services import EmbeddedPostgres
from tests.helpers import Chatter, wait_for
from tests.procs import DaemonProcess, free_port

#: seconds the daemon's probe may take to notice PostgreSQL gone (it probes every second)
NOTICE_TIMEOUT = 10.0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chathub.cli", *args], capture_output=True,
                          text=True, timeout=60)


def _health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_postgres_stopped_under_the_daemon_then_a_restart_brings_it_back(short_dir: Path):
    """PostgreSQL stops: chat goes on, /healthz says 503 naming it, ban refuses in one line
    saying why; it stays down (nothing restarts it); SIGTERM and serve again start it, and
    the message sent meanwhile is in PostgreSQL."""
    data = short_dir / "data"
    cfg = short_dir / "c.toml"
    cfg.write_text(f'data_dir = "{data}"\n[cache]\nflush_interval = 0.2\n')
    proc = await DaemonProcess(cfg, free_port(), short_dir / "serve.log").start()
    sock = str(data / "admin.sock")
    try:
        await asyncio.to_thread(EmbeddedPostgres(data).stop)

        async def pg_down() -> bool:
            return (await call(sock, "stats"))["postgres_up"] is False
        await wait_for(pg_down, timeout=NOTICE_TIMEOUT, what="the daemon to see PostgreSQL down")
        status, body = await asyncio.to_thread(_health, proc.port)
        assert status == 503 and body["down"] == ["postgres"], body
        async with await Chatter.connect(proc.port, "ann") as ann:
            await ann.chat("sent while postgres was down")
            echoed = await ann.recv_type("chat")
        banned = await asyncio.to_thread(_cli, "ban", "zed", "--socket", sock)
        assert banned.returncode != 0
        assert banned.stderr.strip().splitlines() == [
            "chathub: bans are recorded in PostgreSQL, which is unavailable (no server socket "
            "there); nothing changed"], banned.stderr
        assert not await asyncio.to_thread(EmbeddedPostgres(data).is_running)

        assert await proc.terminate() == 0
        await proc.start()
        assert (await asyncio.to_thread(_health, proc.port))[0] == 200

        async def flushed() -> bool:
            hits = (await call(sock, "search", words="postgres"))["hits"]
            return [h["id"] for h in hits] == [echoed["id"]]
        await wait_for(flushed, timeout=NOTICE_TIMEOUT, what="the waiting message in PostgreSQL")
        again = await asyncio.to_thread(_cli, "ban", "zed", "--socket", sock)
        assert again.returncode == 0 and "banned zed" in again.stdout, again.stderr
        assert await proc.terminate() == 0
    finally:
        proc.stop()
