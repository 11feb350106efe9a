"""Slow mode (chathub.slowmode): one channel's own chat budget on every hub, from
``chathub limits set --channel``, and its CLI. The Valkey function's two budgets are
tested in test_functions.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chathub.admin.client import AdminClient, call
from chathub.kv import KV
from chathub.slowmode import SlowMode, check_channel, check_values
from tests.helpers import Chatter, wait_for


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "chathub.cli", *args],
                                   capture_output=True, text=True, timeout=60)


async def subscribe(c: Chatter, channel: str) -> None:
    await c.send(type="subscribe", channel=channel)
    assert (await c.recv_type("subscribed", "error"))["type"] == "subscribed"


async def outcomes(c: Chatter, n: int) -> list[dict]:
    """The next ``n`` answers to this client's chats (its chats or errors)."""
    return [await c.recv_type("chat", "error") for _ in range(n)]


def codes(frames: list[dict]) -> list[str]:
    # errors go straight back, chats through the fan-out: count, do not order
    return sorted(f.get("code", f["type"]) for f in frames)


# -- checks -------------------------------------------------------------------------------


def test_only_chat_keys_and_channel_names_are_accepted():
    assert check_values({"chat_rate": "0.2", "chat_burst": "1"}) == {"chat_rate": 0.2, "chat_burst": 1}
    for bad, needle in (({"whisper_rate": 1}, "only chat_rate and chat_burst"),
                        ({"flood_repeats": 2}, "only chat_rate and chat_burst"),
                        ({"chat_rate": 0}, "more than 0"), ({"chat_burst": 1.5}, "integer"),
                        ({}, "name chat_rate")):
        with pytest.raises(ValueError, match=needle):
            check_values(bad)
    assert check_channel("$staff.room-1") == "$staff.room-1"
    for bad in ("bad name", "", "x" * 65, 3, None):
        with pytest.raises(ValueError, match="not a channel name"):
            check_channel(bad)


def test_apply_ignores_unreadable_stored_values():
    slow = SlowMode(KV("redis://127.0.0.1:1", 1.0, "x:"), "n")
    slow.apply({"raid": json.dumps({"chat_rate": 0.5, "chat_burst": 2}), "junk": "{",
                "neg": json.dumps({"chat_rate": -1, "chat_burst": 1}),
                "bad name": json.dumps({"chat_rate": 1, "chat_burst": 1})})
    assert slow.active == {"raid": (0.5, 2)}
    assert slow.show() == {"raid": {"chat_rate": 0.5, "chat_burst": 2}}
    slow.apply({})
    assert slow.active == {}


# -- on every hub ---------------------------------------------------------------------------


async def test_slow_mode_reaches_every_hub_and_leaves_other_channels_alone(daemon_factory):
    """Set on one of three hubs, it applies on all within a second; a client on another
    hub gets rate_limited in that channel (saying so) and nothing elsewhere; another
    user has their own budget in the slow channel."""
    hubs = [await daemon_factory(hub={"node_id": f"slow{i}"}) for i in range(3)]
    async with await Chatter.connect(hubs[2].port, "raider") as c, \
            await Chatter.connect(hubs[1].port, "bystander") as b:
        await subscribe(c, "raid")
        await subscribe(b, "raid")
        reply = await call(hubs[0].cfg.admin_socket, "limits_set", channel="raid",
                           values={"chat_rate": 0.01, "chat_burst": 1})
        assert reply["channels"] == {"raid": {"chat_rate": 0.01, "chat_burst": 1}}
        assert reply["override"] == {}  # the global limits are not touched
        started = time.monotonic()
        await wait_for(lambda: all(h.node.slow.active == {"raid": (0.01, 1)} for h in hubs),
                       timeout=1.0, what="slow mode on every hub")
        assert time.monotonic() - started < 1.0

        for i in range(3):
            await c.chat(f"raid {i}", channel="raid")
        got = await outcomes(c, 3)
        assert codes(got) == ["chat", "rate_limited", "rate_limited"]
        err = next(f for f in got if f["type"] == "error")
        assert err["message"].startswith("raid is in slow mode") and 90_000 < err["retry_after_ms"] <= 100_000

        for i in range(5):  # the same user, another channel: the global budget only
            await c.chat(f"general {i}", channel="general")
        assert codes(await outcomes(c, 5)) == ["chat"] * 5

        await b.chat("me too", channel="raid")
        frame = await b.recv_type("chat", "error")
        while frame["type"] == "chat" and frame["from"] != "bystander":
            frame = await b.recv_type("chat", "error")
        assert frame["type"] == "chat" and frame["text"] == "me too"


async def test_slow_mode_survives_a_restart_and_reset_lifts_it(daemon_factory):
    """A hub started after slow mode was set enforces it from the first message; the CLI's
    reset --channel lifts it on every hub; both are in the audit trail with the channel."""
    first = await daemon_factory(hub={"node_id": "sr0"})
    sock = str(first.cfg.admin_socket)
    out = await cli("limits", "set", "--channel", "raid", "chat_rate=0.01", "--socket", sock,
                    "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["channels"] == {"raid": {"chat_rate": 0.01, "chat_burst": 1}}
    await first.stop()

    later = await daemon_factory(hub={"node_id": "sr1"})
    other = await daemon_factory(hub={"node_id": "sr2"})
    assert later.node.slow.active == {"raid": (0.01, 1)}  # read at start
    async with await Chatter.connect(later.port, "raider") as c, \
            AdminClient(later.cfg.admin_socket) as admin:
        events = admin.subscribe()
        assert (await anext(events))["event"] == "stats"  # later events cannot be missed
        await subscribe(c, "raid")
        for i in range(2):
            await c.chat(f"m{i}", channel="raid")
        assert codes(await outcomes(c, 2)) == ["chat", "rate_limited"]
        ev = await asyncio.wait_for(anext(e async for e in events if e["event"] == "rate_limited"), 5)
        assert (ev["user"], ev["channel"], ev["slow"]) == ("raider", "raid", True)
        await events.aclose()

        out = await cli("limits", "reset", "--channel", "raid", "--socket",
                        str(other.cfg.admin_socket), "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["channels"] == {}
        await wait_for(lambda: later.node.slow.active == {}, timeout=1.0,
                       what="slow mode lifted on the other hub")
        for i in range(3):
            await c.chat(f"after {i}", channel="raid")
        assert codes(await outcomes(c, 3)) == ["chat"] * 3

    audit = await call(later.cfg.admin_socket, "audit")
    assert [(a["action"], a["target"], a["arguments"]) for a in audit["actions"]] == [
        ("limits_reset", "raid", {"channel": "raid", "was_slow": True}),
        ("limits_set", "raid", {"channel": "raid",
                                "values": {"chat_rate": 0.01, "chat_burst": 1}})]


async def test_slow_mode_survives_sigkill_of_a_serve_process(spawn):
    """chathub serve killed with SIGKILL and started again: slow mode is in force from
    its first chat, read from Valkey, and logged."""
    proc = await spawn()
    sock = str(Path(proc.config).parent / Path(proc.config).stem / "admin.sock")
    out = await cli("limits", "set", "--channel", "raid", "chat_rate=0.01", "chat_burst=2",
                    "--socket", sock)
    assert out.returncode == 0, out.stderr
    proc.kill()
    await proc.start()
    async with await Chatter.connect(proc.port, "raider") as c:
        await subscribe(c, "raid")
        for i in range(3):
            await c.chat(f"m{i}", channel="raid")
        assert codes(await outcomes(c, 3)) == ["chat", "chat", "rate_limited"]
    shown = json.loads((await cli("limits", "--json", "--socket", sock)).stdout)
    assert shown["channels"] == {"raid": {"chat_rate": 0.01, "chat_burst": 2}}
    assert proc.log.read_text().count("slow mode now raid (chat_rate=0.01 chat_burst=2)") == 2


async def test_cli_lists_channels_and_changes_one_key(daemon):
    """chathub limits shows the slowed channels; setting only chat_burst keeps the rate;
    chat_burst alone on a channel not in slow mode is refused with one line."""
    sock = str(daemon.cfg.admin_socket)
    out = await cli("limits", "set", "--channel", "raid", "chat_burst=3", "--socket", sock)
    assert out.returncode == 2 and "raid is not in slow mode" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert (await cli("limits", "set", "--channel", "raid", "chat_rate=0.5", "--socket",
                      sock)).returncode == 0
    assert (await cli("limits", "set", "--channel", "raid", "chat_burst=3", "--socket",
                      sock)).returncode == 0
    shown = json.loads((await cli("limits", "--json", "--socket", sock)).stdout)
    assert shown["channels"] == {"raid": {"chat_rate": 0.5, "chat_burst": 3}}
    table = await cli("limits", "--socket", sock)
    assert table.returncode == 0 and "slow mode" in table.stdout and "raid" in table.stdout
    assert "2 s" in table.stdout  # one message every 1/0.5 s
    assert (await cli("limits", "reset", "--channel", "raid", "--socket", sock)).returncode == 0
    table = await cli("limits", "--socket", sock)
    assert "no channel is in slow mode" in table.stdout


async def test_cli_help_bad_input_and_no_daemon(short_dir):
    sock = str(short_dir / "none.sock")
    for args in (["limits", "set", "--help"], ["limits", "reset", "--help"]):
        out = await cli(*args)
        assert out.returncode == 0 and "--channel" in out.stdout and "slow mode" in out.stdout.lower()
    for args, needle in (
            (["set", "--channel", "raid", "whisper_rate=1"], "only chat_rate and chat_burst"),
            (["set", "--channel", "raid", "flood_repeats=2"], "only chat_rate and chat_burst"),
            # an unknown key: named as slow mode names them, not the eight global ones
            (["set", "--channel", "raid", "speed=3"], "only chat_rate and chat_burst"),
            (["set", "--channel", "bad name", "chat_rate=1"], "not a channel name"),
            (["set", "--channel", "raid", "chat_rate=0"], "more than 0"),
            (["reset", "--channel", "no/slash"], "not a channel name")):
        out = await cli("limits", *args, "--socket", sock)
        assert out.returncode == 2 and needle in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    for args in (["set", "--channel", "raid", "chat_rate=1"], ["reset", "--channel", "raid"]):
        out = await cli("limits", *args, "--socket", sock)
        assert out.returncode == 2 and "no chathub daemon" in out.stderr, args
        assert len(out.stderr.strip().splitlines()) == 1


async def test_admin_socket_refuses_bad_channel_requests(daemon):
    from chathub.errors import AdminError

    sock = daemon.cfg.admin_socket
    for fields, needle in (({"channel": "raid", "values": {"request_rate": 1}}, "only chat_rate"),
                           ({"channel": "bad name", "values": {"chat_rate": 1}}, "channel name"),
                           ({"channel": 7, "values": {"chat_rate": 1}}, "channel name")):
        with pytest.raises(AdminError, match=needle):
            await call(sock, "limits_set", **fields)
    assert daemon.node.slow.active == {}
    audit = await call(sock, "audit")
    assert audit["actions"] == []


def test_the_dashboard_event_log_names_slow_mode():
    from chathub.tui.widgets.events import describe

    base = {"event": "rate_limited", "user": "eve", "kind": "chat", "retry_after_ms": 4200}
    assert describe(base)[0] == "⏱ eve rate-limited (chat, retry after 4200 ms)"
    assert describe({**base, "channel": "raid", "slow": True})[0] == (
        "⏱ eve rate-limited (chat, slow mode in raid, retry after 4200 ms)")
