"""Reading API request bodies before websockets' handshake (chathub/edge/handshake.py), sans I/O."""

from __future__ import annotations

import pytest
from websockets.streams import StreamReader

from chathub.edge.handshake import BodyRequest, BodyTooLarge, parse_request


def run(data: bytes, max_body: int = 100):
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    gen = parse_request(reader.read_line, reader.read_exact, max_body)
    try:
        while True:
            next(gen)
    except StopIteration as done:
        return done.value


def test_api_body_is_read_and_headers_kept():
    """An API request's body is read, and its other headers reach the handler."""
    req = run(b"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n"
              b"Authorization: Bearer k\r\n\r\n{\"a\":1}")
    assert isinstance(req, BodyRequest) and req.body == b'{"a":1}'
    assert req.method == "POST" and req.headers["Authorization"] == "Bearer k"


def test_other_paths_refuse_bodies_as_websockets_does():
    with pytest.raises(ValueError, match="request body"):
        run(b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    req = run(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not isinstance(req, BodyRequest) and req.path == "/ws"


def test_limits_and_framing():
    with pytest.raises(BodyTooLarge):
        run(b"POST /api/v1/x HTTP/1.1\r\nContent-Length: 101\r\n\r\n")
    with pytest.raises(NotImplementedError):
        run(b"POST /api/v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    with pytest.raises(ValueError):
        run(b"POST /api/v1/x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
    with pytest.raises(ValueError):
        run(b"POST /api/v1/x HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
    with pytest.raises(EOFError):  # the body was cut short
        run(b"POST /api/v1/x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
