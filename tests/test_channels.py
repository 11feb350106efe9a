"""Channels (protocol v2) against real Valkey and PostgreSQL, with real clients.

Behaviour is tested through chathub.client.ChatClient. Raw frames (tests.helpers.Chatter)
stay in the v1-compatibility test (the exact welcome and join frames a v1 client reads)
and for refused frames (bad names, bad ``since``, a channel given as a number: input
the client library would never send).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest

from chathub import protocol
from chathub.admin.client import call
from chathub.client import Chat, Forbidden, Join, Leave, TooManyChannels, UnknownChannel
from chathub.cluster.nodes import CRASHED
from chathub.db import migrate as migrations
from chathub.edge import auth
from chathub.keys import Keys
from tests.conftest import with_db
from tests.helpers import Chatter, chat_client, connected, event, quiet_events, wait_for

SECRET = "c" * 40


async def test_a_v1_client_sees_no_difference(daemon):
    """Welcome keeps v1's fields (plus protocol 2 and channels); chat without channel works."""
    a = await Chatter.connect(daemon.port, "a")
    assert a.welcome["protocol"] == 2 and a.welcome["channels"] == ["general"]
    assert a.welcome["users"] == ["a"]
    await a.chat("hello", ref="r")
    echo = await a.recv_type("chat")
    assert echo["text"] == "hello" and echo["channel"] == "general" and echo["ref"] == "r"
    b = await Chatter.connect(daemon.port, "b")
    assert [m["text"] for m in b.welcome["history"]] == ["hello"]
    join = await a.recv_type("join")
    assert join == {"type": "join", "user": "b", "ts": join["ts"], "channel": "general"}
    await b.close()
    assert (await a.recv_type("leave"))["user"] == "b"
    await a.close()


async def test_chat_reaches_only_the_channel_and_replies_carry_it(daemon):
    a, b, c = [await connected(daemon.port, u) for u in "abc"]
    sub = await a.subscribe("games")
    assert (sub.channel, sub.users, sub.history) == ("games", ["a"], [])
    assert (await b.subscribe("games")).users == ["a", "b"]
    joins = [await event(a, Join) for _ in range(3)]
    assert [(j.user, j.channel) for j in joins] == [("b", "general"), ("c", "general"),
                                                    ("b", "games")]
    await a.chat("gg", channel="games")
    for x in (a, b):
        m = await event(x, Chat)
        assert (m.text, m.channel) == ("gg", "games")
    await a.chat("marker")  # in general: everyone gets it; c must not have had "gg" before
    assert (await event(c, Chat)).text == "marker"
    assert not [e for e in await quiet_events(c) if getattr(e, "channel", None) == "games"]
    assert (await b.unsubscribe("games")).channel == "games"
    leave = await event(a, Leave)
    assert (leave.user, leave.channel) == ("b", "games")
    await asyncio.gather(*(x.close() for x in (a, b, c)))


async def test_join_and_leave_once_per_user_across_tabs(daemon):
    watcher = await connected(daemon.port, "w")
    await watcher.subscribe("room")
    tab1 = await connected(daemon.port, "t")
    tab2 = await connected(daemon.port, "t")
    await tab1.subscribe("room")
    await tab2.subscribe("room")
    await tab1.close()
    await watcher.chat("marker", channel="room")
    await event(watcher, Chat)
    events = [e for e in await quiet_events(watcher) if getattr(e, "channel", None) == "room"]
    # the join came before the marker; the first tab's close is no leave
    assert [e for e in events if isinstance(e, (Join, Leave))] == []
    await tab2.close()
    assert (await event(watcher, Leave)).user == "t"
    await watcher.close()


async def test_history_and_since_per_channel(daemon):
    a = await connected(daemon.port, "a")
    await a.subscribe("x")
    await a.subscribe("y")
    ids = {}
    for ch in ("x", "y"):
        for i in range(3):
            ids[f"{ch}{i}"] = (await a.chat(f"{ch}{i}", channel=ch)).id
    older = [m async for m in a.history("x")]  # newest first
    assert [m.text for m in older] == ["x2", "x1", "x0"] and {m.channel for m in older} == {"x"}
    assert [m.text async for m in a.history("x", before=ids["x1"])] == ["x0"]
    b = await connected(daemon.port, "b")
    sub = await b.subscribe("y", since=ids["y0"])
    assert sub.recovered is True and [m.text for m in sub.history] == ["y1", "y2"]
    sub = await b.subscribe("x")
    assert [m.text for m in sub.history] == ["x0", "x1", "x2"] and sub.recovered is None
    # ids increase across channels: one counter
    assert protocol.parse_id(ids["x2"]) < protocol.parse_id(ids["y0"])
    await a.close()
    await b.close()


@pytest.mark.parametrize("frame,code", [
    ({"type": "chat", "text": "hi", "channel": "elsewhere"}, "not_subscribed"),
    ({"type": "history", "channel": "elsewhere"}, "not_subscribed"),
    ({"type": "unsubscribe", "channel": "elsewhere"}, "not_subscribed"),
    ({"type": "subscribe", "channel": "$secret"}, "forbidden"),
    ({"type": "subscribe", "channel": "bad name"}, "bad_request"),
    ({"type": "subscribe", "channel": "x" * 65}, "bad_request"),
    ({"type": "subscribe", "channel": ""}, "bad_request"),
    ({"type": "subscribe", "channel": "<script>"}, "bad_request"),
    ({"type": "subscribe", "channel": "ok", "since": f"{2**64}-0"}, "bad_request"),
    ({"type": "chat", "text": "hi", "channel": 7}, "bad_request"),
])
async def test_refusals_name_their_code_and_keep_the_connection(daemon, frame, code):
    a = await Chatter.connect(daemon.port, "a")
    await a.send(**frame, ref="e")
    err = await a.recv_type("error")
    assert err["code"] == code and err["ref"] == "e"
    await a.chat("still here")
    assert (await a.recv_type("chat"))["text"] == "still here"
    await a.close()


async def test_unknown_channel_without_auto_create_until_an_operator_creates_it(daemon_factory):
    d = await daemon_factory(channels={"auto_create": False})
    async with chat_client(d.port, "a") as a:
        with pytest.raises(UnknownChannel):
            await a.subscribe("news")
        reply = await call(d.cfg.admin_socket, "channel_create", name="news")
        assert reply["created"] is True
        assert (await a.subscribe("news")).channel == "news"


async def test_too_many_channels_per_connection_and_in_total(daemon_factory):
    """max_per_connection and max_channels hold; at the limit, channels clients created
    and left empty and quiet are forgotten, so flooders cannot fill the server for good."""
    d = await daemon_factory(channels={"max_per_connection": 3, "max_channels": 8})
    registry = Keys(d.kv.prefix).channels
    a = await connected(d.port, "a")
    await a.subscribe("c1")
    await a.subscribe("c2")
    with pytest.raises(TooManyChannels):  # general + 2
        await a.subscribe("c3")
    flooders = [await connected(d.port, f"f{i}") for i in range(5)]
    for i in range(200):  # clients that create channel after channel and leave each
        f = flooders[i % 5]
        await f.subscribe(f"spam{i}")
        await f.unsubscribe(f"spam{i}")
    names = set(await d.kv.client.hkeys(registry))
    assert len(names) == 8 and {"c1", "c2", "general", "spam199"} <= names

    held = []  # channels kept by members count: the 5 left empty make room, then no more
    for f in flooders:
        for k in range(2):
            try:
                await f.subscribe(f"{f.user}-{k}")
                held.append(f"{f.user}-{k}")
            except TooManyChannels as exc:
                assert exc.code == "too_many_channels"
    assert len(held) == 5 and await d.kv.client.hlen(registry) == 8

    # a channel with history stays after its last member leaves, while its history lasts
    await flooders[0].unsubscribe(held[0])  # the one channel without member or history
    await flooders[0].subscribe("talk")
    await flooders[0].chat("still here", channel="talk")
    await flooders[0].unsubscribe("talk")
    assert await d.kv.client.hexists(registry, "talk")
    with pytest.raises(TooManyChannels):
        await flooders[3].subscribe("newcomer")
    # history_ttl passes (the stream expires): the next create at the limit makes room
    await d.kv.client.delete(Keys(d.kv.prefix).stream("talk"))
    assert (await flooders[3].subscribe("newcomer")).channel == "newcomer"
    assert not await d.kv.client.hexists(registry, "talk")
    await asyncio.gather(*(x.close() for x in (a, *flooders)))


async def test_channels_an_operator_created_or_auto_join_are_kept_empty(daemon_factory):
    """Only channels a client's subscribe created are forgotten to make room; an
    operator's ``channel create`` keeps one, even one a client created first."""
    d = await daemon_factory(channels={"auto_join": ["general", "lobby"], "max_channels": 5})
    registry = Keys(d.kv.prefix).channels
    assert (await call(d.cfg.admin_socket, "channel_create", name="news"))["created"] is True
    async with chat_client(d.port, "a") as a:
        await a.subscribe("news")
        await a.subscribe("adopted")
        await a.subscribe("passing")
        reply = await call(d.cfg.admin_socket, "channel_create", name="adopted")
        assert reply["created"] is False
        for name in ("news", "adopted", "passing"):
            await a.unsubscribe(name)
        assert await d.kv.client.hlen(registry) == 5  # nothing is forgotten below the limit
        await a.subscribe("newcomer")
        with pytest.raises(TooManyChannels):  # every other channel is kept
            await a.subscribe("latecomer")
        await a.unsubscribe("newcomer")
    # an operator's create at the limit makes room the same way
    reply = await call(d.cfg.admin_socket, "channel_create", name="announcements")
    assert reply["created"] is True
    kept = sorted(await d.kv.client.hkeys(registry))
    assert kept == ["adopted", "announcements", "general", "lobby", "news"]


async def test_private_channels_follow_the_token(daemon_factory):
    d = await daemon_factory(auth={"mode": "token", "secret": SECRET})
    ops = await connected(d.port, token=auth.mint("ops", SECRET, 60, ("$ops", "$team-*")))
    user = await connected(d.port, token=auth.mint("user", SECRET, 60))
    assert (await ops.subscribe("$ops")).channel == "$ops"
    assert (await ops.subscribe("$team-red")).channel == "$team-red"
    with pytest.raises(Forbidden):
        await user.subscribe("$ops")
    listed = {c.name for c in await ops.list_channels()}
    assert "general" in listed and "$ops" not in listed
    await ops.close()
    await user.close()


def test_token_command_mints_channel_rights(tmp_path):
    env = {"CHATHUB_AUTH_SECRET": SECRET, "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "chathub.cli", "token", "alice", "--channel", "$ops"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert auth.verify(r.stdout.strip(), SECRET)[2] == ("$ops",)


async def test_a_channels_first_subscriber_gets_no_false_history_partial(daemon_factory):
    """With PostgreSQL healthy, the first ``subscribe`` to a channel on a hub (a new one, or
    one whose stream holds fewer messages than ``history_on_join``) is answered complete:
    no ``history_partial``, which says PostgreSQL could not be read."""
    auto = {"channels": {"auto_join": ["general", "news"]}}
    first = await daemon_factory(**auto)
    async with await Chatter.connect(first.port, "w") as w:
        await w.send(type="subscribe", channel="fresh")
        sub = await w.recv_type("subscribed")
        assert sub["history"] == [] and "history_partial" not in sub, sub
        await w.chat("f0", channel="fresh", ref="f0")
        await w.recv_type("chat")
        async with await Chatter.connect(first.port, "v") as v:  # the page read empty is stale
            await v.send(type="subscribe", channel="fresh")
            sub = await v.recv_type("subscribed")
            assert [m["text"] for m in sub["history"]] == ["f0"]
            assert "history_partial" not in sub, sub
        await w.send(type="subscribe", channel="dev")
        await w.recv_type("subscribed")
        for i in range(3):
            await w.chat(f"d{i}", channel="dev", ref=f"d{i}")
            await w.chat(f"n{i}", channel="news", ref=f"n{i}")
        for _ in range(6):
            await w.recv_type("chat")
    second = await daemon_factory(**auto)  # knows nothing of dev yet
    async with await Chatter.connect(second.port, "r") as r:
        assert "history_partial" not in r.welcome
        await r.send(type="subscribe", channel="dev")
        sub = await r.recv_type("subscribed")
        assert [m["text"] for m in sub["history"]] == ["d0", "d1", "d2"]
        assert "history_partial" not in sub, sub
        await r.send(type="history", channel="news", limit=10)
        page = await r.recv_type("history")
        assert [m["text"] for m in page["messages"]] == ["n0", "n1", "n2"]


async def test_channels_lists_public_channels_with_member_counts(daemon):
    a, b = await connected(daemon.port, "a"), await connected(daemon.port, "b")
    await a.subscribe("lobby")
    await b.subscribe("lobby")
    counts = {c.name: c.users for c in await a.list_channels()}
    assert counts["lobby"] == 2 and counts["general"] == 2
    await a.close()
    await b.close()


async def test_messages_reach_postgres_with_their_channel(daemon, db):
    a = await connected(daemon.port, "a")
    await a.subscribe("archive")
    mid = (await a.chat("kept", channel="archive")).id
    await wait_for(lambda: _row(db, mid), what="flushed")
    assert await db.fetchval("SELECT channel FROM messages WHERE id = $1", mid) == "archive"
    await wait_for(lambda: _channel_row(db, "archive"), what="channel recorded")
    await a.close()


async def _row(db, mid: str) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM messages WHERE id = $1", mid))


async def _channel_row(db, name: str) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM channels WHERE name = $1", name))


async def test_three_hubs_carry_a_channel_only_where_it_has_subscribers(daemon_factory):
    hubs = [await daemon_factory(hub={"node_id": f"ch{i}", "node_ttl": 3.0}) for i in range(3)]
    a = await connected(hubs[0].port, "a")
    b = await connected(hubs[1].port, "b")
    c = await connected(hubs[2].port, "c")
    await a.subscribe("team")
    assert (await b.subscribe("team")).users == ["a", "b"]  # cluster-wide members
    assert (await event(a, Join)).user == "b"
    for i in range(5):
        await a.chat(f"t{i}", channel="team")
    got = [(await event(b, Chat)).text for _ in range(5)]
    assert got == [f"t{i}" for i in range(5)]
    await b.chat("general marker")
    assert (await event(c, Chat)).text == "general marker"
    assert hubs[2].node.hub.stats.remote_messages == 1  # only the general marker
    assert await c.users("team") == ["a", "b"]
    await b.close()
    leaves = [await event(a, Leave) for _ in range(2)]
    assert sorted((x.user, x.channel) for x in leaves) == [("b", "general"), ("b", "team")]
    await a.close()
    await c.close()


async def test_a_killed_hub_leaves_its_members_channels(spawn, daemon_factory):
    victim = await spawn(hub={"node_ttl": 3.0})
    survivor = await daemon_factory(hub={"node_ttl": 3.0})
    w = await connected(survivor.port, "watcher")
    await w.subscribe("war")
    doomed = await connected(victim.port, "doomed")
    await doomed.subscribe("war")
    assert (await event(w, Join)).user == "doomed"
    victim.kill()
    leaves = [await event(w, Leave, timeout=20) for _ in range(2)]
    assert sorted((x.user, x.channel, x.reason) for x in leaves) == [
        ("doomed", "general", CRASHED), ("doomed", "war", CRASHED)]
    await w.close()
    await doomed.close()


async def test_migration_0002_on_a_database_with_v1_messages(pg_admin_url):
    conn = await asyncpg.connect(pg_admin_url)
    await conn.execute("DROP DATABASE IF EXISTS chathub_v1")
    await conn.execute("CREATE DATABASE chathub_v1")
    await conn.close()
    db = await asyncpg.connect(with_db(pg_admin_url, "chathub_v1"))
    try:
        assert [m.version for m in await migrations.migrate(db, target=1)] == [1]
        await db.execute(
            "INSERT INTO messages (id, id_ms, id_seq, sender, recipient, text, ts) VALUES "
            "('5-0', 5, 0, 'a', NULL, 'public', now()), ('6-0', 6, 0, 'a', 'b', 'secret', now())")
        done = await migrations.migrate(db, target=2)
        assert [m.version for m in done] == [2]
        rows = dict(await db.fetch("SELECT id, channel FROM messages"))
        assert rows == {"5-0": "general", "6-0": None}
        assert await db.fetchval("SELECT count(*) FROM channels WHERE name = 'general'") == 1
    finally:
        await db.close()
