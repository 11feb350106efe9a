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
from chathub.db import removal as db_removal
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
    audit = await call(hubs[0].cfg.admin_socket, "audit")
    rows = [(a["action"], a["target"]) for a in audit["actions"] if a["action"] == "delete"]
    assert rows == [("delete", spam), ("delete", spam)]
    for c in (*readers, elsewhere, late, again):
        await c.close()
