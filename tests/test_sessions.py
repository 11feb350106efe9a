"""Session records in PostgreSQL: one row per connection, with no loss on outages or crashes.

Clients are chathub.client.ChatClient; the kick test keeps raw frames (tests.helpers.Chatter)
to check the ``kicked`` frame and close code 4001 on the wire.
"""

from __future__ import annotations

import asyncio

from chathub import closecodes
from chathub.client import Closed
from tests.conftest import needs_embedded_pg
from tests.helpers import Chatter, connected, event, wait_for


async def count(db, sql: str, *args) -> int:
    return await db.fetchval(sql, *args)


async def test_two_hundred_sessions_with_matching_counts(daemon, db):
    """200 clients connect, send, disconnect: 200 rows whose counts match what each did."""
    clients = [await connected(daemon.port, f"user{i}") for i in range(200)]
    target = clients[0]
    # each request returns once the message is stamped: handled before its client leaves
    for i, c in enumerate(clients):
        for k in range(i % 3):
            await c.chat(f"chat {i}.{k}")
        if i % 2 and i:
            await c.whisper("user0", f"whisper {i}")
    await asyncio.gather(*(c.close() for c in clients[1:]))
    await target.close()
    await wait_for(lambda: _eq(count(db, "SELECT count(*) FROM sessions"), 200), what="200 rows")
    rows = {r["user_name"]: r for r in await db.fetch("SELECT * FROM sessions")}
    assert len(rows) == 200
    for i in range(200):
        r = rows[f"user{i}"]
        assert r["chats_sent"] == i % 3
        assert r["whispers_sent"] == (1 if i % 2 and i else 0)
        assert r["close_code"] == 1000 and r["close_reason"] == "client closed"
        assert r["node_id"] == daemon.node_id
        assert r["disconnected_at"] >= r["connected_at"] and r["duration_ms"] >= 0
        assert r["remote_addr"] == "127.0.0.1"
        assert r["frames_received"] == (i % 3) + (1 if i % 2 and i else 0)
        assert r["bytes_in"] > 0 or i % 3 == 0
        assert r["bytes_out"] > 0
    assert rows["user0"]["whispers_received"] == 100


async def _eq(aw, value) -> bool:
    return (await aw) == value


async def test_kick_is_recorded_with_code_and_reason(daemon, db):
    """A kicked session is recorded with 4001 and reason kicked."""
    c = await Chatter.connect(daemon.port, "rowdy")
    assert await daemon.kick("rowdy", "be nice") == 1
    frame = await c.recv_type("kicked")
    assert frame == {"type": "kicked", "reason": "be nice"}
    await wait_for(lambda: c.ws.close_code == closecodes.KICKED, what="close 4001")
    await wait_for(lambda: _eq(count(db, "SELECT count(*) FROM sessions WHERE close_code = 4001"), 1),
                   what="kick recorded")
    assert await db.fetchval("SELECT close_reason FROM sessions") == "be nice"


@needs_embedded_pg
async def test_sessions_wait_in_valkey_while_postgres_is_down(daemon, db, pg_service, database_url):
    """PostgreSQL stopped, 100 sessions end, PostgreSQL back: exactly 100 rows."""
    clients = [await connected(daemon.port, f"p{i}") for i in range(100)]
    await db.close()
    await asyncio.to_thread(pg_service.stop)
    try:
        await asyncio.gather(*(c.close() for c in clients))
        await wait_for(lambda: daemon.node.hub.connection_count == 0, what="all unregistered")
        await wait_for(lambda: _eq(daemon.node.sessions.waiting(), 100), what="100 sessions waiting in Valkey")
        await wait_for(lambda: not daemon.node.session_flusher.pg_up, what="flusher notices PostgreSQL down")
    finally:
        await asyncio.to_thread(pg_service.start)
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await wait_for(lambda: _eq(count(conn, "SELECT count(*) FROM sessions"), 100), timeout=20,
                       what="100 rows after PostgreSQL returns")
        assert await count(conn, "SELECT count(DISTINCT id) FROM sessions") == 100
        await wait_for(lambda: _eq(daemon.node.sessions.waiting(), 0), what="queue drained")
    finally:
        await conn.close()


async def test_sigkill_then_restart_closes_out_open_sessions(spawn, daemon_factory, db):
    """A daemon killed with open sessions: the next start closes them out as 'daemon crashed'."""
    proc = await spawn()
    clients = [await connected(proc.port, f"k{i}") for i in range(5)]
    finished = await connected(proc.port, "done")
    await finished.close()
    await wait_for(lambda: _eq(count(db, "SELECT count(*) FROM sessions WHERE user_name='done'"), 1),
                   what="finished session written")
    proc.kill()
    for c in clients:  # the dropped connection ends each client (no reconnect)
        assert isinstance(await event(c, Closed), Closed)
    await daemon_factory()
    await wait_for(lambda: _eq(count(db, "SELECT count(*) FROM sessions WHERE close_reason='daemon crashed'"), 5),
                   what="open sessions closed out")
    rows = await db.fetch("SELECT * FROM sessions WHERE close_reason='daemon crashed'")
    assert {r["user_name"] for r in rows} == {f"k{i}" for i in range(5)}
    assert all(r["disconnected_at"] is not None and r["disconnected_at"] >= r["connected_at"] for r in rows)
    assert await count(db, "SELECT count(*) FROM sessions") == 6


async def test_sigkill_loses_no_finished_session(spawn, daemon_factory, db):
    """Sessions that ended just before a SIGKILL still reach PostgreSQL after restart."""
    proc = await spawn(cache={"flush_interval": 30.0})  # the writer would wait 30 s
    clients = [await connected(proc.port, f"f{i}") for i in range(30)]
    await asyncio.gather(*(c.close() for c in clients))
    proc.kill()
    await daemon_factory()
    await wait_for(lambda: _eq(count(db, "SELECT count(*) FROM sessions"), 30), timeout=20,
                   what="30 sessions after restart")
