"""The Valkey message cache: ids, history, recovery, rate limits, write-behind, outages."""

from __future__ import annotations

import asyncio
import json

from chathub.protocol import parse_id
from tests.conftest import needs_embedded_pg, needs_embedded_valkey
from tests.helpers import Chatter, assert_shared_budget, wait_for


async def _eq(aw, value) -> bool:
    return (await aw) == value


async def send_and_echo(c: Chatter, texts: list[str]) -> list[dict]:
    """Send chats and return their echoes (ids) in order."""
    for t in texts:
        await c.chat(t)
    return [await c.recv_type("chat") for _ in texts]


async def test_ids_increase_across_daemon_restart(daemon_factory):
    """Ids keep increasing after the daemon restarts on the same Valkey."""
    d1 = await daemon_factory()
    async with await Chatter.connect(d1.port, "a") as a:
        first = [m["id"] for m in await send_and_echo(a, [f"m{i}" for i in range(20)])]
    await d1.stop()
    d2 = await daemon_factory()
    async with await Chatter.connect(d2.port, "a") as a:
        second = [m["id"] for m in await send_and_echo(a, [f"n{i}" for i in range(20)])]
    ids = [parse_id(x) for x in first + second]
    assert ids == sorted(ids) and len(set(ids)) == 40


async def test_welcome_history_is_last_n_public_oldest_first(daemon_factory):
    """welcome.history: the last history_on_join public chats, oldest first, no whispers."""
    d = await daemon_factory(cache={"history_on_join": 10})
    async with await Chatter.connect(d.port, "a") as a, await Chatter.connect(d.port, "b") as b:
        sent = await send_and_echo(a, [f"h{i}" for i in range(25)])
        await a.whisper("b", "private")
        await b.recv_type("whisper")
        async with await Chatter.connect(d.port, "c") as c:
            hist = c.welcome["history"]
    assert [m["id"] for m in hist] == [m["id"] for m in sent[-10:]]
    assert all(m["type"] == "chat" for m in hist)


async def test_reconnect_with_since_recovers_exactly_what_was_missed(daemon):
    """?since=ID returns public chat after ID and own whispers after ID, recovered: true."""
    a = await Chatter.connect(daemon.port, "a")
    b = await Chatter.connect(daemon.port, "b")
    c = await Chatter.connect(daemon.port, "c")
    before = await send_and_echo(a, ["one", "two"])
    last_seen = before[-1]["id"]
    for _ in range(2):
        await b.recv_type("chat")
    await b.close()
    await a.chat("three")
    await a.whisper("c", "not for b")
    await c.whisper("a", "also not for b")
    await a.chat("four")
    await a.recv_type("chat")
    await a.recv_type("chat")
    b2 = await Chatter.connect(daemon.port, "b", since=last_seen)
    assert b2.welcome["recovered"] is True
    assert [m["text"] for m in b2.welcome["history"]] == ["three", "four"]
    # a whisper to b while this tab was away (b stayed online in another tab) is recovered too
    other_tab = await Chatter.connect(daemon.port, "b")
    await b2.close()
    await a.whisper("b", "while you were away")
    echo = await a.recv_type("whisper")
    while echo["text"] != "while you were away":  # c's earlier whisper to a may come first
        echo = await a.recv_type("whisper")
    b3 = await Chatter.connect(daemon.port, "b", since=b2.welcome["history"][-1]["id"])
    assert [m["id"] for m in b3.welcome["history"]] == [echo["id"]]
    # and nothing is delivered twice: the next live message follows
    await a.chat("five")
    assert (await b3.recv_type("chat", "whisper"))["text"] == "five"
    for x in (a, c, b3, other_tab):
        await x.close()


async def test_since_older_than_the_cache_reaches_is_not_recovered(daemon_factory):
    """A since id older than the trimmed stream gives recovered: false."""
    d = await daemon_factory(cache={"history_size": 10, "history_on_join": 5, "flush_interval": 0.05})
    async with await Chatter.connect(d.port, "a") as a:
        sent = await send_and_echo(a, [f"x{i}" for i in range(60)])
        await wait_for(lambda: _eq(d.node.cache.flush_backlog(), 0), what="flushed")
        await wait_for(lambda: _stream_len_at_most(d, 20), what="stream trimmed")
        b = await Chatter.connect(d.port, "b", since=sent[0]["id"])
        assert b.welcome["recovered"] is False
        assert b.welcome["history"][-1]["id"] == sent[-1]["id"]
        await b.close()


async def _stream_len_at_most(d, n: int) -> bool:
    # Trimming runs after each flush; a new message triggers the next flush.
    return await d.kv.client.xlen(d.node.cache.keys.stream("general")) <= n


async def test_history_paging_crosses_from_stream_to_postgres_exactly_once(daemon_factory, db):
    """Paging back from the newest message returns every public message once, stream then PostgreSQL."""
    d = await daemon_factory(cache={"history_size": 15, "history_on_join": 5, "flush_interval": 0.05})
    async with await Chatter.connect(d.port, "a") as a, await Chatter.connect(d.port, "b") as b:
        sent = []
        for i in range(120):
            await a.chat(f"p{i}")
            if i % 10 == 0:
                await a.whisper("b", f"w{i}")
        for _ in range(120 + 12):
            m = await a.recv_type("chat", "whisper")
            if m["type"] == "chat":
                sent.append(m["id"])
        await wait_for(lambda: _eq(d.node.cache.flush_backlog(), 0), what="all flushed")
        await a.chat("last")  # one more flush round trims the stream
        sent.append((await a.recv_type("chat"))["id"])
        await wait_for(lambda: _stream_len_at_most(d, 30), what="stream trimmed")
        assert await d.kv.client.xlen(d.node.cache.keys.stream("general")) < 120
        got: list[str] = []
        before = None
        while True:
            req = {"type": "history", "limit": 7}
            if before:
                req["before"] = before
            await b.send(**req)
            page = (await b.recv_type("history"))["messages"]
            if not page:
                break
            assert all(m["type"] == "chat" for m in page)
            got = [m["id"] for m in page] + got
            before = page[0]["id"]
    assert got == sent


async def test_chat_and_whisper_budgets_are_independent_and_exact(daemon_factory):
    """A burst above the limit gets exactly the expected rate_limited errors, per kind."""
    d = await daemon_factory(ratelimit={"chat_rate": 0.2, "chat_burst": 10, "whisper_rate": 0.2,
                                        "whisper_burst": 5})
    async with await Chatter.connect(d.port, "a") as a, await Chatter.connect(d.port, "b"):
        for i in range(15):
            await a.chat(f"c{i}", ref=str(i))
        results = [await a.recv_type("chat", "error") for _ in range(15)]
        assert sum(r["type"] == "chat" for r in results) == 10
        limited = [r for r in results if r["type"] == "error"]
        assert len(limited) == 5 and all(r["code"] == "rate_limited" for r in limited)
        assert all(4000 <= r["retry_after_ms"] <= 5000 for r in limited)
        for i in range(7):
            await a.whisper("b", f"w{i}")
        wres = [await a.recv_type("whisper", "error") for _ in range(7)]
        assert sum(r["type"] == "whisper" for r in wres) == 5
        assert sum(r.get("code") == "rate_limited" for r in wres) == 2
    assert d.node.hub.stats.rate_limit_hits == 7


async def test_two_connections_of_one_user_share_a_budget(daemon_factory):
    """Tabs of one user draw from one budget (it lives in Valkey, not in the connection)."""
    d = await daemon_factory(ratelimit={"chat_rate": 0.2, "chat_burst": 4})
    t1 = await Chatter.connect(d.port, "a")
    t2 = await Chatter.connect(d.port, "a")
    await assert_shared_budget(t1, t2)
    await t1.close()
    await t2.close()


async def test_retry_after_is_honest(daemon_factory):
    """Waiting retry_after_ms after a refusal is enough for the next message to pass."""
    d = await daemon_factory(ratelimit={"chat_rate": 10.0, "chat_burst": 1})
    async with await Chatter.connect(d.port, "a") as a:
        await a.chat("first")
        await a.recv_type("chat")
        await a.chat("second")
        err = await a.recv_type("error")
        assert err["code"] == "rate_limited" and 0 < err["retry_after_ms"] <= 100
        await asyncio.sleep(err["retry_after_ms"] / 1000)  # the behaviour under test is time
        await a.chat("third")
        assert (await a.recv_type("chat", "error"))["type"] == "chat"


async def test_sigkill_with_unflushed_messages_loses_nothing(spawn, daemon_factory, db):
    """Messages accepted but not flushed when the daemon is SIGKILLed reach PostgreSQL once."""
    proc = await spawn(cache={"flush_interval": 60.0})
    async with await Chatter.connect(proc.port, "a") as a:
        sent = await send_and_echo(a, [f"k{i}" for i in range(50)])
    proc.kill()
    assert await db.fetchval("SELECT count(*) FROM messages") == 0
    await daemon_factory()
    await wait_for(lambda: _eq(db.fetchval("SELECT count(*) FROM messages"), 50), what="50 rows")
    ids = [r["id"] for r in await db.fetch("SELECT id FROM messages ORDER BY id_ms, id_seq")]
    assert ids == [m["id"] for m in sent]


async def test_flush_is_idempotent_when_rows_already_exist(daemon_factory, db):
    """A batch written but not acknowledged (crash between) is written again without duplicates."""
    d = await daemon_factory(cache={"flush_interval": 60.0})
    async with await Chatter.connect(d.port, "a") as a:
        sent = await send_and_echo(a, [f"i{i}" for i in range(10)])
    # Pretend an earlier flush wrote half of them and died before XACK.
    from chathub.db import store
    from chathub.protocol import Message

    half = [Message(type="chat", id=m["id"], from_="a", text=m["text"], ts=m["ts"], channel="general")
            for m in sent[:5]]
    await store.insert_messages(d.pool, half)
    d.node.message_flusher.kick()
    await wait_for(lambda: _eq(d.node.cache.flush_backlog(), 0), what="flushed")
    assert await db.fetchval("SELECT count(*) FROM messages") == 10


@needs_embedded_pg
async def test_postgres_down_thousand_messages_all_arrive(daemon, db, pg_service, database_url):
    """PostgreSQL stopped, 1,000 messages sent, PostgreSQL started: all 1,000 rows arrive."""
    import asyncpg

    a = await Chatter.connect(daemon.port, "a")
    await db.close()
    await asyncio.to_thread(pg_service.stop)
    try:
        for i in range(1000):
            await a.chat(f"d{i}")
        for _ in range(1000):
            await a.recv_type("chat")
        await wait_for(lambda: not daemon.node.message_flusher.pg_up, what="flusher saw PostgreSQL down")
        ok, body = daemon.health()
        assert not ok and "postgres" in body["down"]
    finally:
        await asyncio.to_thread(pg_service.start)
    conn = await asyncpg.connect(database_url)
    try:
        await wait_for(lambda: _eq(conn.fetchval("SELECT count(*) FROM messages"), 1000), timeout=30,
                       what="1000 rows")
        assert await conn.fetchval("SELECT count(DISTINCT id) FROM messages") == 1000
    finally:
        await conn.close()
    await a.close()


@needs_embedded_valkey
async def test_valkey_down_gives_unavailable_and_recovers(daemon, valkey_service):
    """Valkey stopped: chat answers unavailable, healthz 503, no crash; restarted: chat works."""
    a = await Chatter.connect(daemon.port, "a")
    b = await Chatter.connect(daemon.port, "b")
    sent = await send_and_echo(a, ["before"])
    await asyncio.to_thread(valkey_service.stop)
    try:
        await a.chat("during", ref="d1")
        err = await a.recv_type("error", "chat")
        assert err["type"] == "error" and err["code"] == "unavailable" and err["ref"] == "d1"
        ok, body = daemon.health()
        assert not ok and "valkey" in body["down"]
        await a.chat("again")
        assert (await a.recv_type("error", "chat"))["code"] == "unavailable"
        await b.send(type="users")
        assert (await b.recv_type("users"))["users"] == ["a", "b"]
    finally:
        await asyncio.to_thread(valkey_service.start)
    await wait_for(lambda: daemon.kv.up, timeout=15, what="valkey back")
    await a.chat("after")
    after = await a.recv_type("chat")
    assert parse_id(after["id"]) > parse_id(sent[0]["id"])
    assert (await b.recv_type("chat"))["text"] in ("before", "after")
    assert daemon.health()[0]
    for x in (a, b):
        await x.close()


async def test_rate_limit_hits_counted_per_user_in_valkey(daemon_factory):
    """Hits are counted per user and in total in Valkey (visible to every node)."""
    d = await daemon_factory(ratelimit={"chat_rate": 0.1, "chat_burst": 1})
    async with await Chatter.connect(d.port, "spammy") as s:
        for i in range(4):
            await s.chat(f"s{i}")
        for _ in range(4):
            await s.recv_type("chat", "error")
    total, per_user = await d.node.cache.rate_limit_hits()
    assert total == 3 and per_user == {"spammy": 3}
    assert json.loads(json.dumps(per_user)) == per_user
