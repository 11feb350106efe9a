"""Server frames byte for byte (RFC 6455 section 5.2), each length branch, and a round trip
through websockets' own parser."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from chathub.framing import text_frame


def test_short_payload_has_a_7_bit_length():
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"") == b"\x81\x00"
    assert text_frame(b"x" * 125)[:2] == b"\x81\x7d"


def test_126_to_65535_bytes_take_a_16_bit_length():
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 65535)[:4] == b"\x81\x7e\xff\xff"


def test_65536_bytes_and_more_take_a_64_bit_length():
    frame = text_frame(b"x" * 65536)
    assert frame[:10] == b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
    assert len(frame) == 10 + 65536


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_websockets_parses_what_we_build(n):
    payload = bytes(i % 251 for i in range(n))
    reader = StreamReader()
    reader.feed_data(text_frame(payload))
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    with pytest.raises(StopIteration) as done:
        while True:
            next(parser)
    frame = done.value.value
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data == payload
