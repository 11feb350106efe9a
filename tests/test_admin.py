"""The admin socket and the commands on it: hello, stats, clients, kick, subscribe, status."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys

import pytest

from chathub.admin.client import AdminClient, call
from chathub.errors import AdminError
from chathub.node import Node
from tests.helpers import Chatter, wait_for


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "chathub.cli", *args],
                                   capture_output=True, text=True, timeout=60)


async def test_socket_is_private_and_answers_hello(daemon):
    """The socket has mode 0600; hello gives protocol, version and node."""
    mode = stat.S_IMODE(os.stat(daemon.cfg.admin_socket).st_mode)
    assert mode == 0o600
    reply = await call(daemon.cfg.admin_socket, "hello")
    assert reply["protocol"] == 4 and reply["node"] == daemon.node_id and reply["version"]


async def test_stats_has_every_documented_figure(daemon):
    """stats carries the figures the dashboard and docs name, with live values."""
    a = await Chatter.connect(daemon.port, "a")
    await a.chat("x")
    await a.recv_type("chat")
    s = await call(daemon.cfg.admin_socket, "stats")
    for key in ("connections", "users", "messages_per_s", "deliveries_per_s", "broadcast_queue",
                "whisper_queue", "max_backlog", "rate_limit_hits", "rate_limit_hits_last_minute",
                "slow_consumers", "flush_backlog", "sessions_waiting", "uptime_s", "cluster", "tasks"):
        assert key in s, key
    assert s["connections"] == 1 and s["users"] == 1 and s["messages_in"] == 1
    assert [n["node"] for n in s["cluster"]] == [daemon.node_id]
    await a.close()


async def test_clients_lists_each_connection(daemon):
    """clients gives one entry per connection with its counters."""
    a = await Chatter.connect(daemon.port, "amy")
    await a.chat("one")
    await a.recv_type("chat")
    reply = await call(daemon.cfg.admin_socket, "clients")
    (c,) = reply["clients"]
    assert (c["user"], c["chats_sent"], c["remote_addr"]) == ("amy", 1, "127.0.0.1")
    assert c["frames_received"] == 1 and c["backlog"] == 0 and c["over_limit_s"] == 0.0
    await a.close()


async def test_bad_requests_get_errors_and_connection_stays(daemon):
    """Not JSON, unknown command, missing field: error replies, same connection keeps working."""
    reader, writer = await asyncio.open_unix_connection(str(daemon.cfg.admin_socket))
    for line, needle in ((b"nonsense\n", "not valid JSON"), (b'{"id":1,"cmd":"fly"}\n', "unknown command"),
                         (b'{"id":2,"cmd":"kick"}\n', "missing field"), (b"[1]\n", "JSON object")):
        writer.write(line)
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        assert reply["ok"] is False and needle in reply["error"]
    writer.write(b'{"id":3,"cmd":"hello"}\n')
    assert json.loads(await reader.readline())["ok"] is True
    writer.close()


async def test_subscriber_gets_stats_and_events(daemon):
    """subscribe: a stats snapshot first, then connect/kick/disconnect events as they happen."""
    async with AdminClient(daemon.cfg.admin_socket) as admin:
        events = admin.subscribe()
        first = await anext(events)
        assert first["event"] == "stats"
        c = await Chatter.connect(daemon.port, "ev")
        await call(daemon.cfg.admin_socket, "kick", user="ev", reason="testing")
        seen = []
        while "disconnect" not in seen:
            ev = await asyncio.wait_for(anext(events), 10)
            seen.append(ev["event"])
        assert seen.index("connect") < seen.index("kick") < seen.index("disconnect")
        await c.ws.wait_closed()


async def test_subscriber_that_never_reads_does_not_slow_the_hub(daemon):
    """A subscriber that stops reading loses events; chat keeps flowing."""
    reader, writer = await asyncio.open_unix_connection(str(daemon.cfg.admin_socket))
    writer.write(b'{"id":1,"cmd":"subscribe"}\n')
    await writer.drain()
    a = await Chatter.connect(daemon.port, "a")
    for i in range(300):  # each connect/disconnect is an event for the stuck subscriber
        c = await Chatter.connect(daemon.port, f"churn{i}")
        await c.close()
    await a.chat("still fast")
    assert (await a.recv_type("chat", timeout=5))["text"] == "still fast"
    writer.close()
    await a.close()


async def test_kick_cli_exit_codes(daemon):
    """chathub kick: 0 and a count when connected, 1 when not, 2 with one line when no daemon."""
    c = await Chatter.connect(daemon.port, "target")
    sock = str(daemon.cfg.admin_socket)
    res = await cli("kick", "target", "--reason", "bye", "--socket", sock)
    assert res.returncode == 0 and "closed 1 connection of target" in res.stdout
    frame = await c.recv_type("kicked")
    assert frame["reason"] == "bye"
    res = await cli("kick", "nobody", "--socket", sock)
    assert res.returncode == 1 and "closed 0 connections" in res.stdout
    res = await cli("kick", "x", "--socket", "/nonexistent/admin.sock")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no chathub daemon" in res.stderr


@pytest.mark.parametrize("args", [
    ("kick", "bad name!"),
    ("kick", "bob", "--channel", "bad name!"),
    ("search", "x", "--user", "bad name!"),
    ("search", "x", "--channel", "bad name!"),
    ("purge", "bad name!", "--since", "1m"),
    ("delete", "1-1", "--channel", "bad name!"),
])
async def test_a_bad_user_or_channel_argument_exits_2_with_one_line(daemon, args):
    """Every command that takes a user or channel name refuses one that cannot be (exit 2,
    one line naming it), instead of asking the daemon and answering "0 connections"."""
    res = await cli(*args, "--socket", str(daemon.cfg.admin_socket))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1 and "'bad name!'" in res.stderr, res.stderr


async def test_the_admin_socket_refuses_a_bad_user_or_channel_and_records_nothing(daemon):
    """kick and search over the socket (the dashboard's path) check names too; a refused
    kick leaves no row in the audit trail."""
    sock = daemon.cfg.admin_socket
    for command, fields in (("kick", {"user": "bad name!"}),
                            ("search", {"words": "x", "user": "bad name!"}),
                            ("search", {"words": "x", "channel": "bad name!"})):
        with pytest.raises(AdminError, match="must be a"):
            await call(sock, command, **fields)
    await call(sock, "kick", user="nobody")  # a valid name is recorded, so the trail is read
    rows = await wait_for_audit(sock, "nobody")
    assert [r["target"] for r in rows if r["action"] == "kick"] == ["nobody"]


async def wait_for_audit(sock, target: str) -> list[dict]:
    """The audit rows once one names ``target`` (written beside the hub, so awaited)."""
    found: list[dict] = []

    async def has() -> bool:
        found[:] = (await call(sock, "audit"))["actions"]
        return any(r["target"] == target for r in found)

    await wait_for(has)
    return found


async def test_status_cli_table_and_json(daemon):
    """chathub status prints a table, --json the stats, --cluster the nodes."""
    sock = str(daemon.cfg.admin_socket)
    res = await cli("status", "--socket", sock)
    assert res.returncode == 0 and "connections" in res.stdout and "cache flush backlog" in res.stdout
    res = await cli("status", "--socket", sock, "--json", "--cluster")
    data = json.loads(res.stdout)
    assert data["node"] == daemon.node_id and data["cluster"][0]["node"] == daemon.node_id


async def test_no_daemon_is_a_clear_admin_error(short_dir):
    """Connecting where no daemon listens raises AdminError naming the socket."""
    with pytest.raises(AdminError, match="no chathub daemon"):
        await call(short_dir / "none.sock", "hello")


async def test_metrics_exports_stats_and_histograms(daemon):
    """/metrics has the hub's figures, counters by type and code, and both histograms."""
    a = await Chatter.connect(daemon.port, "m")
    await a.chat("x")
    await a.recv_type("chat")
    await a.send(type="nope")
    await a.recv_type("error")
    await wait_for(lambda: daemon.node.message_flusher.written == 1, what="flushed")
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    body = (await asyncio.wait_for(reader.read(), 5)).decode()
    writer.close()
    for needle in ("chathub_connections 1.0", 'chathub_messages_accepted_total{type="chat"} 1.0',
                   'chathub_errors_total{code="unknown_type"} 1.0', "chathub_fanout_seconds_count",
                   "chathub_pg_write_seconds_count", "chathub_broadcast_queue_depth",
                   "chathub_max_client_backlog_bytes", "chathub_messages_flushed_total 1.0"):
        assert needle in body, needle
    await a.close()


async def metrics_text(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    body = (await asyncio.wait_for(reader.read(), 5)).decode()
    writer.close()
    return body


async def test_closes_are_counted_by_kind_not_by_an_operators_reason(daemon, db):
    """Kicks and bans with free-text reasons count as ``kicked`` / ``banned`` on /metrics
    and in stats (a label per reason would be a series per reason forever); the session
    row keeps the reason whole."""
    sock = daemon.cfg.admin_socket
    users = ["k1", "k2", "b1"]
    clients = [await Chatter.connect(daemon.port, u) for u in users]
    await call(sock, "kick", user="k1", reason="spam from 203.0.113.7")
    await call(sock, "kick", user="k2", reason="flooding #lobby at 12:00")
    await call(sock, "ban", user="b1", reason="raid 2026-11-29")
    for c, kind in zip(clients, ("kicked", "kicked", "banned"), strict=True):
        await c.recv_type(kind)
    await wait_for(lambda: sum(daemon.node.hub.stats.by_close.values()) == 3, what="3 closes")
    assert daemon.node.hub.stats.by_close == {"kicked": 2, "banned": 1}
    body = await metrics_text(daemon.port)
    closes = [ln for ln in body.splitlines() if ln.startswith("chathub_closes_total")]
    assert sorted(closes) == ['chathub_closes_total{reason="banned"} 1.0',
                              'chathub_closes_total{reason="kicked"} 2.0'], closes
    assert (await call(sock, "stats"))["closes"] == {"kicked": 2, "banned": 1}

    async def recorded() -> bool:
        return await db.fetchval("SELECT count(*) FROM sessions WHERE disconnected_at IS NOT NULL") == 3

    await wait_for(recorded, what="3 session rows")
    rows = dict(await db.fetch("SELECT user_name, close_reason FROM sessions"))
    assert rows == {"k1": "spam from 203.0.113.7", "k2": "flooding #lobby at 12:00",
                    "b1": "raid 2026-11-29"}


async def test_the_admin_socket_answers_before_the_listener_opens(daemon_factory, monkeypatch):
    """A daemon that answers /healthz answers on its admin socket too: the socket is served
    before the listener opens (what a supervisor or a test polling /healthz relies on)."""
    seen: list[dict] = []
    real = Node.listen

    async def listen(self: Node) -> None:
        seen.append(await call(self.cfg.admin_socket, "hello"))
        assert self.server is None  # nothing listens yet
        await real(self)

    monkeypatch.setattr(Node, "listen", listen)
    d = await daemon_factory()
    assert [h["node"] for h in seen] == [d.node_id]
    assert d.port > 0
