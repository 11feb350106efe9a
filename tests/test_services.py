"""The embedded default: chathub serve starting, reusing and recovering its own services."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import asyncpg
import valkey.asyncio as valkey

from chathub.protocol import parse_id
from chathub.services import EmbeddedPostgres, EmbeddedValkey
from tests.helpers import Chatter
from tests.procs import DaemonProcess, free_port


async def test_embedded_services_survive_sigkill_and_restart(short_dir):
    """Killed with SIGKILL, both servers start again on the same folders with their data."""
    pg, kv = EmbeddedPostgres(short_dir), EmbeddedValkey(short_dir)
    await asyncio.to_thread(pg.start)
    await asyncio.to_thread(kv.start)
    try:
        conn = await asyncpg.connect(pg.url)
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        await conn.close()
        r = valkey.from_url(kv.url)
        await r.set("kept", "yes")
        await r.execute_command("BGREWRITEAOF")
        await r.aclose()
        pg_pid = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
        kv_pid = int(kv.pidfile.read_text())
        os.kill(pg_pid, signal.SIGKILL)
        os.kill(kv_pid, signal.SIGKILL)
        await asyncio.to_thread(_wait_gone, pg_pid)
        await asyncio.to_thread(_wait_gone, kv_pid)
        pg2, kv2 = EmbeddedPostgres(short_dir), EmbeddedValkey(short_dir)
        await asyncio.to_thread(pg2.start)  # stale postmaster.pid and socket: recovered
        await asyncio.to_thread(kv2.start)  # stale socket file: replaced
        conn = await asyncpg.connect(pg2.url)
        assert await conn.fetchval("SELECT x FROM kept") == 42
        await conn.close()
        r = valkey.from_url(kv2.url)
        assert await r.get("kept") == b"yes"
        assert (await r.config_get("appendonly"))["appendonly"] == "yes"
        await r.aclose()
    finally:
        await asyncio.to_thread(EmbeddedValkey(short_dir).stop)
        await asyncio.to_thread(EmbeddedPostgres(short_dir).stop)


def _wait_gone(pid: int) -> None:
    import time

    for _ in range(500):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} did not exit")


async def test_serve_on_embedded_default_then_stop_and_reuse(short_dir):
    """serve with only a data dir: chat works, SIGTERM exits 0 and stops both servers, a restart reuses them."""
    data = short_dir / "data"
    cfg = short_dir / "c.toml"
    cfg.write_text(f'data_dir = "{data}"\n[moderation]\nflood_repeats = 0\n')
    port = free_port()
    first = await DaemonProcess(cfg, port, short_dir / "1.log").start()
    async with await Chatter.connect(port, "alice") as a:
        await a.chat("hello embedded")
        one = await a.recv_type("chat")
    assert await first.terminate() == 0
    assert not EmbeddedPostgres(data).is_running()
    assert not EmbeddedValkey(data).is_running()
    assert not (data / "admin.sock").exists()
    second = await DaemonProcess(cfg, port, short_dir / "2.log").start()
    try:
        async with await Chatter.connect(port, "bob") as b:
            assert [m["text"] for m in b.welcome["history"]] == ["hello embedded"]
            await b.chat("again")
            two = await b.recv_type("chat")
        assert parse_id(two["id"]) > parse_id(one["id"])
        assert await second.terminate() == 0
    finally:
        second.stop()


async def test_serve_after_sigkill_adopts_running_services(short_dir):
    """A daemon killed with SIGKILL leaves its servers running; the next serve adopts them."""
    data = short_dir / "data"
    cfg = short_dir / "c.toml"
    cfg.write_text(f'data_dir = "{data}"\n')
    port = free_port()
    first = await DaemonProcess(cfg, port, short_dir / "1.log").start()
    first.kill()
    assert EmbeddedValkey(data).is_running() and EmbeddedPostgres(data).is_running()
    second = await DaemonProcess(cfg, port, short_dir / "2.log").start()  # stale admin socket replaced
    try:
        async with await Chatter.connect(port, "carol") as c:
            assert c.welcome["type"] == "welcome"
        assert "adopting embedded" in (short_dir / "2.log").read_text()
        assert await second.terminate() == 0
    finally:
        second.stop()
    assert not EmbeddedValkey(data).is_running()


async def test_second_daemon_on_live_socket_refuses(short_dir):
    """A second serve on a data dir whose daemon is alive refuses with one line."""
    data = short_dir / "data"
    cfg = short_dir / "c.toml"
    cfg.write_text(f'data_dir = "{data}"\n')
    first = await DaemonProcess(cfg, free_port(), short_dir / "1.log").start()
    try:
        res = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "chathub.cli", "serve", "--config", str(cfg),
                             "--port", str(free_port())], capture_output=True, text=True, timeout=60)
        assert res.returncode == 1
        assert "another chathub daemon is running" in res.stderr and "Traceback" not in res.stderr
    finally:
        first.stop()


def test_the_pgserver_internals_chathub_uses_are_there():
    """The binaries' folder and the permission helpers (services.pgserver_parts) still exist."""
    from chathub.services import pgserver_parts

    parts = pgserver_parts()
    assert (parts.bin_path / "postgres").exists() and (parts.bin_path / "pg_ctl").exists()
    assert all(callable(f) for f in (parts.ensure_user_exists, parts.ensure_prefix_permissions,
                                     parts.ensure_folder_permissions))
