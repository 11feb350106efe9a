"""Several hubs sharing one Valkey and one PostgreSQL behave as one chat.

Behaviour is tested through chathub.client.ChatClient. Raw frames (tests.helpers.Chatter)
stay where they are the point: "delivered once" across hubs (the client drops a repeated
id, which would hide a duplicate the server sent), senders that pipeline chats without
waiting for their echo (per-sender order under load), a kick's close code on the wire,
and the shared rate budget checked frame by frame (tests.helpers.assert_shared_budget,
shared with test_cache).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict

import pytest

from chathub import closecodes
from chathub.admin.client import call
from chathub.client import Chat, Closed, Join, Leave, Unavailable, UnknownUser, Whisper
from tests.conftest import needs_embedded_valkey
from tests.helpers import (
    Chatter,
    assert_shared_budget,
    chat_client,
    connected,
    event,
    wait_for,
)


@pytest.fixture
async def trio(daemon_factory):
    """Three in-process hubs with distinct node ids on three ports."""
    return [await daemon_factory(hub={"node_id": f"node{i}", "node_ttl": 3.0}) for i in range(3)]


async def _eq(aw, value) -> bool:
    return (await aw) == value


async def test_broadcast_reaches_every_hub_once_with_one_id(trio):
    """A chat sent to one hub reaches every connection on every hub, once, same id."""
    clients = [await Chatter.connect(d.port, f"u{i}{j}") for i, d in enumerate(trio) for j in range(3)]
    await clients[4].chat("across")
    got = [await c.recv_type("chat") for c in clients]
    assert {g["id"] for g in got} == {got[0]["id"]} and all(g["from"] == "u11" for g in got)
    await clients[0].chat("marker")
    for c in clients:
        assert (await c.recv_type("chat"))["text"] == "marker"  # nothing twice in between
    await asyncio.gather(*(c.close() for c in clients))


async def test_whisper_reaches_recipient_tabs_on_other_hubs(trio):
    """A whisper reaches each connection of the recipient wherever it is, and nobody else."""
    a = await connected(trio[0].port, "alice")
    b1 = await connected(trio[1].port, "bob")
    b2 = await connected(trio[2].port, "bob")
    c = await connected(trio[2].port, "carol")
    await a.whisper("bob", "psst")
    for x in (a, b1, b2):
        w = await event(x, Whisper)
        assert (w.from_, w.to, w.text) == ("alice", "bob", "psst")
    await a.chat("marker")
    assert isinstance(await event(c, Chat, Whisper), Chat)
    with pytest.raises(UnknownUser):
        await a.whisper("nobody", "x")
    await asyncio.gather(*(x.close() for x in (a, b1, b2, c)))


async def test_users_and_welcome_list_everyone_online(trio):
    """users and welcome.users list users of every hub."""
    a = await connected(trio[0].port, "amy")
    b = await connected(trio[1].port, "ben")
    c = await connected(trio[2].port, "cat")
    assert c.welcome.users == ["amy", "ben", "cat"]
    assert await a.users() == ["amy", "ben", "cat"]
    await asyncio.gather(*(x.close() for x in (a, b, c)))


async def test_join_and_leave_once_for_the_cluster(trio):
    """join on a user's first connection anywhere, leave on the last anywhere, once each."""
    w = await connected(trio[0].port, "watcher")
    t1 = await connected(trio[1].port, "tabby")
    assert (await event(w, Join)).user == "tabby"
    t2 = await connected(trio[2].port, "tabby")
    await t1.close()
    await t2.chat("still here")
    assert isinstance(await event(w, Join, Leave, Chat), Chat)
    await t2.close()
    leave = await event(w, Join, Leave, Chat)
    assert isinstance(leave, Leave) and leave.user == "tabby"
    await w.chat("marker")
    assert isinstance(await event(w, Join, Leave, Chat), Chat)
    await w.close()


async def test_per_sender_order_under_load(trio):
    """5 senders x 200 messages over 3 hubs: every receiver sees each sequence in order, once."""
    senders = [await Chatter.connect(trio[i % 3].port, f"s{i}") for i in range(5)]
    receivers = [await Chatter.connect(d.port, f"r{i}") for i, d in enumerate(trio)]
    n = 200

    async def send(i: int, s: Chatter) -> None:
        for k in range(n):
            await s.chat(f"{i}:{k}")

    async def receive(r: Chatter) -> dict[str, list[int]]:
        seen: dict[str, list[int]] = defaultdict(list)
        while sum(len(v) for v in seen.values()) < 5 * n:
            f = await r.recv_type("chat", timeout=30)
            sender, k = f["text"].split(":")
            seen[sender].append(int(k))
        return seen

    results = await asyncio.gather(*(send(i, s) for i, s in enumerate(senders)),
                                   *(receive(r) for r in receivers))
    for seen in results[5:]:
        assert set(seen) == {str(i) for i in range(5)}
        for seq in seen.values():
            assert seq == list(range(n))
    await asyncio.gather(*(c.close() for c in senders + receivers))


async def test_kick_from_another_hub_closes_everywhere(trio):
    """Kicking through one hub's admin socket closes the user's connections on every hub."""
    tabs = [await Chatter.connect(d.port, "rowdy") for d in trio[1:]] + \
           [await Chatter.connect(trio[1].port, "rowdy")]
    reply = await call(trio[0].cfg.admin_socket, "kick", user="rowdy", reason="cool off")
    assert reply["closed"] == 3
    for t in tabs:
        assert (await t.recv_type("kicked"))["reason"] == "cool off"
        await t.ws.wait_closed()
        assert t.ws.close_code == closecodes.KICKED


async def test_rate_limit_is_shared_across_hubs(daemon_factory):
    """One user's budget is the same on every hub."""
    d0 = await daemon_factory(hub={"node_id": "rl0"}, ratelimit={"chat_rate": 0.2, "chat_burst": 4})
    d1 = await daemon_factory(hub={"node_id": "rl1"}, ratelimit={"chat_rate": 0.2, "chat_burst": 4})
    a0 = await Chatter.connect(d0.port, "a")
    a1 = await Chatter.connect(d1.port, "a")
    await assert_shared_budget(a0, a1)
    await a0.close()
    await a1.close()


async def test_sigkill_of_one_hub_gives_leave_and_closes_sessions(spawn, daemon_factory, db):
    """A hub killed without goodbye: the others announce its users' leave within node_ttl."""
    survivor = await daemon_factory(hub={"node_id": "survivor", "node_ttl": 3.0})
    victim = await spawn(hub={"node_ttl": 3.0})
    w = await connected(survivor.port, "watcher")
    doomed = [await connected(victim.port, f"d{i}") for i in range(3)]
    both = await connected(victim.port, "both")
    both_here = await connected(survivor.port, "both")
    joined = {(await event(w, Join)).user for _ in range(4)}
    assert joined == {"d0", "d1", "d2", "both"}
    killed_at = time.monotonic()
    victim.kill()
    left = set()
    while len(left) < 3:
        f = await event(w, Leave, timeout=15)
        left.add(f.user)
        assert f.reason == "daemon crashed"
    assert left == {"d0", "d1", "d2"}  # "both" is still online on the survivor
    assert time.monotonic() - killed_at < 3.0 + 3.0  # node_ttl plus one watch period
    await wait_for(lambda: _eq(db.fetchval(
        "SELECT count(*) FROM sessions WHERE close_reason='daemon crashed'"), 4), what="sessions closed out")
    assert await w.users() == ["both", "watcher"]
    for c in (*doomed, both):  # the dropped connections end the clients (no reconnect)
        assert isinstance(await event(c, Closed), Closed)
    await w.close()
    await both_here.close()


@needs_embedded_valkey
async def test_valkey_restart_traffic_resumes(trio, valkey_service):
    """After Valkey restarts, hubs resubscribe and chat crosses hubs again."""
    a = await connected(trio[0].port, "a")
    b = await connected(trio[1].port, "b")
    await asyncio.to_thread(valkey_service.stop)
    await asyncio.to_thread(valkey_service.start)
    await wait_for(lambda: all(d.kv.up and d.node.bus.subscribed and d.node.bus.resubscribes for d in trio),
                   timeout=20, what="hubs reconnected and resubscribed")
    assert [d.node.bus.resubscribes for d in trio] == [1, 1, 1]  # one restart, one resubscription each
    got = None
    deadline = time.monotonic() + 10  # bounded: Valkey answers again within it
    while got is None and time.monotonic() < deadline:
        try:
            got = await a.chat("after restart")
        except Unavailable:
            pass
    assert got is not None
    assert (await event(b, Chat)).id == got.id
    assert await b.users() == ["a", "b"]
    await a.close()
    await b.close()


async def test_status_cluster_sums_nodes(trio):
    """The cluster command lists every node with its connection count."""
    cs = [await connected(trio[i].port, f"c{i}") for i in (0, 1, 1)]
    for d in trio:  # a heartbeat now rather than within node_ttl / 3
        await d.node.nodes.beat()
    assert await _nodes_report(trio[2], {"node0": 1, "node1": 2, "node2": 0})
    await asyncio.gather(*(c.close() for c in cs))


async def _nodes_report(d, expected: dict[str, int]) -> bool:
    reply = await call(d.cfg.admin_socket, "cluster")
    got = {n["node"]: n["connections"] for n in reply["nodes"]}
    return got == expected


async def test_workers_two_processes_share_a_port(spawn):
    """serve --workers 2: both workers take connections and chat crosses between them."""
    proc = await spawn(workers=2)
    clients = []
    nodes = set()
    deadline = time.monotonic() + 20
    while len(nodes) < 2 and time.monotonic() < deadline:
        c = await connected(proc.port, f"w{len(clients)}")
        clients.append(c)
        sock = proc.config.parent / proc.config.stem / "admin.sock"
        for s in (sock, sock.with_name("admin-1.sock")):
            try:
                st = await call(s, "stats")
            except Exception:
                continue
            if st["connections"]:
                nodes.add(st["node"])
    assert len(nodes) == 2, "both workers took connections"
    await clients[0].chat("between workers")
    for c in clients:
        assert (await event(c, Chat)).text == "between workers"
    await asyncio.gather(*(c.close() for c in clients))
    assert await proc.terminate() == 0


async def test_workers_parent_restarts_a_dead_worker_and_stops_all(spawn):
    """A worker killed with SIGKILL is restarted by the parent; SIGTERM stops everyone cleanly."""
    import signal

    proc = await spawn(workers=2)
    sock = proc.config.parent / proc.config.stem / "admin-1.sock"
    await wait_for(lambda: _answers(sock), timeout=20, what="worker 1 up")
    first = (await call(sock, "hello"))["pid"]
    os.kill(first, signal.SIGKILL)

    async def restarted() -> bool:
        try:
            return (await call(sock, "hello"))["pid"] != first
        except Exception:
            return False

    await wait_for(restarted, timeout=20, what="worker 1 restarted with a new pid")
    async with chat_client(proc.port, "after") as c:
        assert c.welcome is not None and c.welcome.user == "after"
    assert await proc.terminate() == 0
    assert not sock.exists()


async def _answers(sock) -> bool:
    try:
        await call(sock, "hello")
        return True
    except Exception:
        return False


async def test_messages_published_while_a_bus_is_down_are_delivered_once(trio):
    """A hub whose subscription drops fills the gap from the stream: nothing missed, nothing twice."""
    a = await Chatter.connect(trio[0].port, "sender")
    b = await Chatter.connect(trio[1].port, "listener")
    # Drop every hub's subscription; none can resubscribe for RESUBSCRIBE_INTERVAL.
    await trio[0].kv.client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    for i in range(5):
        await a.chat(f"gap {i}")
    for i in range(5):
        assert (await a.recv_type("chat"))["text"] == f"gap {i}"
    await wait_for(lambda: all(d.node.bus.subscribed and d.node.bus.resubscribes for d in trio),
                   what="hubs resubscribed")
    assert [d.node.bus.resubscribes for d in trio] == [1, 1, 1]
    await a.chat("after")
    got = [(await b.recv_type("chat"))["text"] for _ in range(6)]
    assert got == [f"gap {i}" for i in range(5)] + ["after"]
    await b.send(type="users")
    assert (await b.recv_type("users", "chat"))["type"] == "users"  # no stray duplicate before it
    await a.close()
    await b.close()
