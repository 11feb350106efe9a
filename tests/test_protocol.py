"""The sans-I/O protocol module: frames in, typed messages or errors out, and back."""

from __future__ import annotations

import json

import pytest

from chathub import protocol as p

MAX = 2000


def err(frame: str | bytes) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        p.parse(frame, MAX)
    return info.value


def test_chat_parses_with_ref():
    """A chat frame becomes Chat with its text and ref."""
    assert p.parse('{"type":"chat","text":"hi","ref":"r"}', MAX) == p.Chat(text="hi", ref="r")


def test_whisper_parses():
    """A whisper frame becomes Whisper with recipient and text."""
    assert p.parse('{"type":"whisper","to":"bob","text":"x"}', MAX) == p.Whisper(to="bob", text="x")


def test_users_and_history_parse_with_defaults():
    """users and history parse; history defaults to the newest 50."""
    assert p.parse('{"type":"users"}', MAX) == p.Users()
    h = p.parse('{"type":"history"}', MAX)
    assert isinstance(h, p.History) and h.before is None and h.limit == 50


def test_unknown_fields_such_as_from_are_ignored():
    """A client-sent from is dropped: the server decides the sender."""
    msg = p.parse('{"type":"chat","text":"x","from":"alice"}', MAX)
    assert msg == p.Chat(text="x")


@pytest.mark.parametrize("frame, code", [
    ("", "bad_request"), ("{", "bad_request"), ("null", "bad_request"), ("[]", "bad_request"),
    ('"chat"', "bad_request"), ("{}", "bad_request"), ('{"type":null}', "bad_request"),
    ('{"type":"nope"}', "unknown_type"), ('{"type":"chat","text":["x"]}', "bad_request"),
    ('{"type":"chat","text":""}', "bad_request"), ('{"type":"chat","text":" \\n\\t"}', "bad_request"),
    ('{"type":"chat","text":"a\\u0000b"}', "bad_request"), ('{"type":"chat","text":"a\\u009bb"}', "bad_request"),
    ('{"type":"chat","text":"' + "é" * (MAX + 1) + '"}', "too_long"),
    ('{"type":"whisper","text":"x"}', "bad_request"), ('{"type":"whisper","to":"","text":"x"}', "bad_request"),
    ('{"type":"history","limit":0}', "bad_request"), ('{"type":"history","limit":201}', "bad_request"),
    ('{"type":"history","before":"1-x"}', "bad_request"), ('{"type":"chat","text":"x","ref":5}', "bad_request"),
    ('{"type":"chat","text":"x","ref":"' + "r" * 65 + '"}', "bad_request"),
])
def test_bad_frames_raise_the_documented_code(frame, code):
    """Every malformed frame maps to its error code."""
    assert err(frame).code == code


def test_deep_nesting_is_bad_request_not_a_crash():
    """Thousands of nested arrays or objects are refused cleanly (no RecursionError)."""
    assert err("[" * 5000 + "]" * 5000).code == "bad_request"
    assert err('{"a":' * 5000 + "1" + "}" * 5000).code == "bad_request"
    assert err('{"type":"chat","text":"x","extra":' + "[" * 5000 + "]" * 5000 + "}").code == "bad_request"


def test_binary_frame_is_bad_request():
    """Binary payloads are refused with bad_request."""
    assert err(b'{"type":"chat","text":"x"}').code == "bad_request"


def test_error_keeps_ref_when_readable():
    """An error caused by a frame with a valid ref echoes it."""
    assert err('{"type":"dance","ref":"abc"}').ref == "abc"
    assert json.loads(err('{"type":"dance","ref":"abc"}').frame())["ref"] == "abc"


def test_newline_and_tab_are_allowed_in_text():
    """Newlines and tabs are text, not control characters to refuse."""
    assert p.parse('{"type":"chat","text":"a\\nb\\tc"}', MAX).text == "a\nb\tc"


def test_text_at_exact_limit_is_accepted():
    """max_text_chars characters exactly is fine; one more is too_long."""
    assert p.parse(json.dumps({"type": "chat", "text": "x" * MAX}), MAX)
    assert err(json.dumps({"type": "chat", "text": "x" * (MAX + 1)})).code == "too_long"


def test_message_frames_encode_as_documented():
    """chat and whisper frames have exactly the documented fields."""
    chat = p.Message(type="chat", id="5-0", from_="a", text="t", ts=5)
    assert json.loads(p.encode(chat)) == {"type": "chat", "id": "5-0", "from": "a", "text": "t", "ts": 5}
    w = p.Message(type="whisper", id="6-1", from_="a", text="t", ts=6, to="b")
    assert json.loads(p.encode_message(w, "r")) == {
        "type": "whisper", "id": "6-1", "from": "a", "to": "b", "text": "t", "ts": 6, "ref": "r"}


def test_welcome_and_error_frames():
    """welcome carries protocol, user, session, users, history (+recovered); error its code."""
    w = json.loads(p.encode_welcome("u", "s", ["u"], [], True, channels=["general"]))
    assert w == {"type": "welcome", "protocol": 2, "user": "u", "session": "s", "users": ["u"],
                 "history": [], "recovered": True, "channels": ["general"]}
    assert "recovered" not in json.loads(p.encode_welcome("u", "s", [], [], None))
    e = json.loads(p.encode_error("rate_limited", "slow down", "r", 120))
    assert e == {"type": "error", "code": "rate_limited", "message": "slow down", "ref": "r",
                 "retry_after_ms": 120}


def test_parse_id_orders_numerically():
    """Ids compare by their integers, not as strings."""
    assert p.parse_id("10-0") > p.parse_id("9-5")
    with pytest.raises(ValueError):
        p.parse_id("abc")


@pytest.mark.parametrize("name, ok", [("a", True), ("A.b-c_9", True), ("x" * 32, True),
                                      ("", False), ("x" * 33, False), ("a b", False), ("é", False), (None, False)])
def test_user_names(name, ok):
    """User names are 1-32 of A-Z a-z 0-9 _ - ."""
    assert p.valid_user(name) is ok
