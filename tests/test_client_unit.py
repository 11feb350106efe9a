"""chathub.client's sans-I/O parts: frames to events, error codes to classes, the
per-channel tracker, the bounded event buffer and the backoff. No sockets."""

from __future__ import annotations

import asyncio
import random

import pytest

from chathub import protocol
from chathub.client import errors, events
from chathub.client.backoff import Backoff
from chathub.client.buffer import EventBuffer
from chathub.client.tracker import Tracker
from chathub.errors import ChathubError


def test_every_server_frame_of_protocol_v1_decodes_to_its_event():
    """Frames built by the server's own encoders come back as typed events."""
    msg = protocol.Message(type="chat", id="5-1", from_="bob", text="hi", ts=7)
    welcome = events.decode(protocol.encode_welcome("alice", "s1", ["alice", "bob"], [msg], True))
    assert welcome == events.Welcome(user="alice", session="s1", users=["alice", "bob"],
                                     history=[events.Chat(id="5-1", from_="bob", text="hi", ts=7)],
                                     recovered=True, protocol=protocol.PROTOCOL_VERSION)
    chat = events.decode(protocol.encode_message(msg, ref="r1"))
    assert (chat.id, chat.from_, chat.text, chat.ts, chat.ref, chat.channel) == ("5-1", "bob", "hi", 7, "r1", None)
    w = protocol.Message(type="whisper", id="6-0", from_="bob", text="psst", ts=8, to="alice")
    assert events.decode(protocol.encode_message(w)) == events.Whisper(
        id="6-0", from_="bob", to="alice", text="psst", ts=8)
    assert events.decode(protocol.encode_presence("join", "carol", 9)) == events.Join(user="carol", ts=9)
    assert events.decode(protocol.encode_presence("leave", "carol", 9, "left")).reason == "left"
    assert events.decode(protocol.encode_users(["a"], "r2")) == events.Users(users=["a"], ref="r2")
    assert events.decode(protocol.encode_history([msg], "r3")).messages[0].id == "5-1"
    err = events.decode(protocol.encode_error("rate_limited", "slow down", "r4", 1500))
    assert err == events.Error(code="rate_limited", message="slow down", ref="r4", retry_after_ms=1500)
    assert events.decode(protocol.encode_kicked("spam")) == events.Kicked(reason="spam")
    assert events.decode(protocol.SHUTDOWN_FRAME) == events.Shutdown()


def test_channel_frames_of_protocol_v2_decode():
    """subscribed/unsubscribed (with an operator's reason), muted/unmuted, channels and the
    channel fields, from the server's encoders."""
    m = protocol.Message(type="chat", id="1-1", from_="a", text="x", ts=1, channel="ops")
    welcome = events.decode(protocol.encode_welcome("a", "s", [], [m], None, channels=["general", "ops"]))
    assert welcome.channels == ["general", "ops"] and welcome.history[0].channel == "ops"
    sub = events.decode(protocol.encode_subscribed("ops", ["a", "b"], [m], True, "r"))
    assert sub == events.Subscribed(channel="ops", users=["a", "b"], recovered=True, ref="r",
                                    history=[events.Chat(id="1-1", from_="a", text="x", ts=1, channel="ops")])
    assert events.decode(protocol.encode_unsubscribed("ops", "r2", "deleted")) == events.Unsubscribed(
        channel="ops", ref="r2", reason="deleted")
    assert events.decode(protocol.encode_unsubscribed("ops", None, "banned", "spam", 17)) == (
        events.Unsubscribed(channel="ops", reason="banned", message="spam", until=17))
    assert events.decode(protocol.encode_unsubscribed("ops", None, "kicked", "calm down")) == (
        events.Unsubscribed(channel="ops", reason="kicked", message="calm down"))
    assert events.decode(protocol.encode_muted("shouting", None)) == events.Muted(
        reason="shouting", until=None)
    assert events.decode(protocol.encode_muted("", 99)).until == 99
    assert events.decode(protocol.UNMUTED_FRAME) == events.Unmuted()
    assert events.decode(protocol.encode_banned("spam", 5)) == events.Banned(reason="spam", until=5)
    chans = events.decode(protocol.encode_channels([("general", 3), ("ops", 1)]))
    assert chans.channels == [events.ChannelInfo(name="general", users=3), events.ChannelInfo(name="ops", users=1)]
    assert events.decode(protocol.encode_presence("join", "b", 2, channel="ops")).channel == "ops"
    assert events.decode(protocol.encode_users(["b"], "r3", "ops")).channel == "ops"
    assert events.decode(protocol.encode_history([m], "r4", "ops")).channel == "ops"


@pytest.mark.parametrize("text, kind", [
    ('{"type":"poll","question":"lunch?"}', "poll"),  # a type from a newer server
    ('{"type":"chat","id":"1-1"}', "chat"),            # known type, fields missing
    ('{"type":"users","users":"everyone"}', "users"),  # known type, wrong field type
    ('[1, 2]', None), ('{"no":"type"}', None), ("not json", None), ('{"type":7}', None),
])
def test_frames_that_cannot_be_read_become_unknown_never_an_exception(text, kind):
    ev = events.decode(text)
    assert isinstance(ev, events.Unknown) and ev.type == kind and ev.problem


def test_known_frames_with_extra_fields_still_decode():
    """A newer server may add fields; the client ignores them."""
    ev = events.decode('{"type":"join","user":"a","ts":1,"avatar":"x.png"}')
    assert ev == events.Join(user="a", ts=1)


@pytest.mark.parametrize("code, cls", [
    ("bad_request", errors.BadRequest), ("unknown_type", errors.UnknownType),
    ("too_long", errors.TooLong), ("unknown_user", errors.UnknownUser),
    ("rate_limited", errors.RateLimited), ("blocked", errors.Blocked),
    ("unavailable", errors.Unavailable), ("forbidden", errors.Forbidden),
    ("not_subscribed", errors.NotSubscribed), ("unknown_channel", errors.UnknownChannel),
    ("too_many_channels", errors.TooManyChannels),
])
def test_each_error_code_has_its_class_under_chat_error(code, cls):
    exc = errors.error_for(code, "why", 2500)
    assert type(exc) is cls and exc.code == code and exc.message == "why"
    assert isinstance(exc, errors.ChatError) and isinstance(exc, ChathubError)
    assert exc.retry_after == 2.5


def test_every_error_code_the_server_sends_has_a_class():
    """The codes the server's protocol module defines are all covered."""
    server_codes = {protocol.BAD_REQUEST, protocol.UNKNOWN_TYPE, protocol.TOO_LONG,
                    protocol.UNKNOWN_USER, protocol.RATE_LIMITED, protocol.BLOCKED,
                    protocol.UNAVAILABLE, protocol.NOT_SUBSCRIBED, protocol.FORBIDDEN,
                    protocol.UNKNOWN_CHANNEL, protocol.TOO_MANY_CHANNELS}
    assert server_codes <= set(errors.BY_CODE)


def test_an_unknown_error_code_is_a_plain_server_error():
    exc = errors.error_for("quota_exceeded", "too many channels")
    assert type(exc) is errors.ServerError and exc.code == "quota_exceeded" and exc.retry_after is None


def _chat(i: str, channel: str | None = None) -> events.Chat:
    return events.Chat(id=i, from_="a", text="t", ts=1, channel=channel)


def test_tracker_drops_repeats_per_channel_and_keeps_the_highest_id_as_since():
    t = Tracker()
    assert t.since(None) is None
    assert [t.admit(_chat(i)) for i in ("10-0", "9-5", "10-0", "10-1")] == [True, True, False, True]
    assert t.since(None) == "10-1"
    # ids compare as numbers: 9-10 is newer than 9-9 although "9-10" < "9-9" as strings
    assert t.admit(_chat("9-10", "ops")) and t.admit(_chat("9-9", "ops"))
    assert t.since("ops") == "9-10"
    # the same id in another channel is another message
    assert t.admit(_chat("10-1", "ops"))
    # v2 names the default channel; its messages resume with ?since= like v1's
    t.default = "general"
    assert not t.admit(_chat("10-1", "general")) and t.since("general") == t.since(None) == "10-1"
    # whispers count in the default channel (the server recovers them with ?since=)
    assert not t.admit(events.Whisper(id="10-1", from_="a", to="b", text="t", ts=1))
    assert [m.id for m in t.fresh([_chat("10-0"), _chat("11-0"), _chat("11-0")])] == ["11-0"]


async def test_buffer_drops_messages_past_capacity_and_reports_an_overflow_in_their_place():
    b = EventBuffer(capacity=2)
    for i in range(5):
        b.put(_chat(f"{i}-0"))
    assert b.put(events.Gap(channel=None, since="1-0"))  # never dropped
    got = [await b.get() for _ in range(4)]
    assert [type(e).__name__ for e in got] == ["Chat", "Chat", "Overflow", "Gap"]
    assert got[2] == events.Overflow(dropped=3, first_id="2-0", last_id="4-0")
    assert b.dropped_total == 3
    b.end()
    with pytest.raises(EOFError):
        await b.get()


async def test_buffer_get_waits_for_an_event():
    b = EventBuffer(capacity=1)
    getter = asyncio.create_task(b.get())
    await asyncio.sleep(0)
    assert not getter.done()
    b.put(_chat("1-0"))
    assert (await asyncio.wait_for(getter, 1)).id == "1-0"


def test_backoff_grows_to_its_cap_with_jitter_inside_its_bounds():
    b = Backoff(initial=0.5, factor=2, cap=4, jitter=0.25, rng=random.Random(1))
    for attempt, base in [(0, 0.5), (1, 1), (2, 2), (3, 4), (10, 4), (500, 4)]:
        d = b.delay(attempt)
        assert base * 0.75 <= d <= base * 1.25, (attempt, d)
    assert len({round(b.delay(0), 6) for _ in range(20)}) > 1  # jitter varies the delay
    assert Backoff(jitter=0, initial=1, cap=1).delay(3) == 1
    assert Backoff(max_attempts=2).gives_up(2) and not Backoff().gives_up(10**6)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)


async def test_a_first_connection_nobody_answers_raises_at_once():
    """docs/client.md: the first connection is not retried; a port nobody listens on
    raises OSError from connect() (and ``async with``) without waiting for a backoff."""
    import socket
    import time

    from chathub.client import ChatClient

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(OSError):
        async with ChatClient(f"ws://127.0.0.1:{port}/ws", user="a"):
            pass
    assert time.monotonic() - start < 2  # no retry loop behind it
