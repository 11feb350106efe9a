"""Who may connect: tokens, origins, connection limits, timeouts, moderation."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time

import jwt
import pytest
import websockets

from chathub import closecodes
from chathub.edge import auth
from tests.helpers import Chatter, wait_for, ws_url

SECRET = "s" * 40
TOKEN_MODE = {"mode": "token", "secret": SECRET}


async def refused(url: str, **kwargs) -> tuple[int, bytes]:
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(url, open_timeout=5, **kwargs)
    return info.value.response.status_code, info.value.response.body


# -- tokens -------------------------------------------------------------------------


async def test_token_from_cli_connects_as_its_subject(daemon_factory, short_dir):
    """chathub token mints a token; ?token= connects as its sub; ?user= is ignored."""
    d = await daemon_factory(auth=TOKEN_MODE)
    res = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "chathub.cli", "token", "alice", "--ttl", "5m"],
        capture_output=True, text=True, env={"CHATHUB_AUTH_SECRET": SECRET, "PATH": "/usr/bin"},
        cwd=short_dir, timeout=30)
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip()
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == "alice"
    async with websockets.connect(ws_url(d.port, token=token, user="mallory")) as ws:
        assert json.loads(await ws.recv())["user"] == "alice"


@pytest.mark.parametrize("ttl", ["inf", "nan", "1e400", "-1h", "0", "0s", "", "1h30"])
def test_token_ttl_that_is_no_lifetime_exits_2_with_one_line(ttl):
    """--ttl takes a positive duration like every other duration of the CLI; infinity was
    a traceback and a negative or zero one minted a token already expired."""
    from typer.testing import CliRunner

    from chathub.cli import app

    result = CliRunner().invoke(app, ["token", "alice", "--ttl", ttl],
                                env={"CHATHUB_AUTH_SECRET": SECRET})
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and result.output.startswith("chathub: --ttl:")


async def test_bearer_header_is_accepted(daemon_factory):
    """Authorization: Bearer works like ?token=."""
    d = await daemon_factory(auth=TOKEN_MODE)
    token = auth.mint("bob", SECRET, 60)
    async with websockets.connect(ws_url(d.port), additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert json.loads(await ws.recv())["user"] == "bob"


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("token, reason", [
    (None, b"missing token"),
    ("garbage", b"malformed"),
    ("a.b.c", b"malformed"),
    ("EXPIRED", b"expired"),
    ("WRONGKEY", b"signature"),
    ("ALGNONE", b"algorithm"),
    ("NOEXP", b"exp"),
    ("BADSUB", b"subject"),
])
async def test_bad_tokens_are_refused_with_401(daemon_factory, token, reason):
    """None, garbage, expired, wrong key, alg none, no exp, bad subject: 401 with a reason."""
    d = await daemon_factory(auth=TOKEN_MODE)
    now = int(time.time())
    made = {
        "EXPIRED": jwt.encode({"sub": "a", "exp": now - 120}, SECRET, "HS256"),  # past the skew
        "WRONGKEY": jwt.encode({"sub": "a", "exp": now + 60}, "k" * 40, "HS256"),
        "ALGNONE": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"sub": "a", "exp": now + 60}) + ".",
        "NOEXP": jwt.encode({"sub": "a"}, SECRET, "HS256"),
        "BADSUB": jwt.encode({"sub": "not valid!", "exp": now + 60}, SECRET, "HS256"),
    }
    query = {} if token is None else {"token": made.get(token, token)}
    status, body = await refused(ws_url(d.port, **query))
    assert status == 401 and reason in body and body.count(b"\n") == 1
    assert d.node.guard.refusals["auth"] == 1


async def test_connection_closed_with_4003_when_token_expires(daemon_factory, db):
    """A connection whose token expires is closed with 4003 at expiry (plus the skew, 0 here)."""
    d = await daemon_factory(auth={**TOKEN_MODE, "clock_skew": 0})
    token = jwt.encode({"sub": "brief", "exp": int(time.time()) + 2}, SECRET, "HS256")
    c = await Chatter.connect(d.port, None, token=token)
    await asyncio.wait_for(c.ws.wait_closed(), 5)
    assert c.ws.close_code == closecodes.TOKEN_EXPIRED


def test_token_mode_refuses_short_secret():
    """Start-up refuses a secret shorter than 32 bytes in token mode."""
    from chathub.configload import load
    from chathub.errors import ConfigError

    with pytest.raises(ConfigError, match="auth.secret"):
        load(None, environ={"CHATHUB_AUTH_MODE": "token", "CHATHUB_AUTH_SECRET": "short"})


# -- origins and limits -------------------------------------------------------------------


async def test_foreign_origin_refused_with_403(daemon_factory):
    """With allowed_origins set, another Origin gets 403; the allowed one and none connect."""
    d = await daemon_factory(server={"allowed_origins": ["http://chat.example"]})
    status, body = await refused(ws_url(d.port, user="a"), origin="http://evil.example")
    assert status == 403 and b"origin" in body
    async with websockets.connect(ws_url(d.port, user="a"), origin="http://chat.example") as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
    async with websockets.connect(ws_url(d.port, user="b")) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"


async def _attempt(port: int, host: str, user: str) -> int:
    """One raw upgrade request from ``host``; returns the HTTP status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    try:
        writer.write(f"GET /ws?user={user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 10)
        return int(line.split()[1])
    finally:
        writer.close()


async def test_connection_attempts_per_ip_limited_others_still_connect(daemon_factory):
    """2,000 attempts from one address beyond its budget are refused; other addresses connect."""
    d = await daemon_factory(server={"connect_rate_per_ip": 0.1, "connect_burst_per_ip": 20})
    statuses: list[int] = []
    for start in range(0, 2000, 200):
        statuses += await asyncio.gather(*(_attempt(d.port, "127.0.0.1", f"f{start + i}") for i in range(200)))
    assert statuses.count(101) <= 20 + 5  # the burst, plus what the rate refilled meanwhile
    assert statuses.count(429) >= 1975
    assert d.node.guard.refusals["connect_rate"] == statuses.count(429)
    for host in ("127.0.0.2", "127.0.0.3"):
        async with websockets.connect(ws_url(d.port, user="ok" + host[-1]), local_addr=(host, 0)) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"


async def test_max_connections_total_and_per_ip(daemon_factory):
    """Past max_connections_per_ip: 429; past max_connections: 503."""
    d = await daemon_factory(server={"max_connections": 4, "max_connections_per_ip": 2})
    a = [await Chatter.connect(d.port, f"a{i}") for i in range(2)]
    status, body = await refused(ws_url(d.port, user="a3"))
    assert status == 429 and b"too many connections" in body
    b = [await Chatter.connect(d.port, f"b{i}", local_host="127.0.0.2") for i in range(2)]
    status, _ = await refused(ws_url(d.port, user="c"), local_addr=("127.0.0.3", 0))
    assert status == 503
    await a[0].close()
    await wait_for(lambda: d.node.hub.connection_count == 3, what="slot freed")
    c = await Chatter.connect(d.port, "a4")
    for x in (*a[1:], *b, c):
        await x.close()


async def test_handshake_never_finished_is_dropped_at_timeout(daemon_factory):
    """A TCP connection that never sends the handshake is closed after handshake_timeout."""
    d = await daemon_factory(server={"handshake_timeout": 0.5})
    reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
    writer.write(b"GET /ws?user=slow HTTP/1.1\r\n")  # and never the rest
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert time.monotonic() - started < 3
    writer.close()
    await wait_for(lambda: d.node.guard.refusals["handshake_timeout"] == 1, what="counted")


async def test_dead_peer_closed_by_keepalive(daemon_factory, db):
    """A peer that stops answering pings is closed and recorded as a keepalive timeout."""
    d = await daemon_factory(server={"ping_interval": 0.3, "ping_timeout": 0.3})
    reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
    writer.write(b"GET /ws?user=ghost HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 101")
    await wait_for(lambda: "ghost" in d.node.hub.users(), what="registered")
    await wait_for(lambda: "ghost" not in d.node.hub.users(), timeout=5, what="closed by keepalive")
    writer.close()
    await wait_for(lambda: _row(db, "ghost"), what="session row")
    assert d.node.hub.stats.by_close.get("keepalive timeout") == 1


async def _row(db, user: str) -> bool:
    return await db.fetchval("SELECT close_reason FROM sessions WHERE user_name=$1", user) == "keepalive timeout"


async def test_refusals_show_in_metrics(daemon_factory):
    """Refusals by reason are exported on /metrics."""
    d = await daemon_factory(server={"allowed_origins": ["http://ok"]})
    await refused(ws_url(d.port, user="x"), origin="http://bad")
    reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert b'chathub_refusals_total{reason="origin"} 1.0' in data


# -- moderation -----------------------------------------------------------------------------


async def test_blocklist_reject_and_mask(daemon_factory):
    """Blocked words are refused with blocked, or masked with *** when configured."""
    d = await daemon_factory(moderation={"blocklist": ["darn"], "blocklist_action": "reject"})
    async with await Chatter.connect(d.port, "a") as a:
        await a.chat("well DARN it", ref="b")
        err = await a.recv_type("error", "chat")
        assert err["code"] == "blocked" and err["ref"] == "b"
        await a.chat("darning is fine")
        assert (await a.recv_type("chat"))["text"] == "darning is fine"
    m = await daemon_factory(moderation={"blocklist": ["darn"], "blocklist_action": "mask"})
    async with await Chatter.connect(m.port, "a") as a:
        await a.whisper("a", "oh darn")
        assert (await a.recv_type("whisper"))["text"] == "oh ***"


async def test_flood_of_identical_messages_is_refused(daemon_factory):
    """The same text more than flood_repeats times in the window is refused."""
    d = await daemon_factory(moderation={"flood_repeats": 2, "flood_window": 60.0})
    async with await Chatter.connect(d.port, "a") as a:
        for _ in range(3):
            await a.chat("same")
        res = [await a.recv_type("chat", "error") for _ in range(3)]
        assert sorted(r["type"] for r in res) == ["chat", "chat", "error"]
        assert [r["code"] for r in res if r["type"] == "error"] == ["blocked"]


def no_links(user, msg):
    """A custom filter for the test below: refuses links."""
    from chathub.protocol import ProtocolError

    if "http" in msg.text:
        raise ProtocolError("blocked", "no links here", msg.ref)
    return msg


def broken(user, msg):
    """A custom filter that fails."""
    raise RuntimeError("filter bug")


async def test_custom_filters_and_failing_filter(daemon_factory):
    """A module:callable filter applies; one that raises refuses with unavailable, hub lives."""
    d = await daemon_factory(moderation={"filters": ["tests.test_guard:no_links"]})
    async with await Chatter.connect(d.port, "a") as a:
        await a.chat("see http://x")
        assert (await a.recv_type("error"))["message"] == "no links here"
    b = await daemon_factory(moderation={"filters": ["tests.test_guard:broken"]})
    async with await Chatter.connect(b.port, "a") as a:
        await a.chat("anything")
        assert (await a.recv_type("error"))["code"] == "unavailable"
        await a.send(type="users")
        assert (await a.recv_type("users"))["users"] == ["a"]


async def test_users_and_history_requests_have_a_budget_per_connection(daemon_factory):
    """Past request_burst, users/history get rate_limited with a wait; another connection is unaffected."""
    d = await daemon_factory(ratelimit={"request_rate": 0.5, "request_burst": 3})
    async with await Chatter.connect(d.port, "curious") as a, await Chatter.connect(d.port, "calm") as b:
        for i in range(5):
            await a.send(type="users" if i % 2 else "history", ref=str(i))
        replies = [await a.recv_type("users", "history", "error") for _ in range(5)]
        assert [r["type"] for r in replies].count("error") == 2
        errors = [r for r in replies if r["type"] == "error"]
        assert all(e["code"] == "rate_limited" and 0 < e["retry_after_ms"] <= 2000 for e in errors)
        await b.send(type="users")
        assert (await b.recv_type("users", "error"))["type"] == "users"
