"""RemoteFeed without a server: duplicates per channel, fresh clients skipped, state freed."""

from __future__ import annotations

from chathub.cluster.relay import RemoteFeed
from chathub.protocol import Message


def chat(mid: str, channel: str) -> Message:
    return Message(type="chat", id=mid, from_="u", text="t", ts=0, channel=channel)


def test_duplicates_are_per_channel_and_fresh_clients_are_skipped_once():
    feed = RemoteFeed(cache=None, node_id="n")  # type: ignore[arg-type]
    a, b = object(), object()
    feed.welcomed(a, "x", "10-0")
    feed.welcomed(b, "y", "10-0")
    assert feed.admit(chat("9-0", "x")) is None  # at or below what a's history held
    assert feed.admit(chat("11-0", "x")) == set()  # a is fresh no longer
    assert feed.admit(chat("5-0", "y")) is None
    feed.welcomed(a, "y", "20-0")
    assert feed.admit(chat("12-0", "y")) == {a}  # a got it in its history; b did not
    assert feed.admit(chat("12-0", "y")) is None


def test_leaving_frees_every_entry_of_the_client():
    feed = RemoteFeed(cache=None, node_id="n")  # type: ignore[arg-type]
    clients = [object() for _ in range(3)]
    for ch in ("x", "y"):
        feed.welcomed(object(), ch, "9-0")  # the first joiner sets where each channel starts
    for c in clients:
        for ch in ("x", "y"):
            feed.welcomed(c, ch, "10-0")  # local messages since: these joiners are fresh
    assert feed.fresh_entries() == 6 + 3
    for c in clients:
        feed.forget(c)
    assert feed.admit(chat("5-0", "x")) is None
    feed.drop_channel("x")
    assert feed.admit(chat("6-0", "x")) == set()  # a channel watched again starts over
    assert feed.fresh_entries() == 0


def test_joiners_with_nothing_newer_than_the_last_delivered_hold_no_entry():
    """An idle channel's subscribers cost the feed nothing; a whisper joiner still counts."""
    feed = RemoteFeed(cache=None, node_id="n")  # type: ignore[arg-type]
    clients = [object() for _ in range(100)]
    for c in clients:
        feed.welcomed(c, "x", "10-0")
    assert feed.fresh_entries() == 0
    assert feed.admit(chat("10-0", "x")) is None
    assert feed.admit(chat("11-0", "x")) == set()
    feed.welcomed(clients[0], None, "11-0")  # whispers: no order known yet, so kept
    assert feed.fresh_entries() == 2
    late = object()
    feed.welcomed(late, "x", "12-0")  # a local message came after the last remote one
    assert feed.admit(chat("12-0", "x")) == {late}
