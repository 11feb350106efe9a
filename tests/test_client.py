"""chathub.client against real daemons: round trips, typed errors, history, reconnects,
kicks, and closing while a broadcast goes on. Real sockets, real services."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest

from chathub.client import (
    Backoff,
    BadRequest,
    Blocked,
    Chat,
    ChatClient,
    ConnectionLost,
    Forbidden,
    Gap,
    Kicked,
    NotSubscribed,
    Overflow,
    RateLimited,
    Refused,
    Subscribed,
    Terminated,
    TooLong,
    UnknownUser,
    Welcome,
    Whisper,
)
from chathub.client.tracker import id_key
from tests.helpers import Chatter

#: seconds a test waits for an expected event before failing
EVENT_TIMEOUT = 10.0


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


async def next_of(client: ChatClient, *types: type, timeout: float = EVENT_TIMEOUT) -> Any:
    """The next event of one of ``types``, skipping others."""
    return await client.next_event(*types, timeout=timeout)


async def test_next_event_skips_other_types_times_out_and_ends_with_terminated(daemon):
    """next_event(Chat) passes over the welcome; TimeoutError when nothing comes in time;
    Terminated (with the terminal event) once the client stopped before one came."""
    async with ChatClient(url(daemon.port), user="alice", reconnect=False) as alice:
        sent = await alice.chat("one")
        assert (await alice.next_event(Chat, timeout=EVENT_TIMEOUT)).id == sent.id
        with pytest.raises(TimeoutError):  # the wait itself is what is tested
            await alice.next_event(Chat, timeout=0.2)
        closed = daemon.kick("alice", "bye")
        assert (await closed if inspect.isawaitable(closed) else closed) == 1
        with pytest.raises(Terminated) as e:
            await alice.next_event(Chat, timeout=EVENT_TIMEOUT)
        assert isinstance(e.value.event, Kicked) and e.value.event.reason == "bye"


async def test_chat_round_trip_returns_the_stamped_message_matched_by_ref(daemon):
    """chat() returns alice's message with its id; bob receives the same id without a ref."""
    async with ChatClient(url(daemon.port), user="alice") as alice, \
            ChatClient(url(daemon.port), user="bob") as bob:
        welcome = await next_of(alice, Welcome)
        assert welcome.user == "alice" and not welcome.reconnected
        sent = [await alice.chat(f"hello {i}") for i in range(3)]
        assert [m.text for m in sent] == ["hello 0", "hello 1", "hello 2"]
        assert all(m.from_ == "alice" and m.ref and m.ts > 0 for m in sent)
        assert len({m.ref for m in sent}) == 3
        got = [await next_of(bob, Chat) for _ in range(3)]
        assert [m.id for m in got] == [m.id for m in sent] and all(m.ref is None for m in got)

        w = await bob.whisper("alice", "psst")
        assert isinstance(w, Whisper) and (w.from_, w.to) == ("bob", "alice")
        assert (await next_of(alice, Whisper)).id == w.id
        assert await alice.users() == ["alice", "bob"]
        assert alice.since() == w.id  # whispers count for the default channel's since


async def test_server_errors_are_raised_as_typed_exceptions(daemon_factory):
    """too_long, unknown_user, blocked, bad_request and rate_limited each have their class."""
    d = await daemon_factory(server={"max_text_chars": 20},
                             ratelimit={"chat_rate": 0.5, "chat_burst": 2},
                             moderation={"blocklist": ["spoilers"]})
    async with ChatClient(url(d.port), user="alice") as c:
        with pytest.raises(TooLong) as e:
            await c.chat("x" * 21)
        assert "20" in e.value.message
        with pytest.raises(UnknownUser):
            await c.whisper("nobody", "hi")
        with pytest.raises(Blocked):
            await c.chat("no spoilers")
        with pytest.raises(BadRequest):
            await c.chat("   ")
        await c.chat("one")
        await c.chat("two")
        with pytest.raises(RateLimited) as e:
            await c.chat("three")  # over the burst of 2
        assert 0 < e.value.retry_after <= 2.0
        # the connection stays usable after errors
        assert await c.users() == ["alice"]


async def test_channels_subscribe_chat_history_and_unsubscribe(daemon):
    """Protocol v2 on a real daemon: a channel's messages reach its subscribers only."""
    async with ChatClient(url(daemon.port), user="alice") as alice, \
            ChatClient(url(daemon.port), user="bob") as bob:
        welcome = await next_of(alice, Welcome)
        assert welcome.protocol >= 2 and welcome.channels[0] == "general"
        sub = await alice.subscribe("ops")
        assert sub.channel == "ops" and sub.users == ["alice"] and alice.channels == ["ops"]
        with pytest.raises(NotSubscribed):
            await bob.chat("let me in", channel="ops")
        await bob.subscribe("ops")
        sent = await alice.chat("deploying", channel="ops")
        assert sent.channel == "ops"
        got = await next_of(bob, Chat)
        assert (got.id, got.channel, got.text) == (sent.id, "ops", "deploying")
        assert alice.since("ops") == sent.id and alice.since() != sent.id
        assert await bob.users(channel="ops") == ["alice", "bob"]
        assert [m.id async for m in bob.history(channel="ops")] == [sent.id]
        with pytest.raises(Forbidden):
            await alice.subscribe("$secret")  # private channels need a token that names them
        await alice.unsubscribe("ops")
        assert alice.channels == []
        with pytest.raises(NotSubscribed):
            await alice.unsubscribe("ops")
        # the default channel needs no channel field and is where v1 clients talk
        assert (await alice.chat("hello")).channel == "general"


async def test_history_pages_back_to_the_first_message(daemon_factory):
    """history() walks back page by page, newest first, and ends at the first message."""
    d = await daemon_factory(cache={"history_on_join": 5})
    async with ChatClient(url(d.port), user="alice") as c:
        sent = [(await c.chat(f"msg {i:03d}")).id for i in range(120)]
        seen = [m.id async for m in c.history(limit=50)]
        assert seen == sent[::-1]
        older = [m.text async for m in c.history(before=sent[10], limit=3)]
        assert older == [f"msg {i:03d}" for i in range(9, -1, -1)]


async def test_a_wrong_name_is_refused_with_its_http_status(daemon):
    with pytest.raises(Refused) as e:
        async with ChatClient(url(daemon.port), user="two words"):
            pass
    assert e.value.status == 400


async def test_a_banned_user_is_refused_with_403_and_the_ban(daemon):
    """docs/client.md: connecting while banned raises ``Refused`` with status 403 and the
    ban's end and reason in its text."""
    from chathub.admin.client import call

    await call(daemon.cfg.admin_socket, "ban", user="eve", seconds=600, reason="spam links")
    with pytest.raises(Refused) as e:
        async with ChatClient(url(daemon.port), user="eve"):
            pass
    assert e.value.status == 403
    assert "you are banned until" in str(e.value) and "spam links" in str(e.value)


async def test_kicked_yields_a_terminal_event_and_does_not_reconnect(daemon):
    c = ChatClient(url(daemon.port), user="alice", backoff=Backoff(initial=0.05, cap=0.05))
    async with c:
        closed = daemon.kick("alice", "flooding")
        assert (await closed if inspect.isawaitable(closed) else closed) == 1
        kicked = await next_of(c, Kicked)
        assert kicked.reason == "flooding"
        # nothing follows a terminal event: the iteration ends, the loop has stopped
        assert [ev async for ev in c] == []
        assert not c.connected
        with pytest.raises(Terminated) as e:
            await c.chat("back?")
        assert e.value.event == kicked
    async with await Chatter.connect(daemon.port, "bob") as bob:
        assert bob.welcome["users"] == ["bob"]


async def test_reconnects_after_the_daemon_is_killed_without_duplicates_or_gaps(spawn):
    """SIGKILL, restart on the same port: the client resumes the default channel with
    ?since= and its channel "ops" with its own since; every message arrives once."""
    proc = await spawn()
    backoff = Backoff(initial=0.2, cap=0.5)

    async def bob_says(*lines: tuple[str | None, str]) -> list[str]:
        async with await Chatter.connect(proc.port, "bob") as bob:
            await bob.send(type="subscribe", channel="ops")
            await bob.recv_type("subscribed")
            ids = []
            for channel, text in lines:
                await bob.chat(text, **({"channel": channel} if channel else {}))
                ids.append((await bob.recv_type("chat"))["id"])
            return ids

    async with ChatClient(url(proc.port), user="alice", backoff=backoff) as alice:
        await alice.subscribe("ops")
        ids = await bob_says((None, "before 0"), ("ops", "ops before"), (None, "before 1"))
        got = [(await next_of(alice, Chat)).id for _ in range(3)]
        since = {None: alice.since(), "ops": alice.since("ops")}
        assert since == {None: ids[2], "ops": ids[1]}
        proc.kill()
        lost = await next_of(alice, ConnectionLost)
        assert lost.code is None  # no close frame: the daemon vanished
        await proc.start()
        ids += await bob_says(("ops", "ops after"), (None, "after 0"), (None, "after 1"))
        # the rest arrive recovered (welcome, subscribed), live, or both: each once
        events: list[Any] = []
        while len(got) < len(ids):
            ev = await next_of(alice, Welcome, Subscribed, Chat, Gap)
            events.append(ev)
            if isinstance(ev, Welcome):
                assert ev.reconnected and ev.recovered is True
                got += [m.id for m in ev.history]
            elif isinstance(ev, Subscribed):
                assert ev.channel == "ops" and ev.recovered is True
                got += [m.id for m in ev.history]
            elif isinstance(ev, Chat):
                got.append(ev.id)
        assert not [e for e in events if isinstance(e, Gap)]
        assert sorted(got, key=id_key) == sorted(ids, key=id_key) and len(set(got)) == len(got)
        assert (await alice.chat("back")).from_ == "alice"
        assert alice.channels == ["ops"]


async def test_a_gap_the_server_cannot_recover_is_reported(daemon):
    """A since newer than anything the server issued: recovered false, a typed Gap."""
    async with ChatClient(url(daemon.port), user="alice", since="99999999999999-0") as c:
        gap = await next_of(c, Gap)
        assert gap == Gap(channel=None, since="99999999999999-0")
        assert (await next_of(c, Welcome)).recovered is False


async def test_fifty_clients_close_at_once_while_a_broadcast_goes_on(spawn):
    """Clients that stop reading events still close in well under a second each.

    With a plain websockets client the close frame's answer sits behind a full receive
    queue and each close waits its whole close timeout; this client keeps reading.
    """
    proc = await spawn()
    # close_timeout 10 s, as websockets' default: the bound below must come from the
    # closing handshake completing, not from giving up on it
    clients = [ChatClient(url(proc.port), user=f"u{i}", max_events=50, close_timeout=10.0)
               for i in range(50)]
    for c in clients:
        await c.connect()
    stop = asyncio.Event()

    async def broadcast() -> int:
        n = 0
        async with await Chatter.connect(proc.port, "loud") as loud:
            while not stop.is_set():  # bounded by the test: stop is set below
                await loud.chat(f"news {n} " + "x" * 200)
                n += 1
                if n % 50 == 0:
                    await asyncio.sleep(0)  # let the clients' readers run
        return n

    sender = asyncio.create_task(broadcast())
    try:
        # every client has fallen behind: it read more than it could hold
        deadline = time.monotonic() + 30
        while min(c.dropped for c in clients) == 0:
            assert time.monotonic() < deadline, "the broadcast never filled the clients' buffers"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        await asyncio.gather(*(c.close() for c in clients))
        took = time.monotonic() - started
    finally:
        stop.set()
        sent = await sender
    assert sent > 50
    assert took < 3.0, f"closing 50 clients took {took:.2f} s"
    # what the application had not read is still there, with the overflow reported
    events = [ev async for ev in clients[0]]
    assert any(isinstance(ev, Overflow) and ev.dropped > 0 for ev in events)
