"""Bad input modelled on faults other chat servers shipped: each case a kind, closed.

The rule: whatever one client sends earns at most that client an error frame or a
close of its own connection with a documented code; it never closes another client,
never closes with 1011, leaves nothing behind once the connection is gone, and never
turns an operator's command into a no-op.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import subprocess
import sys
import time

import jwt
import pytest
import websockets

from chathub import closecodes, protocol
from chathub.admin.client import call
from chathub.configload import load
from chathub.edge import auth
from chathub.errors import ConfigError
from chathub.wsconnection import TrackedConnection
from tests.helpers import Chatter, wait_for, ws_url
from tests.procs import DaemonProcess, free_port, proc_status, write_config

SECRET = "s" * 40
KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
SEED = 20261129


async def http(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes; the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def upgrade(path: str = "/ws?user=raw", headers: bytes = b"", key: bool = True) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\n").encode() + (KEY if key else b"") + headers + b"\r\n"


# -- 1. close reasons longer than a close frame holds ------------------------------------


def test_wire_reason_cuts_at_123_bytes_on_a_character_boundary():
    """Reasons of every length in bytes and characters fit a close frame and stay valid UTF-8."""
    rnd = random.Random(SEED)
    alphabet = ["a", "é", "中", "😀"]  # 1, 2, 3 and 4 bytes
    for _ in range(2000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 200)))
        cut = closecodes.wire_reason(text)
        data = cut.encode()
        assert len(data) <= closecodes.MAX_REASON_BYTES
        assert text.startswith(cut)
        if len(text.encode()) <= 123:
            assert cut == text
        else:  # nothing more would have fitted
            assert len(data) + len(text[len(cut)].encode()) > 123


@pytest.mark.parametrize("reason", ["x" * 124, "中" * 44, "😀" * 40 + "!"])
async def test_kick_with_a_long_reason_kicks(daemon, reason):
    """The client gets the whole reason in ``kicked``, is closed 4001, and is gone for everyone."""
    victim = await Chatter.connect(daemon.port, "victim")
    other = await Chatter.connect(daemon.port, "other")
    reply = await call(daemon.cfg.admin_socket, "kick", user="victim", reason=reason)
    assert reply["closed"] == 1
    kicked = await victim.recv_type("kicked")
    assert kicked["reason"] == reason[:200]
    await asyncio.wait_for(victim.ws.wait_closed(), 5)
    assert victim.ws.close_code == closecodes.KICKED
    assert len(victim.ws.close_reason.encode()) <= 123
    leave = await other.recv_type("leave")
    assert leave["user"] == "victim"
    await other.send(type="users")
    assert "victim" not in (await other.recv_type("users"))["users"]
    await other.close()


# -- 2. ids at the edges of their range ---------------------------------------------------


def test_ids_are_two_unsigned_64_bit_integers():
    top = str(2**64 - 1)
    assert protocol.parse_id(f"{top}-{top}") == (2**64 - 1, 2**64 - 1)
    assert protocol.canonical_id("007-01") == "7-1"
    for bad in (f"{2**64}-0", f"0-{2**64}", "99999999999999999999-0", "-1-0", "1-", "a-b",
                "1-2-3", "", " 1-2", "1-2 ", "１-２"):
        assert protocol.canonical_id(bad) is None, bad
    assert protocol.before_first("0-0") and protocol.before_first("0-1")
    assert not protocol.before_first("0-2")


@pytest.mark.parametrize("before", ["0-0", "0-1", "00-0"])
async def test_history_before_the_first_id_is_an_empty_page(daemon, before):
    c = await Chatter.connect(daemon.port, "pager")
    await c.send(type="history", before=before, ref="h")
    reply = await c.recv_type("history", "error")
    assert reply == {"type": "history", "messages": [], "ref": "h"}
    await c.close()


@pytest.mark.parametrize("before", [f"{2**64}-0", f"1-{2**64}", "99999999999999999999-1",
                                    "123456789012345678901-0"])
async def test_history_before_out_of_range_is_bad_request(daemon, before):
    c = await Chatter.connect(daemon.port, "pager")
    await c.send(type="history", before=before, ref="h")
    reply = await c.recv_type("history", "error")
    assert reply["code"] == "bad_request" and "before" in reply["message"]
    await c.chat("still open")
    assert (await c.recv_type("chat"))["text"] == "still open"
    await c.close()


@pytest.mark.parametrize("before", ["2-10000000000000000000", f"{2**63}-0",
                                    f"{2**64 - 1}-{2**64 - 1}"])
async def test_history_before_past_postgres_bigint_is_answered(daemon, before):
    """Valid ids past PostgreSQL's signed bigint page back from the newest message."""
    c = await Chatter.connect(daemon.port, "pager")
    await c.chat("one")
    await c.recv_type("chat")
    await c.send(type="history", before=before, ref="h")
    reply = await c.recv_type("history", "error")
    assert reply["type"] == "history", reply
    big = protocol.parse_id(before) > (2**62, 0)
    assert [m["text"] for m in reply["messages"]] == (["one"] if big else [])
    await c.close()


# -- 3. one client's bad since ------------------------------------------------------------


async def test_out_of_range_since_is_refused_before_the_upgrade_and_others_connect(daemon):
    seed = await Chatter.connect(daemon.port, "seed")
    await seed.chat("in the cache")
    await seed.recv_type("chat")

    async def bad() -> int:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(ws_url(daemon.port, user="bad", since="99999999999999999999-0"))
        return info.value.response.status_code

    results = await asyncio.gather(bad(), *(Chatter.connect(daemon.port, f"ok{i}") for i in range(24)))
    assert results[0] == 400
    for c in results[1:]:
        assert c.welcome["type"] == "welcome"
        await c.close()
    await seed.close()


async def test_since_newer_than_the_cache_is_not_recovered(daemon):
    """A since this cache never issued: recovered false, and the recent history instead."""
    seed = await Chatter.connect(daemon.port, "seed")
    await seed.chat("recent")
    last = (await seed.recv_type("chat"))["id"]
    ms, seq = protocol.parse_id(last)
    c = await Chatter.connect(daemon.port, "future", since=f"{ms + 10**9}-0")
    assert c.welcome["recovered"] is False
    assert [m["text"] for m in c.welcome["history"]][-1] == "recent"
    await c.close()
    await seed.close()


# -- 4. refused upgrades keep nothing -------------------------------------------------------


REFUSED = [
    upgrade(key=False),
    upgrade().replace(b"Version: 13", b"Version: 8"),
    upgrade().replace(b"GET ", b"HEAD "),
    upgrade().replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1),
]


async def test_refused_upgrades_leave_no_connection_objects(daemon_factory):
    """Nothing is kept for a request that does not end in 101."""
    d = await daemon_factory(server={"connect_rate_per_ip": 1e6, "connect_burst_per_ip": 10**6})
    for i in range(400):
        answer = await http(d.port, REFUSED[i % len(REFUSED)])
        assert not answer.startswith(b"HTTP/1.1 101"), answer[:80]
    def alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects()
                   if isinstance(o, TrackedConnection) and o.server is d.node.server)

    await wait_for(lambda: alive() == 0)  # the last refusals may still be closing
    assert d.node.hub.connection_count == 0 and d.node.guard.open_per_ip() == {}



async def test_ten_thousand_refusals_do_not_grow_the_daemon(spawn):
    """RSS after 10,000 refused upgrades stays within 2 MB of RSS after the first 1,000."""
    p = await spawn(server={"connect_rate_per_ip": 1e6, "connect_burst_per_ip": 10**6})
    sem = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        async with sem:
            answer = await http(p.port, REFUSED[i % len(REFUSED)])
            assert answer[:10] in (b"HTTP/1.1 4", b"HTTP/1.1 5"), answer[:80]

    await asyncio.gather(*(one(i) for i in range(1000)))
    before = proc_status(p.pid, "VmRSS")
    await asyncio.gather(*(one(i) for i in range(9000)))
    after = proc_status(p.pid, "VmRSS")
    assert after - before < 2 * 2**20, (before, after)
    c = await Chatter.connect(p.port, "still")
    await c.close()


# -- 5. duplicate headers -----------------------------------------------------------------


async def test_ambiguous_origin_is_403_and_counted(daemon_factory):
    d = await daemon_factory(server={"allowed_origins": ["https://ok.example"]})
    answer = await http(d.port, upgrade(headers=b"Origin: https://ok.example\r\nOrigin: https://evil.example\r\n"))
    assert answer.startswith(b"HTTP/1.1 403") and b"ambiguous Origin" in answer
    assert d.node.guard.refusals["origin"] == 1
    same = await http(d.port, upgrade(headers=b"Origin: https://ok.example\r\nOrigin: https://ok.example\r\n"))
    assert same.startswith(b"HTTP/1.1 403") and d.node.guard.refusals["origin"] == 2
    ok = await websockets.connect(ws_url(d.port, user="ok"), origin="https://ok.example")
    await ok.close()


async def test_duplicate_harmless_headers_do_not_stop_a_client(daemon):
    rnd = random.Random(SEED)
    harmless = [b"User-Agent: a\r\nUser-Agent: b\r\n", b"Connection: keep-alive\r\n",
                b"Accept: */*\r\nAccept: text/html\r\n", b"Cache-Control: no-cache\r\nCache-Control: x\r\n",
                b"X-Anything: 1\r\nX-Anything: 2\r\n"]
    for _ in range(10):
        extra = b"".join(rnd.sample(harmless, rnd.randint(1, len(harmless))))
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(upgrade(headers=extra))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), (extra, head)
        writer.close()


async def test_ambiguous_authorization_is_401(daemon_factory):
    d = await daemon_factory(auth={"mode": "token", "secret": SECRET})
    t1, t2 = auth.mint("a", SECRET, 60), auth.mint("b", SECRET, 60)
    answer = await http(d.port, upgrade(path="/ws", headers=(
        f"Authorization: Bearer {t1}\r\nAuthorization: Bearer {t2}\r\n").encode()))
    assert answer.startswith(b"HTTP/1.1 401") and b"ambiguous Authorization" in answer
    assert d.node.guard.refusals["auth"] == 1


@pytest.mark.parametrize("query", ["user=a&user=b", "user=a&since=1-1&since=2-2"])
async def test_a_repeated_query_parameter_is_400(daemon, query):
    """Two ``user`` (or ``since``) values: a proxy and chathub could read different ones."""
    answer = await http(daemon.port, upgrade(path=f"/ws?{query}"))
    assert answer.startswith(b"HTTP/1.1 400") and b"more than once" in answer, answer[:200]
    assert daemon.node.hub.connection_count == 0


async def test_a_repeated_token_is_401(daemon_factory):
    d = await daemon_factory(auth={"mode": "token", "secret": SECRET})
    t1, t2 = auth.mint("a", SECRET, 60), auth.mint("b", SECRET, 60)
    answer = await http(d.port, upgrade(path=f"/ws?token={t1}&token={t2}"))
    assert answer.startswith(b"HTTP/1.1 401") and b"ambiguous query parameter token" in answer
    assert d.node.guard.refusals["auth"] == 1


# -- 6. token times and claim types ---------------------------------------------------------


def _token(**claims) -> str:
    return jwt.encode(claims, SECRET, "HS256")


def test_token_times_allow_the_clock_skew():
    now = 1_800_000_000.0
    assert auth.verify(_token(sub="a", iat=now + 3, exp=now + 60), SECRET, 30, now)[0] == "a"
    assert auth.verify(_token(sub="a", nbf=now + 29, exp=now + 60), SECRET, 30, now)[0] == "a"
    assert auth.verify(_token(sub="a", exp=now - 29), SECRET, 30, now)[0] == "a"
    with pytest.raises(auth.TokenError, match="not yet valid"):
        auth.verify(_token(sub="a", iat=now + 31, exp=now + 60), SECRET, 30, now)
    with pytest.raises(auth.TokenError, match="not yet valid"):
        auth.verify(_token(sub="a", nbf=now + 31, exp=now + 60), SECRET, 30, now)
    with pytest.raises(auth.TokenError, match="expired"):
        auth.verify(_token(sub="a", exp=now - 31), SECRET, 30, now)
    assert auth.verify(_token(sub="a", exp=now + 60), SECRET, 30, now)[1] == now + 90


@pytest.mark.parametrize("claims,word", [
    ({"sub": "a", "exp": "soon"}, "'exp'"), ({"sub": "a", "exp": True}, "'exp'"),
    ({"sub": "a", "exp": 2e9, "iat": "x"}, "'iat'"), ({"sub": "a", "exp": 2e9, "nbf": [1]}, "'nbf'"),
    ({"sub": 7, "exp": 2e9}, "subject"), ({"sub": ["a"], "exp": 2e9}, "subject"),
    ({"exp": 2e9}, "'sub'"), ({"sub": "a"}, "'exp'"), ({"sub": "a", "exp": None}, "'exp'"),
])
def test_claims_of_the_wrong_type_are_named(claims, word):
    with pytest.raises(auth.TokenError) as info:
        auth.verify(_token(**claims), SECRET, 30, 1_800_000_000.0)
    assert word in str(info.value)


def test_non_finite_times_are_refused():
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    body = jwt.utils.base64url_encode(b'{"sub":"a","exp":Infinity}')
    import hashlib
    import hmac
    sig = jwt.utils.base64url_encode(hmac.new(SECRET.encode(), header + b"." + body, hashlib.sha256).digest())
    with pytest.raises(auth.TokenError):
        auth.verify((header + b"." + body + b"." + sig).decode(), SECRET, 30, 1_800_000_000.0)


async def test_a_token_issued_three_seconds_ahead_connects(daemon_factory):
    d = await daemon_factory(auth={"mode": "token", "secret": SECRET})
    now = int(time.time())
    c = await Chatter.connect(d.port, None, token=_token(sub="ahead", iat=now + 3, nbf=now + 3, exp=now + 60))
    assert c.welcome["user"] == "ahead"
    await c.close()


# -- 7. the frame limit admits the text limit ---------------------------------------------


async def test_1500_emoji_escaped_by_json_dumps_are_a_chat(daemon):
    c = await Chatter.connect(daemon.port, "emoji")
    frame = json.dumps({"type": "chat", "text": "😀" * 1500, "ref": "😀" * 64})
    assert len(frame) > 18_000
    await c.ws.send(frame)
    got = await c.recv_type("chat", "error")
    assert got["type"] == "chat" and got["text"] == "😀" * 1500
    await c.close()


def test_a_frame_limit_below_the_text_limit_is_refused_naming_both_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(None, environ={}, overrides={"server": {"max_message_bytes": 16384}})
    assert "server.max_message_bytes" in str(info.value) and "max_text_chars" in str(info.value)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nmax_text_chars = 4000\n")
    r = subprocess.run([sys.executable, "-m", "chathub.cli", "serve", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "max_message_bytes" in lines[0] and "max_text_chars" in lines[0]


# -- 8. open files --------------------------------------------------------------------------


async def test_max_connections_is_clamped_to_the_open_files_limit(database_url, valkey_url,
                                                                   key_prefix, short_dir):
    """With 400 open files, max_connections drops to 144 with a warning; the 145th gets 503
    while /healthz and the admin socket keep answering."""
    import resource

    cfg = write_config(short_dir / "fd.toml", short_dir / "fd", {
        "database": {"url": database_url, "migrate": True},
        "valkey": {"url": valkey_url, "key_prefix": key_prefix},
        "server": {"connect_rate_per_ip": 1e6, "connect_burst_per_ip": 10**6},
    })

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (400, 400))

    p = DaemonProcess(cfg, free_port(), short_dir / "fd.log", preexec=limit)
    await p.start()
    try:
        log = p.log.read_text()
        assert "max_connections = 20000" in log and "limit of 400" in log and "using 144" in log
        clients = [await Chatter.connect(p.port, f"c{i}") for i in range(144)]
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(ws_url(p.port, user="one-too-many"))
        assert info.value.response.status_code == 503
        assert (await http(p.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200")
        stats = await call(short_dir / "fd" / "admin.sock", "stats")
        assert stats["connections"] == 144
        await asyncio.gather(*(c.close() for c in clients))
    finally:
        p.stop()


# -- the HTTP side of the port --------------------------------------------------------------


@pytest.mark.parametrize("raw,status", [
    (b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
    (b"GET /healthz HTTP/1.0\r\n\r\n", b"200"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", b"400"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
    (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"405"),
    (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
    (b"NONSENSE\r\n\r\n", b"400"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"505"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
])
async def test_every_http_request_gets_an_answer(daemon, raw, status):
    answer = await http(daemon.port, raw)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:100]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    if raw.startswith(b"HEAD"):
        assert body == b"" and b"Content-Length: " in head


async def test_a_peer_that_leaves_before_its_request_logs_nothing(spawn):
    """TCP health checks and port scans (connect, then close having sent nothing or half a
    request line) are answered by a close: no traceback, nothing at ERROR in the daemon's
    log (each used to log two), and the daemon serves on."""
    p = await spawn()
    start = p.log.stat().st_size
    for i in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        if i % 2:
            writer.write(b"GET /healthz HT")
        writer.close()
        await writer.wait_closed()
        assert await asyncio.wait_for(reader.read(), 5) == b""
    assert (await http(p.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200")
    async with await Chatter.connect(p.port, "after") as c:  # a marker: the log is written up to here
        await c.chat("still serving", ref="m")
        await c.recv_type("chat")
    with p.log.open("rb") as f:
        f.seek(start)
        logged = f.read().decode()
    assert "Traceback" not in logged and " ERROR " not in logged, logged[-3000:]


async def test_bystanders_keep_receiving_through_all_of_it(daemon):
    """A mix of every case above while 5 clients chat: each gets every message."""
    good = [await Chatter.connect(daemon.port, f"good{i}") for i in range(5)]
    rnd = random.Random(SEED)
    for i in range(30):
        case = rnd.randrange(4)
        if case == 0:
            await http(daemon.port, rnd.choice(REFUSED))
        elif case == 1:
            await http(daemon.port, upgrade(headers=b"Origin: a\r\nOrigin: b\r\n"))
        elif case == 2:
            bad = await Chatter.connect(daemon.port, "bad")
            await bad.send(type="history", before=rnd.choice(["0-0", f"{2**64}-0", "5-5"]))
            await bad.recv_type("history", "error")
            await bad.close()
        else:
            await call(daemon.cfg.admin_socket, "kick", user="nobody", reason="x" * rnd.randint(0, 300))
        await good[0].chat(f"m{i}")
    for g in good:
        seen = [(await g.recv_type("chat"))["text"] for _ in range(30)]
        assert seen == [f"m{i}" for i in range(30)]
        assert g.ws.close_code is None
        await g.close()
