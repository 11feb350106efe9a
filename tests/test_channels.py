"""Channels (protocol v2) against real Valkey and PostgreSQL, with real clients."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import pytest

from chathub import protocol
from chathub.admin.client import call
from chathub.cluster.nodes import CRASHED
from chathub.db import migrate as migrations
from chathub.edge import auth
from chathub.keys import Keys
from tests.conftest import with_db
from tests.helpers import Chatter, wait_for

SECRET = "c" * 40


async def subscribe(c: Chatter, channel: str, **extra) -> dict:
    await c.send(type="subscribe", channel=channel, **extra)
    return await c.recv_type("subscribed", "error")


async def quiet(c: Chatter, timeout: float = 0.3) -> list[dict]:
    """Frames that arrive within ``timeout`` (a bounded wait for something that must not come,
    used after a marker message proved everything before it was delivered)."""
    got = []
    try:
        while True:
            got.append(await c.recv(timeout))
    except TimeoutError:
        return got


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
    a, b, c = [await Chatter.connect(daemon.port, u) for u in "abc"]
    sub = await subscribe(a, "games", ref="s1")
    assert sub["type"] == "subscribed" and sub["channel"] == "games" and sub["users"] == ["a"]
    assert sub["history"] == [] and sub["ref"] == "s1"
    sub_b = await subscribe(b, "games")
    assert sub_b["users"] == ["a", "b"]
    assert (await a.recv_type("join")) | {"ts": 0} == {"type": "join", "user": "b", "ts": 0,
                                                      "channel": "games"}
    await a.chat("gg", channel="games")
    for x in (a, b):
        m = await x.recv_type("chat")
        assert m["text"] == "gg" and m["channel"] == "games"
    await a.chat("marker")  # in general: everyone gets it; c must not have had "gg" before
    assert (await c.recv_type("chat"))["text"] == "marker"
    assert not [f for f in await quiet(c) if f.get("channel") == "games"]
    await b.send(type="unsubscribe", channel="games", ref="u1")
    assert await b.recv_type("unsubscribed") == {"type": "unsubscribed", "channel": "games",
                                                 "ref": "u1"}
    leave = await a.recv_type("leave")
    assert leave["user"] == "b" and leave["channel"] == "games"
    for x in (a, b, c):
        await x.close()


async def test_join_and_leave_once_per_user_across_tabs(daemon):
    watcher = await Chatter.connect(daemon.port, "w")
    await subscribe(watcher, "room")
    tab1 = await Chatter.connect(daemon.port, "t")
    tab2 = await Chatter.connect(daemon.port, "t")
    await subscribe(tab1, "room")
    await subscribe(tab2, "room")
    await tab1.close()
    await watcher.chat("marker", channel="room")
    await watcher.recv_type("chat")
    frames = [f for f in await quiet(watcher) if f.get("channel") == "room"]
    joins_leaves = [(f["type"], f["user"]) for f in frames if f["type"] in ("join", "leave")]
    assert joins_leaves == []  # the join came before the marker; the first tab's close is no leave
    await tab2.close()
    assert (await watcher.recv_type("leave"))["user"] == "t"
    await watcher.close()


async def test_history_and_since_per_channel(daemon):
    a = await Chatter.connect(daemon.port, "a")
    await subscribe(a, "x")
    await subscribe(a, "y")
    ids = {}
    for ch in ("x", "y"):
        for i in range(3):
            await a.chat(f"{ch}{i}", channel=ch)
            ids[f"{ch}{i}"] = (await a.recv_type("chat"))["id"]
    await a.send(type="history", channel="x", ref="h")
    h = await a.recv_type("history")
    assert [m["text"] for m in h["messages"]] == ["x0", "x1", "x2"] and h["channel"] == "x"
    await a.send(type="history", channel="x", before=ids["x1"])
    assert [m["text"] for m in (await a.recv_type("history"))["messages"]] == ["x0"]
    b = await Chatter.connect(daemon.port, "b")
    sub = await subscribe(b, "y", since=ids["y0"])
    assert sub["recovered"] is True and [m["text"] for m in sub["history"]] == ["y1", "y2"]
    sub = await subscribe(b, "x")
    assert [m["text"] for m in sub["history"]] == ["x0", "x1", "x2"] and "recovered" not in sub
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
    a = await Chatter.connect(d.port, "a")
    assert (await subscribe(a, "news"))["code"] == "unknown_channel"
    reply = await call(d.cfg.admin_socket, "channel_create", name="news")
    assert reply["created"] is True
    assert (await subscribe(a, "news"))["type"] == "subscribed"
    await a.close()


async def test_too_many_channels_per_connection_and_in_total(daemon_factory):
    d = await daemon_factory(channels={"max_per_connection": 3, "max_channels": 20})
    a = await Chatter.connect(d.port, "a")
    assert (await subscribe(a, "c1"))["type"] == "subscribed"
    assert (await subscribe(a, "c2"))["type"] == "subscribed"
    assert (await subscribe(a, "c3"))["code"] == "too_many_channels"  # general + 2
    flooders = [await Chatter.connect(d.port, f"f{i}") for i in range(5)]
    codes = []
    for i in range(200):  # a client that tries to create channel after channel
        f = flooders[i % 5]
        reply = await subscribe(f, f"spam{i}")
        codes.append(reply.get("code", "ok"))
        if reply["type"] == "subscribed":
            await f.send(type="unsubscribe", channel=f"spam{i}")
            await f.recv_type("unsubscribed")
    # general, c1 and c2 exist: 17 more could be created, then every try is refused
    assert codes == ["ok"] * 17 + ["too_many_channels"] * 183
    assert await d.kv.client.hlen(Keys(d.kv.prefix).channels) == 20
    for x in (a, *flooders):
        await x.close()


async def test_private_channels_follow_the_token(daemon_factory):
    d = await daemon_factory(auth={"mode": "token", "secret": SECRET})
    ops = await Chatter.connect(d.port, None, token=auth.mint("ops", SECRET, 60, ("$ops", "$team-*")))
    user = await Chatter.connect(d.port, None, token=auth.mint("user", SECRET, 60))
    assert (await subscribe(ops, "$ops"))["type"] == "subscribed"
    assert (await subscribe(ops, "$team-red"))["type"] == "subscribed"
    assert (await subscribe(user, "$ops"))["code"] == "forbidden"
    await ops.send(type="channels")
    listed = {c["name"] for c in (await ops.recv_type("channels"))["channels"]}
    assert "general" in listed and "$ops" not in listed
    await ops.close()
    await user.close()


def test_token_command_mints_channel_rights(tmp_path):
    env = {"CHATHUB_AUTH_SECRET": SECRET, "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "chathub.cli", "token", "alice", "--channel", "$ops"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert auth.verify(r.stdout.strip(), SECRET)[2] == ("$ops",)


async def test_channels_lists_public_channels_with_member_counts(daemon):
    a, b = await Chatter.connect(daemon.port, "a"), await Chatter.connect(daemon.port, "b")
    await subscribe(a, "lobby")
    await subscribe(b, "lobby")
    await a.send(type="channels", ref="l")
    reply = await a.recv_type("channels")
    counts = {c["name"]: c["users"] for c in reply["channels"]}
    assert counts["lobby"] == 2 and counts["general"] == 2 and reply["ref"] == "l"
    await a.close()
    await b.close()


async def test_messages_reach_postgres_with_their_channel(daemon, db):
    a = await Chatter.connect(daemon.port, "a")
    await subscribe(a, "archive")
    await a.chat("kept", channel="archive")
    mid = (await a.recv_type("chat"))["id"]
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
    a = await Chatter.connect(hubs[0].port, "a")
    b = await Chatter.connect(hubs[1].port, "b")
    c = await Chatter.connect(hubs[2].port, "c")
    await subscribe(a, "team")
    sub = await subscribe(b, "team")
    assert sub["users"] == ["a", "b"]  # cluster-wide members
    assert (await a.recv_type("join"))["user"] == "b"
    for i in range(5):
        await a.chat(f"t{i}", channel="team")
    got = [(await b.recv_type("chat"))["text"] for _ in range(5)]
    assert got == [f"t{i}" for i in range(5)]
    await b.chat("general marker")
    assert (await c.recv_type("chat"))["text"] == "general marker"
    assert hubs[2].node.hub.stats.remote_messages == 1  # only the general marker
    await c.send(type="users", channel="team")
    assert (await c.recv_type("users"))["users"] == ["a", "b"]
    await b.close()
    leaves = [await a.recv_type("leave") for _ in range(2)]
    assert sorted((x["user"], x["channel"]) for x in leaves) == [("b", "general"), ("b", "team")]
    await a.close()
    await c.close()


async def test_a_killed_hub_leaves_its_members_channels(spawn, daemon_factory):
    victim = await spawn(hub={"node_ttl": 3.0})
    survivor = await daemon_factory(hub={"node_ttl": 3.0})
    w = await Chatter.connect(survivor.port, "watcher")
    await subscribe(w, "war")
    doomed = await Chatter.connect(victim.port, "doomed")
    await subscribe(doomed, "war")
    assert (await w.recv_type("join"))["user"] == "doomed"
    victim.kill()
    leaves = [await w.recv_type("leave", timeout=20) for _ in range(2)]
    assert sorted((x["user"], x["channel"], x["reason"]) for x in leaves) == [
        ("doomed", "general", CRASHED), ("doomed", "war", CRASHED)]
    await w.close()


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
