"""Operator actions beyond kick: the audit trail, live limits on every hub, reload by
SIGHUP and by ``chathub reload``; their CLI commands."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chathub.admin.client import call
from chathub.cli.moderation import parse_assignments, parse_since
from chathub.db.audit import AuditLog
from chathub.errors import AdminError
from chathub.kv import KV
from chathub.limits import parse_value
from tests.helpers import Chatter, wait_for
from tests.procs import START_TIMEOUT


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "chathub.cli", *args],
                                   capture_output=True, text=True, timeout=60)


ME = pwd.getpwuid(os.getuid()).pw_name

# -- audit ------------------------------------------------------------------------------------


async def test_kick_is_recorded_with_the_peer_unix_user(daemon, db):
    """A kick over the socket lands in admin_actions with SO_PEERCRED's uid and user name."""
    async with await Chatter.connect(daemon.port, "mallory"):
        reply = await call(daemon.cfg.admin_socket, "kick", user="mallory", reason="spam")
    assert reply["closed"] == 1

    async def written() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM admin_actions"))
    await wait_for(written, what="the audit row in PostgreSQL")
    row = await db.fetchrow("SELECT * FROM admin_actions")
    assert (row["action"], row["target"], row["by_uid"], row["by_user"]) == \
        ("kick", "mallory", os.getuid(), ME)
    assert json.loads(row["arguments"]) == {"reason": "spam", "closed": 1}
    out = await cli("audit", "--socket", str(daemon.cfg.admin_socket), "--json", "--since", "1h")
    assert out.returncode == 0, out.stderr
    (action,) = json.loads(out.stdout)["actions"]
    assert action["id"] == row["id"] and action["by_user"] == ME and "waiting" not in action
    out = await cli("audit", "--socket", str(daemon.cfg.admin_socket))
    assert out.returncode == 0 and "mallory" in out.stdout and "kick" in out.stdout


async def test_audit_waits_in_valkey_while_postgres_refuses(database_url, valkey_url, key_prefix, db):
    """While PostgreSQL refuses the write, the action waits in Valkey and is listed as
    waiting; once PostgreSQL takes writes again it is written once."""
    import asyncpg

    from chathub.db import migrate as migrations

    await migrations.migrate(db)
    kv = KV(valkey_url, 2.0, key_prefix)
    await kv.connect()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    audit = AuditLog(kv, pool, "n1", interval=0.05)
    await audit.flusher.setup()
    await db.execute("ALTER TABLE admin_actions RENAME TO admin_actions_away")
    task = asyncio.create_task(audit.flusher.run())
    try:
        entry = await audit.record("kick", "zed", {"reason": "x"}, 1000, "op")
        await wait_for(lambda: not audit.flusher.pg_up, what="the write to fail")
        listed = await audit.list()
        assert listed["postgres"] is False
        assert [(a["id"], a.get("waiting")) for a in listed["actions"]] == [(entry["id"], True)]
        await db.execute("ALTER TABLE admin_actions_away RENAME TO admin_actions")
        audit.flusher.kick()

        async def written() -> bool:
            return await db.fetchval("SELECT count(*) FROM admin_actions WHERE id = $1", entry["id"]) == 1
        await wait_for(written, what="the waiting action in PostgreSQL")
        await wait_for(lambda: audit.flusher.pg_up)
        listed = await audit.list()
        assert [(a["id"], a.get("waiting")) for a in listed["actions"]] == [(entry["id"], None)]
        assert await kv.client.xlen(audit.stream) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()
        await kv.close()


# -- live limits ------------------------------------------------------------------------------


def test_limit_values_are_checked():
    assert parse_assignments(["chat_rate=2", "chat_burst= 4"]) == {"chat_rate": 2.0, "chat_burst": 4}
    for bad, needle in ((["chat_rate"], "KEY=VALUE"), (["speed=3"], "unknown limit"),
                        (["chat_rate=0"], "more than 0"), (["chat_burst=0"], "at least 1"),
                        (["chat_burst=2.5"], "integer"), (["flood_window=nan"], "finite"),
                        (["flood_repeats=-1"], "at least 0")):
        with pytest.raises(ValueError, match=needle):
            parse_assignments(bad)
    assert parse_value("flood_repeats", 0) == 0
    with pytest.raises(ValueError):
        parse_value("chat_burst", True)


def limits_of(daemon) -> tuple[float, int]:
    r = daemon.node.cfg.ratelimit
    return r.chat_rate, r.chat_burst


async def test_limits_reach_every_hub_and_survive_a_restart(daemon_factory):
    """limits set on one hub apply on all three within a second, refuse chat on another hub
    at the new burst, apply at once on a hub started later, and reset restores the config."""
    hubs = [await daemon_factory(hub={"node_id": f"lim{i}"}) for i in range(3)]
    config = limits_of(hubs[0])
    assert config == (10000.0, 10000)
    reply = await call(hubs[0].cfg.admin_socket, "limits_set",
                       values={"chat_rate": 0.01, "chat_burst": 4})
    assert reply["limits"]["chat_burst"] == 4 and reply["override"] == {"chat_rate": 0.01, "chat_burst": 4}
    started = time.monotonic()
    await wait_for(lambda: all(limits_of(h) == (0.01, 4) for h in hubs), timeout=1.0,
                   what="the limits on every hub")
    assert time.monotonic() - started < 1.0
    async with await Chatter.connect(hubs[2].port, "fast") as c:
        for i in range(5):
            await c.chat(f"m{i}")
        got = [await c.recv_type("chat", "error") for _ in range(5)]
    # errors go straight back, chats through the fan-out: count, do not order
    assert sorted(f.get("code", f["type"]) for f in got) == ["chat"] * 4 + ["rate_limited"]

    await hubs[2].stop()
    later = await daemon_factory(hub={"node_id": "lim3"})
    assert limits_of(later) == (0.01, 4)  # read at start, before the first message
    shown = await call(later.cfg.admin_socket, "limits")
    assert shown["config"]["chat_burst"] == 10000 and shown["limits"]["chat_burst"] == 4

    out = await cli("limits", "reset", "--socket", str(later.cfg.admin_socket), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["override"] == {}
    await wait_for(lambda: all(limits_of(h) == config for h in (hubs[0], hubs[1], later)),
                   timeout=1.0, what="the config values on every hub")
    audit = await call(later.cfg.admin_socket, "audit")
    assert [a["action"] for a in audit["actions"]] == ["limits_reset", "limits_set"]


async def test_flood_limits_rebuild_the_filter(daemon):
    """flood_repeats set live: the same text a third time is refused (it was off)."""
    await call(daemon.cfg.admin_socket, "limits_set", values={"flood_repeats": 2})
    async with await Chatter.connect(daemon.port, "echo") as c:
        for _ in range(3):
            await c.chat("same")
        got = [await c.recv_type("chat", "error") for _ in range(3)]
    assert sorted(f.get("code", f["type"]) for f in got) == ["blocked", "chat", "chat"]


async def test_limits_cli_input_and_no_daemon(short_dir):
    sock = str(short_dir / "none.sock")
    bad = await cli("limits", "set", "chat_rate=fast", "--socket", sock)
    assert bad.returncode == 2 and "chat_rate must be a number" in bad.stderr
    assert "Traceback" not in bad.stderr
    for args in (["limits"], ["limits", "set", "chat_rate=2"], ["limits", "reset"], ["reload"],
                 ["audit"]):
        out = await cli(*args, "--socket", sock)
        assert out.returncode == 2 and "no chathub daemon" in out.stderr, args
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    out = await cli("audit", "--since", "later", "--socket", sock)
    assert out.returncode == 2 and "--since" in out.stderr


def test_since_accepts_durations_and_dates():
    now = 1_700_000_000.0
    assert parse_since("30m", now) == int((now - 1800) * 1000)
    assert parse_since("2d", now) == int((now - 172800) * 1000)
    assert parse_since("2024-05-01", now) == 1714521600000
    assert parse_since("2024-05-01T02:00+02:00", now) == 1714521600000
    with pytest.raises(ValueError):
        parse_since("yesterday", now)


@pytest.mark.parametrize("text", ["99999999999d", "1969-12-31", "0001-01-01"])
def test_since_before_1970_is_refused_in_one_line(text):
    """A --since before the epoch is bad input, not "year -273788674 is out of range"
    from the daemon (audit) or a query over nothing (search)."""
    with pytest.raises(ValueError, match="before 1970"):
        parse_since(text, 1_700_000_000.0)


# -- reload -----------------------------------------------------------------------------------


async def test_sighup_applies_live_keys_and_names_the_others(spawn):
    """SIGHUP: a changed rate limit and blocklist apply; a changed max_text_chars is named
    in one log line and left as it was. chathub reload then reports the same."""
    proc = await spawn()
    sock = str(Path(proc.config).parent / f"{Path(proc.config).stem}" / "admin.sock")
    text = proc.config.read_text()
    assert "chat_rate = 10000.0" in text
    assert "[server]" not in text
    proc.config.write_text(text.replace("chat_rate = 10000.0", "chat_rate = 3.0")
                           + "[server]\nmax_text_chars = 100\n")
    os.kill(proc.pid, signal.SIGHUP)

    def logged() -> bool:
        return "reload: applied ratelimit.chat_rate" in proc.log.read_text()
    await wait_for(logged, what="the reload log line")
    log = proc.log.read_text()
    (line,) = [ln for ln in log.splitlines() if "cannot change while chathub runs" in ln]
    assert "server.max_text_chars" in line and "ratelimit" not in line
    shown = await call(sock, "limits")
    assert shown["limits"]["chat_rate"] == 3.0 and shown["config"]["chat_rate"] == 3.0
    async with await Chatter.connect(proc.port, "long") as c:  # max_text_chars is still 2000
        await c.chat("x" * 500)
        assert (await c.recv_type("chat", "error"))["type"] == "chat"

    proc.config.write_text(proc.config.read_text().replace(
        "flood_repeats = 0", 'flood_repeats = 0\nblocklist = ["darn"]'))
    out = await cli("reload", "--socket", sock, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["applied"] == ["moderation.blocklist"] and result["ignored"] == ["server.max_text_chars"]
    async with await Chatter.connect(proc.port, "rude") as c:
        await c.chat("oh darn")
        err = await c.recv_type("chat", "error")
    assert err["type"] == "error" and err["code"] == "blocked"
    audit = await call(sock, "audit")
    assert [(a["action"], a["by_user"]) for a in audit["actions"]] == [("reload", ME), ("reload", "SIGHUP")]

    proc.config.write_text("this is not toml [")
    out = await cli("reload", "--socket", sock)
    assert out.returncode == 2 and "not reloaded" in out.stderr and "Traceback" not in out.stderr
    assert (await call(sock, "limits"))["limits"]["chat_rate"] == 3.0


async def test_reload_in_a_worker_says_it_reached_one_and_names_the_supervisor(spawn):
    """serve --workers 2: chathub reload on worker 0's socket applies there, says the other
    worker kept its configuration and names the supervisor's pid; SIGHUP to that pid then
    brings worker 1 along."""
    proc = await spawn(workers=2)
    data = Path(proc.config).parent / Path(proc.config).stem
    socks = [str(data / "admin.sock"), str(data / "admin-1.sock")]

    async def both_up() -> bool:  # /healthz answers once one worker listens
        try:
            return all([await call(s, "hello") for s in socks])
        except AdminError:
            return False
    await wait_for(both_up, timeout=START_TIMEOUT, what="both workers' admin sockets")
    proc.config.write_text(proc.config.read_text().replace("chat_rate = 10000.0", "chat_rate = 7.0"))
    out = await cli("reload", "--socket", socks[0])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "applied: ratelimit.chat_rate",
        "this was one worker of 'serve --workers'; the others keep their configuration: "
        f"kill -HUP {proc.pid} (the supervisor) reloads every worker"]
    assert [(await call(s, "limits"))["limits"]["chat_rate"] for s in socks] == [7.0, 10000.0]
    os.kill(proc.pid, signal.SIGHUP)

    async def both() -> bool:
        return [(await call(s, "limits"))["limits"]["chat_rate"] for s in socks] == [7.0, 7.0]
    await wait_for(both, what="worker 1 reloaded by the supervisor's SIGHUP")
