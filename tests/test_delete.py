"""Removing messages (chathub delete / purge) against real Valkey and PostgreSQL: live
clients on three hubs, history, paging from Valkey and from PostgreSQL, ``since``
recovery, the flusher, the audit trail, the CLI and the HTTP API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest

from chathub import protocol
from chathub.admin.client import call
from chathub.errors import AdminError
from chathub.keys import Keys
from tests.helpers import Chatter, wait_for


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "chathub.cli", *args],
                                   capture_output=True, text=True, timeout=60)


async def subscribe(c: Chatter, channel: str, **extra: Any) -> dict[str, Any]:
    await c.send(type="subscribe", channel=channel, **extra)
    return await c.recv_type("subscribed", "error")


async def said(c: Chatter, text: str, **extra: Any) -> str:
    """Send a chat and return its id (from the sender's own copy)."""
    await c.chat(text, ref=text, **extra)
    while True:
        frame = await c.recv_type("chat")
        if frame.get("ref") == text:
            return str(frame["id"])


async def history(c: Chatter, channel: str = "general", **extra: Any) -> list[str]:
    await c.send(type="history", channel=channel, ref="h", **extra)
    frame = await c.recv_type("history", "error")
    assert frame["type"] == "history", frame
    return [m["text"] for m in frame["messages"]]


async def in_pg(db: Any, mid: str) -> Any:
    return await db.fetchrow("SELECT deleted_at, deleted_by, text FROM messages WHERE id = $1", mid)


# -- without services -------------------------------------------------------------------


def test_delete_frame():
    assert json.loads(protocol.encode_delete("5-1", "dev")) == \
        {"type": "delete", "id": "5-1", "channel": "dev"}
    assert json.loads(protocol.encode_delete("5-1", None)) == {"type": "delete", "id": "5-1"}


async def test_client_decodes_delete_and_drops_an_unread_message():
    from chathub.client import Chat as CChat
    from chathub.client import Delete
    from chathub.client.buffer import EventBuffer
    from chathub.client.events import decode

    assert decode('{"type":"delete","id":"5-1","channel":"dev"}') == Delete(id="5-1", channel="dev")
    assert decode('{"type":"delete","id":"5-1"}') == Delete(id="5-1", channel=None)
    buf = EventBuffer(10)
    for i in range(3):
        buf.put(CChat(id=f"5-{i}", from_="a", text=str(i), ts=5))
    assert buf.discard("5-1") and not buf.discard("5-1") and not buf.discard("9-9")
    assert len(buf) == 2 and [(await buf.get()).id for _ in range(2)] == ["5-0", "5-2"]


async def test_python_client_gets_a_typed_delete(daemon):
    """chathub.client yields Delete for a removed message; one not read yet is never yielded."""
    from chathub.client import Chat as CChat
    from chathub.client import ChatClient, Delete
    from tests.test_client import next_of, url

    async with ChatClient(url(daemon.port), user="reader") as reader:
        async with await Chatter.connect(daemon.port, "writer") as writer:
            first = await said(writer, "first")
            second = await said(writer, "second")
        assert (await next_of(reader, CChat)).id == first
        # 'second' waits unread in the client's buffer: the delete takes it out
        await call(daemon.cfg.admin_socket, "delete", msg=second)
        ev = await next_of(reader, Delete, CChat)
        assert ev == Delete(id=second, channel="general")


# -- on every hub -----------------------------------------------------------------------


async def test_delete_reaches_every_hub_and_history_forgets_it(daemon_factory, db):
    """A delete asked on one hub: every subscriber of the channel on all three hubs gets the
    delete frame, a client in another channel does not; history, a later welcome, and
    subscribe with since leave the message out; PostgreSQL keeps the row, marked; the
    audit trail records it."""
    hubs = [await daemon_factory(hub={"node_id": f"del{i}"}) for i in range(3)]
    readers = [await Chatter.connect(h.port, f"r{i}") for i, h in enumerate(hubs)]
    for r in readers:
        assert (await subscribe(r, "dev"))["channel"] == "dev"
    elsewhere = await Chatter.connect(hubs[2].port, "elsewhere")
    first = await said(readers[0], "hello", channel="dev")
    for r in readers[1:]:
        assert (await r.recv_type("chat"))["id"] == first
    spam = await said(readers[0], "buy pills", channel="dev")
    keep = await said(readers[0], "real talk", channel="dev")
    for r in readers[1:]:
        assert (await r.recv_type("chat"))["id"] == spam

    reply = await call(hubs[1].cfg.admin_socket, "delete", msg=spam)
    assert reply == {"id": reply["id"], "ok": True, "msg": spam, "channel": "dev", "deleted": True}
    for r in readers:
        assert await r.recv_type("delete") == {"type": "delete", "id": spam, "channel": "dev"}
    # a marker sent after the delete: what came before it to 'elsewhere' is all it got
    await elsewhere.chat("marker", ref="marker")
    seen = []
    while (frame := await elsewhere.recv())["type"] != "chat" or frame.get("ref") != "marker":
        seen.append(frame["type"])
    assert "delete" not in seen
    for r in readers:
        assert await history(r, "dev") == ["hello", "real talk"]
    late = await Chatter.connect(hubs[2].port, "late")
    sub = await subscribe(late, "dev")
    assert [m["text"] for m in sub["history"]] == ["hello", "real talk"]
    # ``since`` the message before the spam: recovered, without it
    again = await Chatter.connect(hubs[0].port, "again")
    sub = await subscribe(again, "dev", since=first)
    assert sub["recovered"] is True and [m["id"] for m in sub["history"]] == [keep]

    await wait_for(lambda: in_pg(db, spam), what="the flusher to write the message")
    row = await in_pg(db, spam)
    assert row["deleted_at"] is not None and row["text"] == "buy pills"
    assert row["deleted_by"]  # the admin socket's Unix user
    again_reply = await call(hubs[0].cfg.admin_socket, "delete", msg=spam, channel="dev")
    assert again_reply["deleted"] is False

    async def deletes() -> list[tuple[str, str]]:
        audit = await call(hubs[0].cfg.admin_socket, "audit")
        return [(a["action"], a["target"]) for a in audit["actions"] if a["action"] == "delete"]

    async def both() -> bool:  # the audit trail's own flusher writes a moment after the reply
        return len(await deletes()) == 2

    await wait_for(both, what="both deletes in the audit trail")
    assert await deletes() == [("delete", spam), ("delete", spam)]
    for c in (*readers, elsewhere, late, again):
        await c.close()


async def test_paging_from_postgres_leaves_deleted_messages_out(daemon_factory, db):
    """Once the stream was flushed and trimmed, history pages come from PostgreSQL: a
    message deleted there is in no page, with or without ``before``; paging back from
    Valkey skips a deleted one too."""
    d = await daemon_factory(cache={"history_size": 2, "history_on_join": 2})
    a = await Chatter.connect(d.port, "a")
    ids = [await said(a, f"m{i}") for i in range(6)]
    k = Keys(d.cfg.valkey.key_prefix)
    await wait_for(lambda: db.fetchval("SELECT count(*) = 6 FROM messages"), what="the flush")
    await wait_for(lambda: _xlen_at_most(d, k.stream("general"), 3), what="the trim")
    assert (await call(d.cfg.admin_socket, "delete", msg=ids[1]))["deleted"] is True
    assert (await call(d.cfg.admin_socket, "delete", msg=ids[4]))["deleted"] is True
    assert await history(a, limit=10) == ["m0", "m2", "m3", "m5"]
    assert await history(a, before=ids[3]) == ["m0", "m2"]
    assert await history(a, before=ids[5], limit=2) == ["m2", "m3"]
    b = await Chatter.connect(d.port, "b")  # its welcome has the archive fetch a page
    assert [m["text"] for m in b.welcome["history"]] in (["m3", "m5"], ["m5"])
    await d.node.archive.ready()
    c = await Chatter.connect(d.port, "c")
    assert [m["text"] for m in c.welcome["history"]] == ["m3", "m5"]
    # the archive's cached page forgets a message deleted after it was fetched
    assert (await call(d.cfg.admin_socket, "delete", msg=ids[3]))["deleted"] is True
    e = await Chatter.connect(d.port, "e")
    assert [m["text"] for m in e.welcome["history"]] == ["m2", "m5"]
    for x in (a, b, c, e):
        await x.close()


async def test_paging_in_valkey_skips_runs_of_deleted_messages(daemon_factory):
    """A page from the stream holds ``limit`` messages even when deleted ones fill whole
    reads in between; the next page starts right below it. Nothing is flushed, so every
    page comes from Valkey (one that needed PostgreSQL would be refused 'unavailable')."""
    daemon = await daemon_factory(cache={"flush_interval": 3600})
    a = await Chatter.connect(daemon.port, "a")
    ids = [await said(a, f"m{i}") for i in range(10)]
    for mid in ids[2:8]:
        assert (await call(daemon.cfg.admin_socket, "delete", msg=mid))["deleted"] is True
    assert await history(a, before=ids[9], limit=3) == ["m0", "m1", "m8"]
    assert await history(a, before=ids[8], limit=1) == ["m1"]
    assert await history(a, limit=50) == ["m0", "m1", "m8", "m9"]
    # reconnecting with ?since= recovers what followed, without the deleted ones
    b = await Chatter.connect(daemon.port, "b", since=ids[1])
    assert b.welcome["recovered"] is True
    assert [m["text"] for m in b.welcome["history"]] == ["m8", "m9"]
    await a.close()
    await b.close()


async def _xlen_at_most(d: Any, key: str, n: int) -> bool:
    return int(await d.node.kv.client.xlen(key)) <= n


async def test_delete_before_the_flush_stays_deleted(daemon_factory, db):
    """A message deleted while it waits in Valkey is written to PostgreSQL at once, marked;
    the flusher's later insert (and a second one, as after a crash before the acknowledge)
    leaves it marked; the CLI says what it did and exits 0, or 1 for an unknown id."""
    d = await daemon_factory(cache={"flush_interval": 3600})
    a = await Chatter.connect(d.port, "a")
    gone, kept = await said(a, "oops"), await said(a, "fine")
    assert await db.fetchval("SELECT count(*) FROM messages") == 0
    sock = str(d.cfg.admin_socket)
    out = await cli("delete", gone, "--socket", sock)
    assert out.returncode == 0 and out.stdout.strip() == f"deleted {gone} in general", out.stderr
    assert (await a.recv_type("delete"))["id"] == gone
    row = await in_pg(db, gone)
    assert row["deleted_at"] is not None and row["text"] == "oops"
    d.node.message_flusher.kick()
    await wait_for(lambda: db.fetchval("SELECT count(*) = 2 FROM messages"), what="the flush")
    assert (await in_pg(db, gone))["deleted_at"] == row["deleted_at"]
    assert (await in_pg(db, kept))["deleted_at"] is None
    again = [m for m in (await d.node.cache.history(None, 10)) if m.id == kept]
    from chathub.db import store
    gone_msg = protocol.Message(type="chat", id=gone, from_="a", text="oops",
                                ts=int(gone.split("-")[0]), channel="general")
    assert await store.insert_messages(d.node.pool, [gone_msg, *again]) == 0
    assert (await in_pg(db, gone))["deleted_at"] == row["deleted_at"]
    assert await history(a) == ["fine"]

    unknown = await cli("delete", "1-0", "--socket", sock)
    assert unknown.returncode == 1 and "no message 1-0" in unknown.stdout
    wrong = await cli("delete", kept, "--channel", "other", "--json", "--socket", sock)
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout) == {"msg": kept, "channel": "other", "deleted": False}
    twice = await call(sock, "delete", msg=gone)
    assert twice == {"id": twice["id"], "ok": True, "msg": gone, "channel": "general",
                     "deleted": False}
    await a.close()


async def test_purge_removes_a_spammers_window_and_leaves_others(daemon_factory, db):
    """purge USER --since: the spammer's chats (flushed or not) and whispers of the window
    go on both hubs (a whisper's delete frame goes to its sender and recipient, without
    channel); other users' messages stay; the audit trail has the purge."""
    hubs = [await daemon_factory(hub={"node_id": f"pu{i}"}, cache={"flush_interval": 3600})
            for i in range(2)]
    spammer = await Chatter.connect(hubs[0].port, "spammer")
    bob = await Chatter.connect(hubs[1].port, "bob")
    eve = await Chatter.connect(hubs[1].port, "eve")
    spam = [await said(spammer, "spam 0")]
    ham = [await said(bob, "hi all")]
    hubs[0].node.message_flusher.kick()
    await wait_for(lambda: db.fetchval("SELECT count(*) = 2 FROM messages"), what="a flush")
    spam.append(await said(spammer, "spam 1"))
    await spammer.whisper("bob", "psst", ref="w")
    whisper = (await spammer.recv_type("whisper"))["id"]
    assert (await bob.recv_type("whisper"))["id"] == whisper
    ham.append(await said(eve, "bye"))

    out = await cli("purge", "spammer", "--since", "10m", "--json",
                    "--socket", str(hubs[1].cfg.admin_socket))
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply == {"user": "spammer", "deleted": 3, "ids": [*spam, whisper]}
    got = [await eve.recv_type("delete") for _ in spam]
    assert got == [{"type": "delete", "id": i, "channel": "general"} for i in spam]
    want = [*({"type": "delete", "id": i, "channel": "general"} for i in spam),
            {"type": "delete", "id": whisper}]
    for c in (bob, spammer):  # the whisper's frame is not queued behind the channel's
        frames = [await c.recv_type("delete") for _ in range(3)]
        assert sorted(frames, key=lambda f: f["id"]) == sorted(want, key=lambda f: f["id"])
    assert await history(eve) == ["hi all", "bye"]
    for h in hubs:
        h.node.message_flusher.kick()
    await wait_for(lambda: db.fetchval("SELECT count(*) = 5 FROM messages"), what="the flush")
    rows = await db.fetch("SELECT sender, deleted_at IS NOT NULL AS gone FROM messages")
    assert sorted((r["sender"], r["gone"]) for r in rows) == [
        ("bob", False), ("eve", False), ("spammer", True), ("spammer", True), ("spammer", True)]
    again = await call(hubs[0].cfg.admin_socket, "purge", user="spammer", seconds=600)
    assert (again["deleted"], again["ids"]) == (0, [])
    audit = await call(hubs[0].cfg.admin_socket, "audit")
    purges = [a for a in audit["actions"] if a["action"] == "purge"]
    assert [p["target"] for p in purges] == ["spammer", "spammer"]
    assert purges[-1]["arguments"]["deleted"] == 3
    for c in (spammer, bob, eve):
        await c.close()


async def test_bad_input_and_no_daemon(tmp_path):
    """--help for both commands; bad ids, names and durations exit 2 with one line; a socket
    with no daemon exits with one line."""
    for cmd in ("delete", "purge"):
        out = await cli(cmd, "--help")
        assert out.returncode == 0 and "Usage" in out.stdout
    sock = str(tmp_path / "none.sock")
    for args, needle in ((("delete", "nope"), "not a message id"),
                         (("delete", "1-0", "--channel", "bad name"), "not a channel name"),
                         (("purge", "bad name", "--since", "1h"), "not a user name"),
                         (("purge", "eve"), "--since"),
                         (("purge", "eve", "--since", "soon"), "--since"),
                         (("purge", "eve", "--since", "31d"), "at most 30d")):
        out = await cli(*args, "--socket", sock)
        assert out.returncode == 2 and needle in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1
    out = await cli("delete", "1-0", "--socket", sock)
    assert out.returncode != 0 and "no chathub daemon answers" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


async def test_admin_refuses_bad_requests(daemon):
    sock = daemon.cfg.admin_socket
    for cmd, fields, needle in (("delete", {}, "missing field 'msg'"),
                                ("delete", {"msg": "x"}, "not a message id"),
                                ("purge", {"user": "eve"}, "missing field 'seconds'"),
                                ("purge", {"user": "eve", "seconds": -1}, "'seconds'"),
                                ("purge", {"user": "eve", "seconds": True}, "'seconds'")):
        with pytest.raises(AdminError, match=needle):
            await call(sock, cmd, **fields)


async def test_api_delete_and_purge(daemon_factory, db):
    """POST /api/v1/delete and /purge do what the admin commands do, also through
    ``chathub.api``'s clients (which had no ``delete`` or ``purge``); the rows say "api"."""
    from chathub.api import APIClient, AsyncAPIClient, BadRequest
    from chathub.api.client import build
    from tests.test_api import KEY, raw

    d = await daemon_factory(api={"keys": [KEY], "rate": 10000.0, "burst": 10000})
    url = f"http://127.0.0.1:{d.port}"
    a = await Chatter.connect(d.port, "a")
    one, two, three = [await said(a, f"t{i}") for i in range(3)]
    reply = await AsyncAPIClient(url, KEY).delete(one)
    assert reply == {"id": one, "channel": "general", "deleted": True}
    assert (await a.recv_type("delete"))["id"] == one
    assert (await AsyncAPIClient(url, KEY).delete(one, channel="general"))["deleted"] is False
    with pytest.raises(BadRequest, match="not a message id"):
        await AsyncAPIClient(url, KEY).delete("zz")
    reply = await asyncio.to_thread(APIClient(url, KEY).purge, "a", 60)
    assert reply == {"user": "a", "deleted": 2, "ids": [two, three]}
    status, body = await raw(d.port, build("h", KEY, "POST", "delete", body={"id": "zz"}))
    assert status == 400 and "not a message id" in json.loads(body)["message"]
    status, body = await raw(d.port, build("h", KEY, "POST", "purge",
                                           body={"user": "a", "seconds": 10**9}))
    assert status == 400 and "'seconds'" in json.loads(body)["message"]
    assert await history(a) == []
    await wait_for(lambda: db.fetchval("SELECT count(*) = 3 FROM messages WHERE deleted_by = 'api'"),
                   what="the rows marked by the API")
    # both in the audit trail, under the key's fingerprint (never the key)
    from chathub.edge.api import fingerprint
    await wait_for(lambda: db.fetchval("SELECT count(*) = 3 FROM admin_actions"),
                   what="the API's removals in admin_actions")
    rows = await db.fetch("SELECT action, target, by_user FROM admin_actions")
    assert {(r["action"], r["target"], r["by_user"]) for r in rows} == {
        ("delete", one, fingerprint(KEY)), ("purge", "a", fingerprint(KEY))}
    await a.close()
