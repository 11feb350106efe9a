"""The failure-mode matrix of docs/failure-modes.md: each dependency fault × each operation.

One test per dependency state (PostgreSQL down, PostgreSQL slow, Valkey down, Valkey
slow). Each starts a daemon on a PostgreSQL and a Valkey of the module's own (loopback
TCP, :mod:`tests.chaos.services`) reached through a :class:`~tests.faultproxy.FaultProxy`,
fills the history so that welcomes and history pages need PostgreSQL, applies the fault
for real (the server stopped, or 2 s added per round trip by the proxy), runs every
operation and records what a user gets. The recorded row must equal the documented row.
Then the dependency comes back, a second daemon takes over what the first left in
Valkey, and the test checks that nothing was lost: every message a sender saw echoed is
in PostgreSQL exactly once, and every connection has exactly one session row.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chathub.admin.client import AdminClient, call
from chathub.keys import Keys
from chathub.server import Daemon
from tests.chaos.services import TcpPostgres, TcpValkey
from tests.conftest import make_config
from tests.faultproxy import FaultProxy
from tests.helpers import Chatter, wait_for

#: seconds added per round trip for "slow" (the proxy holds each request this long)
SLOW = 2.0
#: longest an operation may take before its outcome is "hang"
OP_TIMEOUT = 8.0
#: the daemon's drain timeout in these tests; shutdown must end within it and a margin
DRAIN = 3.0
#: messages written before the fault; more than the stream keeps, so PostgreSQL holds the oldest
SEEDED = 30
#: the stream's length (cache.history_size) and a welcome's history (history_on_join)
KEEP = 20

#: What a user gets, per fault and operation. Each string is what :func:`_run_matrix`
#: records; docs/failure-modes.md explains each cell.
EXPECTED: dict[str, dict[str, str]] = {
    "pg_down": {
        "connect": "welcome", "since": "welcome recovered", "chat": "echo",
        "whisper": "delivered", "users": "users", "history": "unavailable retry_after_ms",
        "kick": "kicked 4001", "status": "exit 0 pg down valkey",
        "dash": "stats pushed pg down valkey", "healthz": "503 postgres", "metrics": "200",
        "shutdown": "shutdown 1001",
    },
    "pg_slow": {
        "connect": "welcome", "since": "welcome recovered", "chat": "echo",
        "whisper": "delivered", "users": "users", "history": "unavailable retry_after_ms",
        "kick": "kicked 4001", "status": "exit 0 pg valkey", "dash": "stats pushed pg valkey",
        "healthz": "200 slow postgres", "metrics": "200", "shutdown": "shutdown 1001",
    },
    "valkey_down": {
        "connect": "welcome empty", "since": "welcome not recovered empty",
        "chat": "error unavailable", "whisper": "error unavailable", "users": "users",
        "history": "unavailable retry_after_ms", "kick": "kicked 4001",
        "status": "exit 0 pg valkey down", "dash": "stats pushed pg valkey down",
        "healthz": "503 valkey", "metrics": "200", "shutdown": "shutdown 1001",
    },
}
#: to chathub, Valkey 2 s slower than valkey.timeout allows is Valkey down (after one timeout)
EXPECTED["valkey_slow"] = dict(EXPECTED["valkey_down"])


@dataclass
class Services:
    """The module's private servers."""

    pg: TcpPostgres
    vk: TcpValkey


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    folder = Path(tempfile.mkdtemp(prefix="chf"))
    pg, vk = TcpPostgres(folder), TcpValkey(folder / "vk")
    try:
        pg.start()
        vk.start()
        yield Services(pg, vk)
    finally:
        vk.stop()
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class World:
    """One test's database, key prefix and proxies in front of the private servers."""

    svc: Services
    db: str
    pg_proxy: FaultProxy
    vk_proxy: FaultProxy
    folder: Path
    prefix: str
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def db_url(self) -> str:
        return self.svc.pg.url_for(self.db, self.pg_proxy.port)

    @property
    def direct_db_url(self) -> str:
        return self.svc.pg.url_for(self.db)

    async def daemon(self, history_ttl: float = 3600.0) -> Daemon:
        n = len(self.daemons)
        cfg = make_config(self.db_url, self.svc.vk.url_via(self.vk_proxy.port), self.prefix,
                          self.folder / f"d{n}",
                          cache={"flush_interval": 0.1, "history_size": KEEP,
                                 "history_on_join": KEEP},
                          channels={"history_ttl": history_ttl},
                          hub={"node_id": f"{self.prefix}node{n}"},
                          server={"port": 0, "ping_interval": 5.0, "drain_timeout": DRAIN})
        d = Daemon(cfg)
        self.daemons.append(d)
        await d.start()
        return d


@pytest.fixture
async def world(services: Services, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    name = f"fm_{request.node.callspec.id if hasattr(request.node, 'callspec') else 'x'}_{time.time_ns()}"
    conn = await asyncpg.connect(services.pg.url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    pg_proxy = await FaultProxy("127.0.0.1", services.pg.port).start()
    vk_proxy = await FaultProxy("127.0.0.1", services.vk.port).start()
    folder = Path(tempfile.mkdtemp(prefix="chw"))
    w = World(services, name, pg_proxy, vk_proxy, folder, f"{name}:")
    try:
        yield w
    finally:
        pg_proxy.set_latency(0, 0)
        vk_proxy.set_latency(0, 0)
        await _restore_servers(services)
        for d in reversed(w.daemons):
            await d.stop()
        await pg_proxy.close()
        await vk_proxy.close()
        conn = await asyncpg.connect(services.pg.url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
        shutil.rmtree(folder, ignore_errors=True)


async def _restore_servers(svc: Services) -> None:
    if not await asyncio.to_thread(svc.pg.is_running):
        await asyncio.to_thread(svc.pg.start)
    if not await asyncio.to_thread(svc.vk.ping):
        await asyncio.to_thread(svc.vk.start)


# -- the faults --------------------------------------------------------------------------


async def apply_fault(w: World, fault: str) -> None:
    if fault == "pg_down":
        await asyncio.to_thread(w.svc.pg.stop)
    elif fault == "pg_slow":
        w.pg_proxy.set_latency(up=SLOW)
    elif fault == "valkey_down":
        await asyncio.to_thread(w.svc.vk.stop)
    elif fault == "valkey_slow":
        w.vk_proxy.set_latency(up=SLOW)


async def heal(w: World) -> None:
    w.pg_proxy.set_latency(0, 0)
    w.vk_proxy.set_latency(0, 0)
    await _restore_servers(w.svc)


# -- probes ------------------------------------------------------------------------------


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def reply_to(c: Chatter, ref: str) -> dict[str, Any]:
    """The next frame that answers ``ref`` (an echo, an error, a users or history page)."""
    while True:
        f = await c.recv(OP_TIMEOUT)
        if f.get("ref") == ref:
            return f


def _flags(stats: dict[str, Any]) -> str:
    """The dependency flags of a stats snapshot, as a cell shows them."""
    return (" pg" + ("" if stats["postgres_up"] else " down")
            + " valkey" + ("" if stats["valkey_up"] else " down"))


def welcome_outcome(c: Chatter) -> str:
    w = c.welcome
    out = "welcome"
    if "recovered" in w:
        out += " recovered" if w["recovered"] else " not recovered"
    if w.get("history_partial"):
        out += " partial"
    if not w["history"]:
        out += " empty"
    return out


async def seed(port: int) -> tuple[str, list[str]]:
    """Chats and whispers that overflow the stream into PostgreSQL; returns (last id, ids)."""
    ids = []
    async with await Chatter.connect(port, "seeder") as s:
        for i in range(SEEDED):
            if i % 6 == 5:
                await s.whisper("seeder", f"note {i}", ref=f"s{i}")
            else:
                await s.chat(f"seed {i}", ref=f"s{i}")
            ids.append((await reply_to(s, f"s{i}"))["id"])
    return ids[-1], ids


async def pg_rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


# -- the matrix ------------------------------------------------------------------------


@dataclass
class Row:
    outcome: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: message ids a sender saw echoed, and session ids of every welcomed connection
    echoed: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)


async def _op(row: Row, name: str, coro: Any) -> None:
    started = time.monotonic()
    try:
        row.outcome[name] = await asyncio.wait_for(coro, OP_TIMEOUT)
    except TimeoutError:
        row.outcome[name] = "hang"
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        row.outcome[name] = f"close {rcvd.code if rcvd else 1006}"
    except InvalidStatus as exc:
        row.outcome[name] = f"http {exc.response.status_code}"
    row.seconds[name] = round(time.monotonic() - started, 2)


async def _run_matrix(w: World, fault: str, daemon: Daemon, last_id: str,
                      alice: Chatter, bob: Chatter, victim: Chatter) -> Row:
    row = Row()
    port, sock = daemon.port, daemon.cfg.admin_socket

    async def connect() -> str:
        c = await Chatter.connect(port, "newcomer")
        row.sessions.append(c.welcome["session"])
        out = welcome_outcome(c)
        await c.close()
        return out

    async def since() -> str:
        c = await Chatter.connect(port, "returning", since=last_id)
        row.sessions.append(c.welcome["session"])
        out = welcome_outcome(c)
        await c.close()
        return out

    async def chat() -> str:
        await alice.chat("during the fault", ref="c1")
        f = await reply_to(alice, "c1")
        if f["type"] == "error":
            return f"error {f['code']}"
        row.echoed.append(f["id"])
        return "echo"

    async def whisper() -> str:
        await alice.whisper("bob", "psst", ref="w1")
        f = await reply_to(alice, "w1")
        if f["type"] == "error":
            return f"error {f['code']}"
        row.echoed.append(f["id"])
        got = await bob.recv_type("whisper", timeout=OP_TIMEOUT)
        return "delivered" if got["id"] == f["id"] else "wrong whisper"

    async def users() -> str:
        await alice.send(type="users", ref="u1")
        f = await reply_to(alice, "u1")
        return f["type"] if f["type"] != "error" else f"error {f['code']}"

    async def history() -> str:
        # older than the oldest message the stream holds: only PostgreSQL has that page
        await alice.send(type="history", before=alice.welcome["history"][0]["id"], limit=10,
                         ref="h1")
        f = await reply_to(alice, "h1")
        if f["type"] == "error":
            return f"{f['code']}" + (" retry_after_ms" if f.get("retry_after_ms") else "")
        return "history" if f["messages"] else "history empty"

    async def kick() -> str:
        reply = await call(sock, "kick", user="victim", reason="matrix")
        await victim.recv_type("kicked")
        with pytest.raises(ConnectionClosed) as closed:
            await victim.recv()
        rcvd = closed.value.rcvd
        assert reply["closed"] == 1
        return f"kicked {rcvd.code if rcvd else 1006}"

    async def status() -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chathub.cli", "status", "--socket", str(sock), "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        stats = json.loads(out) if proc.returncode == 0 else {}
        assert proc.returncode != 0 or stats["node"] == daemon.node_id, out
        return f"exit {proc.returncode}" + _flags(stats)

    async def dash() -> str:
        async with AdminClient(sock) as admin:
            events = admin.subscribe()
            first = await anext(events)
            assert first["event"] == "stats"
            while (pushed := await anext(events))["event"] != "stats":
                pass  # connect/disconnect events may come first
        return "stats pushed" + _flags(pushed)

    async def healthz() -> str:
        code, body = await http_get(port, "/healthz")
        down, slow = json.loads(body).get("down", []), json.loads(body).get("slow", [])
        return (f"{code}" + (f" {' '.join(down)}" if down else "")
                + (f" slow {' '.join(slow)}" if slow else ""))

    async def metrics() -> str:
        code, body = await http_get(port, "/metrics")
        assert code != 200 or b"chathub_connections" in body
        return f"{code}"

    for name, fn in (("connect", connect), ("since", since), ("chat", chat),
                     ("whisper", whisper), ("users", users), ("history", history),
                     ("kick", kick), ("status", status), ("dash", dash),
                     ("healthz", healthz), ("metrics", metrics)):
        await _op(row, name, fn())

    async def shutdown() -> str:
        stop = asyncio.create_task(daemon.stop())
        await alice.recv_type("shutdown", timeout=OP_TIMEOUT)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await alice.recv(OP_TIMEOUT)
        await stop
        rcvd = closed.value.rcvd
        return f"shutdown {rcvd.code if rcvd else 1006}"

    await _op(row, "shutdown", shutdown())
    return row


@pytest.mark.parametrize("fault", list(EXPECTED))
async def test_failure_mode_row(world: World, fault: str) -> None:
    """Every operation under one dependency fault gives its documented outcome; nothing is lost."""
    daemon = await world.daemon()
    _, seeded = await seed(daemon.port)
    # the oldest seeded messages are in PostgreSQL only once the flusher trimmed the stream
    await wait_for(_flushed(world, len(seeded)), timeout=15, what="seed in PostgreSQL")
    alice = await Chatter.connect(daemon.port, "alice")
    bob = await Chatter.connect(daemon.port, "bob")
    victim = await Chatter.connect(daemon.port, "victim")
    assert len(alice.welcome["history"]) > 0
    await apply_fault(world, fault)
    # ?since= an id a few messages back: a returning client has something to recover
    row = await _run_matrix(world, fault, daemon, seeded[-5], alice, bob, victim)
    row.sessions += [c.welcome["session"] for c in (alice, bob, victim)]
    print(f"\n{fault}: {row.outcome}\n{fault} seconds: {row.seconds}")

    # the dependency comes back; a second daemon flushes what the first left in Valkey
    await heal(world)
    await world.daemon()
    want = set(seeded) | set(row.echoed)

    async def all_there() -> bool:
        msgs = await pg_rows(world.direct_db_url, "SELECT id FROM messages")
        sess = await pg_rows(world.direct_db_url, "SELECT id FROM sessions")
        return want <= {r["id"] for r in msgs} and set(row.sessions) <= {r["id"] for r in sess}

    await wait_for(all_there, timeout=20, what="messages and sessions in PostgreSQL")
    dup = await pg_rows(world.direct_db_url,
                        "SELECT id FROM sessions GROUP BY id HAVING count(*) > 1")
    assert not dup
    mismatched = {op: (row.outcome.get(op), want_) for op, want_ in EXPECTED[fault].items()
                  if row.outcome.get(op) != want_}
    assert not mismatched, f"{fault}: (got, documented) per operation: {mismatched}"
    assert row.seconds["shutdown"] < DRAIN + 3


def _flushed(w: World, n: int) -> Any:
    async def check() -> bool:
        rows = await pg_rows(w.direct_db_url, "SELECT count(*) AS n FROM messages")
        return rows[0]["n"] >= n
    return check


async def test_welcome_while_postgres_is_down_carries_what_valkey_holds(world: World) -> None:
    """Issue's first case: the stream holds fewer messages than a welcome shows and PostgreSQL
    is stopped. A new client gets a welcome with what Valkey holds and ``history_partial``,
    never a close; once PostgreSQL is back, welcomes are complete again."""
    # a channel whose Valkey history expired (history_ttl) while PostgreSQL keeps it all
    daemon = await world.daemon(history_ttl=1.0)
    await seed(daemon.port)
    await wait_for(_flushed(world, SEEDED), timeout=15, what="seed in PostgreSQL")
    first = await Chatter.connect(daemon.port, "first")  # a welcome page is fetched below the stream
    stream = Keys(daemon.kv.prefix).stream("general")

    async def expired() -> bool:
        return not await daemon.kv.client.exists(stream)

    await wait_for(expired, timeout=15, what="the channel's Valkey history expired")
    async with await Chatter.connect(daemon.port, "again") as again:
        for i in range(2):
            await again.chat(f"after {i}", ref=f"a{i}")
            await reply_to(again, f"a{i}")
    await asyncio.to_thread(world.svc.pg.stop)
    late = await Chatter.connect(daemon.port, "late")
    assert late.welcome.get("history_partial") is True
    assert 0 < len(late.welcome["history"]) < KEEP
    ids = [tuple(map(int, m["id"].split("-"))) for m in late.welcome["history"]]
    assert ids == sorted(ids)
    await late.chat("still here", ref="x")
    assert (await reply_to(late, "x"))["type"] == "chat"
    await asyncio.to_thread(world.svc.pg.start)

    async def complete() -> bool:
        async with await Chatter.connect(daemon.port, "later") as c:
            return not c.welcome.get("history_partial") and len(c.welcome["history"]) == KEEP

    await wait_for(complete, timeout=15, what="a complete welcome after PostgreSQL came back")
    await first.close()
    await late.close()


async def test_dashboard_shows_each_dependency_going_and_coming_back(world: World) -> None:
    """`chathub dash` (Textual's pilot) on a daemon whose PostgreSQL, then Valkey, stop and
    start again: the stats panel follows each change and the dashboard stays attached."""
    from chathub.tui.widgets import StatsPanel

    from tests.test_tui import SIZE, connected, dash, parts

    daemon = await world.daemon()
    app = dash(daemon.cfg.admin_socket)
    async with app.run_test(size=SIZE):
        await connected(app, daemon.node_id)
        panel = parts(app)[0].query_one(StatsPanel)
        async with await Chatter.connect(daemon.port, "alice") as alice:
            await asyncio.to_thread(world.svc.pg.stop)
            await alice.chat("to be written later", ref="a")  # the flusher's write fails
            assert (await reply_to(alice, "a"))["type"] == "chat"
            await wait_for(lambda: panel.value("postgres") == "✕ down", what="postgres down shown")
            await asyncio.to_thread(world.svc.vk.stop)
            await alice.chat("refused", ref="b")
            assert (await reply_to(alice, "b"))["code"] == "unavailable"
            await wait_for(lambda: panel.value("valkey") == "✕ down", what="valkey down shown")
            await heal(world)
            await wait_for(lambda: panel.value("valkey") == "● up" and panel.value("postgres") == "● up",
                           timeout=20, what="both shown up again")
        await connected(app, daemon.node_id)


@pytest.mark.parametrize("hubs", [1, 2], ids=["alone", "clustered"])
async def test_a_stamp_whose_answer_is_lost_is_resent_once(world: World, hubs: int) -> None:
    """Valkey stores a message but its answer comes after ``valkey.timeout`` (the reply
    direction of the link is slow). The sender is told the outcome is unknown, not that
    nothing was sent; its resend with the same ref gets the first id; the message is
    stored once and every other client gets it once (clustered: when its echo comes
    back on the bus, though the stamp's answer was lost)."""
    daemons = [await world.daemon() for _ in range(hubs)]
    alice = await Chatter.connect(daemons[0].port, "alice")
    bob = await Chatter.connect(daemons[0].port, "bob")
    carol = await Chatter.connect(daemons[-1].port, "carol")
    world.vk_proxy.set_latency(down=SLOW + 0.5)  # Valkey runs it; its reply is late
    await alice.chat("maybe", ref="m1")
    refused = await reply_to(alice, "m1")
    assert (refused["type"], refused["code"]) == ("error", "unavailable")
    assert "may have been sent" in refused["message"] and refused["retry_after_ms"] > 0
    world.vk_proxy.set_latency(0, 0)
    await wait_for(lambda: all(d.kv.up for d in daemons), timeout=15, what="Valkey up again")
    await alice.chat("maybe", ref="m1")
    echo = await reply_to(alice, "m1")
    assert (echo["type"], echo["text"]) == ("chat", "maybe")
    await alice.chat("after", ref="m2")
    await reply_to(alice, "m2")
    for c in (bob, carol):
        texts = []
        while not texts or texts[-1] != "after":
            try:
                texts.append((await c.recv_type("chat", timeout=OP_TIMEOUT))["text"])
            except TimeoutError:
                raise AssertionError(f"{c.welcome['user']} got only {texts}") from None
        assert texts == ["maybe", "after"], c.welcome["user"]
    await wait_for(_flushed(world, 2), timeout=15, what="both in PostgreSQL")
    conn = await asyncpg.connect(world.direct_db_url)
    try:
        rows = await conn.fetch("SELECT id FROM messages WHERE text = 'maybe'")
    finally:
        await conn.close()
    assert [r["id"] for r in rows] == [echo["id"]]
    for c in (alice, bob, carol):
        await c.close()


async def test_health_sees_postgres_go_and_come_back_with_nothing_to_write(world: World) -> None:
    """A quiet hub (nothing to flush) still reports PostgreSQL down within seconds of it
    stopping, and slow while its round trips are slow: the probe, not a failed write."""
    daemon = await world.daemon()

    async def health() -> str:
        code, body = await http_get(daemon.port, "/healthz")
        b = json.loads(body)
        return f"{code} {b.get('down', [])} {b.get('slow', [])}"

    async def health_is(want: str) -> bool:
        return await health() == want

    assert await health() == "200 [] []"
    await asyncio.to_thread(world.svc.pg.stop)
    await wait_for(partial(health_is, "503 ['postgres'] []"), timeout=8, what="503 postgres")
    await asyncio.to_thread(world.svc.pg.start)
    await wait_for(partial(health_is, "200 [] []"), timeout=15, what="200 once back")
    world.pg_proxy.set_latency(up=1.0)
    await wait_for(partial(health_is, "200 [] ['postgres']"), timeout=15, what="slow postgres")
    world.pg_proxy.set_latency(0, 0)
    await wait_for(partial(health_is, "200 [] []"), timeout=15, what="no longer slow")
