"""The HTTP API's ban verbs (chathub/edge/apibans.py) against a real daemon: ban, unban,
mute, unmute and bans have the admin socket's effects, are recorded by the key's
fingerprint, and refuse bad input with 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from chathub.api import AsyncAPIClient, BadRequest, ServerError
from chathub.edge.api import fingerprint

from .helpers import Chatter, wait_for
from .test_api import KEY, OTHER, post, raw
from .test_bans import admits, closed_banned, refused


def client(port: int, key: str = KEY) -> AsyncAPIClient:
    return AsyncAPIClient(f"http://127.0.0.1:{port}", key)


async def test_api_ban_closes_refuses_and_unban_admits(daemon_factory: Any,
                                                       db: asyncpg.Connection) -> None:
    """A ban through the API closes the user on every hub with 4004, refuses the next
    upgrade with 403 and the reason, lists the entry with created_by = the key's
    fingerprint, writes the audit trail by that fingerprint; unban lets the user in."""
    hubs = [await daemon_factory(hub={"node_id": f"apiban{i}"}, api={"keys": [KEY, OTHER]})
            for i in range(2)]
    eves = [await Chatter.connect(h.port, "eve") for h in hubs]
    api = client(hubs[0].port, OTHER)
    entry = await api.ban("eve", reason="spam links")
    assert (entry["scope"], entry["user"], entry["until"], entry["by"]) == \
        ("user", "eve", None, fingerprint(OTHER))
    for c in eves:
        assert await closed_banned(c) == {"type": "banned", "reason": "spam links", "until": None}
    for h in hubs:
        status, body = await refused(h.port, "eve")
        assert status == 403 and "spam links" in body
    (listed,) = await client(hubs[1].port).bans()
    assert (listed["user"], listed["id"], listed["by"]) == ("eve", entry["id"], fingerprint(OTHER))
    assert await db.fetchval("SELECT created_by FROM bans WHERE id = $1", entry["id"]) == \
        fingerprint(OTHER)

    assert await api.unban("eve") is True
    await wait_for(lambda: all(h.node.bans.active.user("eve") is None for h in hubs),
                   what="the ban lifted on every hub")
    for h in hubs:
        assert await admits(h.port, "eve")
    assert await api.unban("eve") is False  # none in force: 200, lifted false

    async def written() -> bool:
        return await db.fetchval("SELECT count(*) FROM admin_actions") == 3
    await wait_for(written, what="three actions in admin_actions")
    rows = await db.fetch("SELECT action, target, arguments, by_uid, by_user FROM admin_actions")
    # ids are random and two actions may share a millisecond: compare without order
    assert sorted((r["action"], r["target"], r["by_uid"], r["by_user"],
                   json.loads(r["arguments"]).get("lifted")) for r in rows) == [
        ("ban", "eve", None, fingerprint(OTHER), None),
        ("unban", "eve", None, fingerprint(OTHER), False),
        ("unban", "eve", None, fingerprint(OTHER), True)]
    (ban,) = [json.loads(r["arguments"]) for r in rows if r["action"] == "ban"]
    assert ban == {"reason": "spam links", "until": None, "id": entry["id"]}


async def test_api_channel_and_address_bans(daemon_factory: Any) -> None:
    """A channel ban takes the user out of that channel only; an address ban for a while
    refuses upgrades from the range with 403 and carries its expiry."""
    d = await daemon_factory(api={"keys": [KEY]})
    api = client(d.port)
    async with await Chatter.connect(d.port, "carl") as carl:
        await carl.send(type="subscribe", channel="dev", ref="s")
        assert (await carl.recv_type("subscribed"))["channel"] == "dev"
        entry = await api.ban("carl", channel="dev", seconds=600, reason="off topic")
        assert (entry["scope"], entry["channel"]) == ("channel", "dev")
        frame = await carl.recv_type("unsubscribed")
        assert (frame["channel"], frame["reason"]) == ("dev", "banned")
        await carl.chat("in general still")
        assert (await carl.recv_type("chat"))["text"] == "in general still"
        assert await api.unban("carl", channel="dev") is True
    entry = await api.ban(ip="127.0.0.2/32", seconds=3600, reason="abuse")
    assert entry["scope"] == "ip" and entry["ip"] == "127.0.0.2/32" and entry["until"] > 0
    status, body = await refused(d.port, "someone", local_host="127.0.0.2")
    assert status == 403 and "abuse" in body
    assert await admits(d.port, "near")
    assert await api.unban(ip="127.0.0.2/32") is True


async def test_api_mute_gives_muted_with_retry_after(daemon_factory: Any,
                                                     db: asyncpg.Connection) -> None:
    """A mute through the API refuses the user's chat with 'muted' and retry_after_ms while
    they stay connected and reading; unmute lets them speak; both are audited."""
    d = await daemon_factory(api={"keys": [KEY]})
    api = client(d.port)
    async with await Chatter.connect(d.port, "mia") as mia, \
            await Chatter.connect(d.port, "ned") as ned:
        entry = await api.mute("mia", 600, reason="calm down")
        assert (entry["scope"], entry["user"], entry["by"]) == ("mute", "mia", fingerprint(KEY))
        assert await mia.recv_type("muted") == {"type": "muted", "reason": "calm down",
                                                "until": entry["until"]}
        await mia.chat("hello?", ref="c1")
        err = await mia.recv_type("error")
        assert (err["code"], err["ref"]) == ("muted", "c1")
        assert 590_000 < err["retry_after_ms"] <= 600_000
        await ned.chat("you can still read")
        assert (await mia.recv_type("chat"))["text"] == "you can still read"
        assert [b["scope"] for b in await api.bans()] == ["mute"]
        assert await api.unmute("mia") is True
        assert await mia.recv_type("unmuted") == {"type": "unmuted"}  # lifted once this arrives
        await mia.chat("back", ref="c2")
        assert (await mia.recv_type("chat", "error"))["type"] == "chat"

    async def written() -> bool:
        return await db.fetchval("SELECT count(*) FROM admin_actions") == 2
    await wait_for(written, what="mute and unmute in admin_actions")
    rows = await db.fetch("SELECT action, by_user FROM admin_actions")
    assert sorted((r["action"], r["by_user"]) for r in rows) == [("mute", fingerprint(KEY)),
                                                                 ("unmute", fingerprint(KEY))]


BAD = [
    ("ban", {}, "'user' or field 'ip'"),
    ("ban", {"user": "a", "ip": "10.0.0.1"}, "'user' or field 'ip'"),
    ("ban", {"user": "no spaces"}, "'user'"),
    ("ban", {"ip": "10.0.0.300"}, "'ip'"),
    ("ban", {"ip": 7}, "'ip'"),
    ("ban", {"ip": "10.0.0.0/8", "channel": "dev"}, "'channel'"),
    ("ban", {"user": "a", "channel": "no spaces"}, "'channel'"),
    ("ban", {"user": "a", "seconds": -1}, "'seconds'"),
    ("ban", {"user": "a", "seconds": "10m"}, "'seconds'"),
    ("ban", {"user": "a", "seconds": 1e11}, "below 10000000000"),
    ("ban", {"user": "a", "reason": 5}, "'reason'"),
    ("unban", {}, "'user' or field 'ip'"),
    ("mute", {"user": "a"}, "'seconds'"),
    ("mute", {"seconds": 60}, "'user'"),
    ("mute", {"user": "a", "seconds": 60, "channel": "dev"}, "'channel'"),
    ("unmute", {"ip": "10.0.0.1"}, "'user'"),
]


async def test_api_ban_bad_input(daemon_factory: Any) -> None:
    """Bad input is refused with 400 and a message naming the field; nothing is banned."""
    d = await daemon_factory(api={"keys": [KEY]})
    for path, body, field in BAD:
        status, answer = await raw(d.port, post(path, json.dumps(body).encode()))
        err = json.loads(answer)
        assert (status, err["error"]) == (400, "bad_request"), (path, body, err)
        assert field in err["message"], (path, body, err["message"])
    assert await client(d.port).bans() == []


async def test_api_client_raises_typed_errors_for_bans(daemon_factory: Any) -> None:
    """The clients raise BadRequest for a bad ban and ServerError('muted') for a muted
    sender's publish, as for the other verbs."""
    d = await daemon_factory(api={"keys": [KEY]})
    api = client(d.port)
    with pytest.raises(BadRequest, match="'user' or field 'ip'"):
        await api.ban()
    await api.mute("mia", 60)
    with pytest.raises(ServerError) as info:
        await api.publish("general", "hi", sender="mia")
    assert info.value.code == "muted"
