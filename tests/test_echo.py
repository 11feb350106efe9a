"""OwnEchoes: a hub's own messages wait for their echo, never longer than the deadline."""

from __future__ import annotations

from chathub.cluster.echo import OwnEchoes
from chathub.protocol import Message


def _msg(i: int) -> Message:
    return Message(type="chat", id=f"100-{i}", from_="a", text=str(i), ts=100, channel="general")


def test_an_echo_releases_its_message_and_those_whose_echo_was_lost():
    e = OwnEchoes(wait=1.0)
    for i in range(1, 5):
        e.hold(_msg(i), b"f", b"o", None, now=10.0)
    out, orphan = e.arrived("100-2")
    assert [h.message.id for h in out] == ["100-1", "100-2"] and not orphan
    out, orphan = e.arrived("100-4")
    assert [h.message.id for h in out] == ["100-3", "100-4"] and not orphan
    assert len(e) == 0 and e.next_due() is None


def test_without_echo_a_message_is_due_after_the_wait_in_order():
    e = OwnEchoes(wait=1.0)
    e.hold(_msg(1), b"f", b"o", None, now=10.0)
    e.hold(_msg(2), b"f", b"o", None, now=10.5)
    assert e.next_due() == 11.0
    assert e.due(10.99) == []
    assert [h.message.id for h in e.due(11.0)] == ["100-1"]
    assert e.next_due() == 11.5
    assert [h.message.id for h in e.due(12.0)] == ["100-2"]
    assert e.timed_out == 2


def test_ids_compare_as_numbers_not_text():
    e = OwnEchoes()
    e.hold(_msg(9), b"f", b"o", None, now=0.0)
    e.hold(_msg(10), b"f", b"o", None, now=0.0)
    assert [h.message.id for h in e.arrived("100-9")[0]] == ["100-9"]


def test_an_echo_of_a_stamp_whose_answer_was_lost_is_an_orphan():
    e = OwnEchoes()
    e.delivered("100-3")  # went out without waiting
    assert e.arrived("100-3") == ([], False)
    e.hold(_msg(8), b"f", b"o", None, now=0.0)
    out, orphan = e.arrived("100-7")  # stamped, but the hub never heard its id
    assert out == [] and orphan
    out, orphan = e.arrived("100-8")
    assert [h.message.id for h in out] == ["100-8"] and not orphan


def test_an_orphan_echo_answers_the_ref_its_stamp_timed_out_with():
    e = OwnEchoes()
    conn = object()
    e.unsure("alice", "hi", conn, "r7")
    assert e.sender_of("alice", "other") == (None, None)
    assert e.sender_of("alice", "hi") == (conn, "r7")
    assert e.sender_of("alice", "hi") == (None, None)  # answered once
