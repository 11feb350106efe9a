"""Channels on the admin socket and the CLI: channels, channel, channel_delete, kick
from a channel, channel events, /metrics channel totals; one and two hubs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from chathub.admin.channels import ChannelRates
from chathub.admin.client import AdminClient, call
from chathub.errors import AdminError
from tests.helpers import Chatter


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "chathub.cli", *args],
                                   capture_output=True, text=True, timeout=60)


async def subscribe(c: Chatter, channel: str) -> dict:
    await c.send(type="subscribe", channel=channel)
    return await c.recv_type("subscribed", "error")


def by_name(reply: dict) -> dict[str, dict]:
    return {c["name"]: c for c in reply["channels"]}


def test_rates_are_the_difference_over_the_window():
    """Messages per minute: the growth since the oldest sample, scaled to a minute."""
    rates = ChannelRates(window=60)
    rates.sample({"a": 10}, now=0.0)
    assert rates.per_minute({"a": 40, "b": 6}, now=30.0) == {"a": 60.0, "b": 12.0}
    for t in range(1, 100):
        rates.sample({"a": 10 + t}, now=float(t))
    # the oldest kept sample is at most a minute old: one message a second is 60/min
    assert rates.per_minute({"a": 110}, now=100.0) == pytest.approx({"a": 60.0}, abs=1.1)


async def test_channels_lists_figures_of_every_channel(daemon):
    """channels: users, subscriptions per node, messages/min and history length, private too."""
    sock = daemon.cfg.admin_socket
    a = await Chatter.connect(daemon.port, "ann")
    b = await Chatter.connect(daemon.port, "bob")
    await call(sock, "channel_create", name="$ops", private=True)
    assert (await subscribe(a, "games"))["type"] == "subscribed"
    assert (await subscribe(b, "games"))["type"] == "subscribed"
    for i in range(4):
        await a.chat(f"g{i}", channel="games")
        await a.recv_type("chat")
    chans = by_name(await call(sock, "channels"))
    games = chans["games"]
    assert (games["users"], games["subscriptions"], games["private"]) == (2, 2, False)
    assert games["nodes"] == {daemon.node_id: 2}
    assert games["history"] == 4 and games["messages_per_min"] > 0
    assert chans["$ops"]["private"] is True and chans["$ops"]["users"] == 0
    assert chans["general"]["subscriptions"] == 2 and chans["general"]["messages_per_min"] == 0

    listed = {c["user"]: c["channels"] for c in (await call(sock, "clients"))["clients"]}
    assert listed == {"ann": ["games", "general"], "bob": ["games", "general"]}

    info = await call(sock, "channel", name="games", recent=2)
    assert info["members"] == ["ann", "bob"] and info["users"] == 2
    assert [m["text"] for m in info["messages"]] == ["g2", "g3"]
    assert info["history"] == 4 and info["nodes"] == {daemon.node_id: 2}
    with pytest.raises(AdminError, match="there is no channel nope"):
        await call(sock, "channel", name="nope")
    with pytest.raises(AdminError, match="recent"):
        await call(sock, "channel", name="games", recent=5000)
    await a.close()
    await b.close()


async def test_kick_from_a_channel_keeps_the_connection(daemon):
    """kick with a channel: `unsubscribed` reason kicked, others see `leave`, still connected."""
    sock = daemon.cfg.admin_socket
    a = await Chatter.connect(daemon.port, "ann")
    b = await Chatter.connect(daemon.port, "bob")
    await subscribe(a, "games")
    await subscribe(b, "games")
    reply = await call(sock, "kick", user="ann", channel="games", reason="spoilers")
    assert (reply["closed"], reply["channel"]) == (1, "games")
    frame = await a.recv_type("unsubscribed")
    assert frame == {"type": "unsubscribed", "channel": "games", "reason": "kicked",
                     "message": "spoilers"}
    leave = await b.recv_type("leave")
    assert (leave["user"], leave["channel"], leave["reason"]) == ("ann", "games", "kicked")
    await a.chat("still here")  # in general, the default channel
    assert (await a.recv_type("chat"))["text"] == "still here"
    assert a.ws.close_code is None
    assert (await call(sock, "kick", user="ann", channel="games"))["closed"] == 0
    audit = await call(sock, "audit")
    assert any(x["action"] == "kick" and x["arguments"].get("channel") == "games"
               for x in audit["actions"])
    await a.close()
    await b.close()


async def test_delete_refuses_members_unless_forced(daemon):
    """delete: refused with members, forced unsubscribes them ('deleted'); history dropped."""
    sock = daemon.cfg.admin_socket
    a = await Chatter.connect(daemon.port, "ann")
    await subscribe(a, "games")
    await a.chat("bye", channel="games")
    await a.recv_type("chat")
    with pytest.raises(AdminError, match="has 1 member"):
        await call(sock, "channel_delete", name="games")
    with pytest.raises(AdminError, match="auto_join"):
        await call(sock, "channel_delete", name="general")
    with pytest.raises(AdminError, match="no channel"):
        await call(sock, "channel_delete", name="never")
    reply = await call(sock, "channel_delete", name="games", force=True)
    assert reply["deleted"] is True and reply["unsubscribed"] == 1
    frame = await a.recv_type("unsubscribed")
    assert (frame["channel"], frame["reason"]) == ("games", "deleted")
    assert "games" not in by_name(await call(sock, "channels"))
    assert await daemon.kv.client.exists(daemon.node.directory.keys.stream("games")) == 0
    await a.close()


async def test_two_hubs_channel_kick_delete_and_per_node_counts(daemon_factory):
    """Across hubs: per-node subscriptions, kick from a channel (with its reason) and delete
    reach the other hub."""
    here = await daemon_factory(hub={"node_id": "ch-a"})
    there = await daemon_factory(hub={"node_id": "ch-b"})
    a = await Chatter.connect(here.port, "ann")
    b = await Chatter.connect(there.port, "bob")
    b2 = await Chatter.connect(there.port, "bob")
    for c in (a, b, b2):
        assert (await subscribe(c, "games"))["type"] == "subscribed"
    games = by_name(await call(here.cfg.admin_socket, "channels"))["games"]
    assert games["nodes"] == {"ch-a": 1, "ch-b": 2} and games["users"] == 2

    reply = await call(here.cfg.admin_socket, "kick", user="bob", channel="games",
                       reason="take it outside")
    assert reply["closed"] == 2
    for c in (b, b2):  # the operator's words reach the other hub too
        frame = await c.recv_type("unsubscribed")
        assert (frame["reason"], frame["message"]) == ("kicked", "take it outside")
    assert (await a.recv_type("leave"))["user"] == "bob"

    await subscribe(b, "games")
    reply = await call(here.cfg.admin_socket, "channel_delete", name="games", force=True)
    assert reply["unsubscribed"] == 2
    assert (await b.recv_type("unsubscribed"))["reason"] == "deleted"
    assert (await a.recv_type("unsubscribed"))["reason"] == "deleted"
    for c in (a, b, b2):
        await c.close()


async def test_subscriber_gets_channel_events(daemon):
    """subscribe pushes channel_created, channel_emptied and channel_deleted."""
    sock = daemon.cfg.admin_socket
    async with AdminClient(sock) as admin:
        events = admin.subscribe()
        assert (await anext(events))["event"] == "stats"

        async def next_channel_event() -> dict:
            while True:
                ev = await asyncio.wait_for(anext(events), 10)
                if ev["event"].startswith("channel_") and ev["channel"] == "games":
                    return ev

        a = await Chatter.connect(daemon.port, "ann")
        await subscribe(a, "games")
        ev = await next_channel_event()
        assert (ev["event"], ev["channel"], ev["private"]) == ("channel_created", "games", False)
        await a.send(type="unsubscribe", channel="games")
        await a.recv_type("unsubscribed")
        ev = await next_channel_event()
        assert (ev["event"], ev["channel"]) == ("channel_emptied", "games")
        await call(sock, "channel_delete", name="games")
        ev = await next_channel_event()
        assert (ev["event"], ev["channel"]) == ("channel_deleted", "games")
        await a.close()


async def test_metrics_channel_totals_without_channel_labels(daemon):
    """/metrics: channels, subscriptions, messages by channel type; no channel-name label."""
    a = await Chatter.connect(daemon.port, "ann")
    await call(daemon.cfg.admin_socket, "channel_create", name="$ops", private=True)
    await subscribe(a, "games")
    await a.chat("pub", channel="games")
    await a.recv_type("chat")
    await a.chat("pub2")
    await a.recv_type("chat")
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    body = (await asyncio.wait_for(reader.read(), 5)).decode()
    writer.close()
    for needle in ("chathub_channels 2.0", "chathub_subscriptions 2.0",
                   'chathub_channel_messages_total{type="public"} 2.0',
                   'chathub_channel_messages_total{type="private"} 0.0'):
        assert needle in body, needle
    assert "games" not in body and "channel=" not in body
    await a.close()


async def test_channel_cli(daemon):
    """channels / channel create|info|delete / kick --channel: output, --json, exit codes."""
    sock = str(daemon.cfg.admin_socket)
    a = await Chatter.connect(daemon.port, "ann")
    await subscribe(a, "games")
    res = await cli("channels", "--socket", sock)
    assert res.returncode == 0 and "games" in res.stdout and "msgs/min" in res.stdout
    res = await cli("channels", "--socket", sock, "--json")
    assert by_name({"channels": json.loads(res.stdout)})["games"]["users"] == 1
    res = await cli("channel", "info", "games", "--socket", sock)
    assert res.returncode == 0 and "members: ann" in res.stdout
    assert "1 user, 1 subscription " in res.stdout and "0 messages in" in res.stdout
    res = await cli("channel", "info", "games", "--socket", sock, "--json")
    assert json.loads(res.stdout)["members"] == ["ann"]
    res = await cli("channel", "create", "$team", "--private", "--socket", sock)
    assert res.returncode == 0 and "created $team" in res.stdout

    res = await cli("kick", "ann", "--channel", "games", "--socket", sock)
    assert res.returncode == 0 and "unsubscribed 1 connection of ann from games" in res.stdout
    assert (await a.recv_type("unsubscribed"))["reason"] == "kicked"
    res = await cli("kick", "ann", "--channel", "games", "--socket", sock)
    assert res.returncode == 1

    await subscribe(a, "games")
    res = await cli("channel", "delete", "games", "--socket", sock)
    assert res.returncode == 2 and "has 1 member" in res.stderr and res.stderr.count("\n") == 1
    assert "--force" in res.stderr  # the flag the operator types, not only the protocol's field
    res = await cli("channel", "delete", "games", "--force", "--socket", sock)
    assert res.returncode == 0 and "deleted games (1 connection unsubscribed)" in res.stdout

    for args in (("channel", "info", "bad name"), ("channel", "delete", "x y"),
                 ("kick", "ann", "--channel", "no way")):
        res = await cli(*args, "--socket", sock)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, args
    for args in (("channels",), ("channel", "info", "games"), ("channel", "delete", "games"),
                 ("kick", "ann", "--channel", "games")):
        res = await cli(*args, "--socket", "/nonexistent/admin.sock")
        assert res.returncode == 2 and "no chathub daemon" in res.stderr
        assert "Traceback" not in res.stderr, args
    for args in (("channels",), ("channel", "create"), ("channel", "delete"), ("channel", "info")):
        res = await cli(*args, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout
    await a.close()


def test_deleted_channels_keep_their_messages_in_the_totals():
    """/metrics' messages by channel type never go down when a channel is deleted."""
    from chathub.stats import HubStats

    s = HubStats(by_channel={"games": 3, "$ops": 2, "general": 1}, by_channel_remote={"games": 4})
    assert s.channel_messages() == {"public": 4, "private": 2}
    s.forget_channel("games")
    s.forget_channel("$ops")
    assert s.by_channel == {"general": 1} and s.by_channel_remote == {}
    assert s.channel_messages() == {"public": 4, "private": 2}
