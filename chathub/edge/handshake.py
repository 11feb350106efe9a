"""The HTTP side of the shared port: every request gets an answer, never a silent close.

websockets parses the request line and headers, then hands the request to
:meth:`chathub.edge.routes.Routes.process_request`. For a request it cannot parse
(a body, ``Transfer-Encoding``, HTTP/0.9 or /2 preface, garbage) it closes the
connection without a word, which probes and proxies report as a reset. RFC 9112
section 2.2 asks a server to answer a request it cannot parse with 400 and then
close. :class:`AnsweringProtocol` does that: it is websockets' ``ServerProtocol``
with its request-parsing step answering instead of dropping, and reading nothing
past the request until its answer is written (so a pipelined second request does
not drop the answer to the first; the answer says ``Connection: close``).

The HTTP API (``/api/v1/``, :mod:`chathub.edge.api`) takes JSON bodies, which
websockets' request parser refuses. For a request whose path starts with
:data:`API_PREFIX`, :func:`parse_request` lets websockets' ``Request.parse`` read the
request line and headers while keeping the body's ``Content-Length`` out of its
sight, then reads a body of at most ``max_body`` bytes (a larger one is answered
413 unread; ``Transfer-Encoding`` 400), and hands a :class:`BodyRequest` to
``process_request`` as usual. Every other path is parsed exactly as websockets
parses it.

Checked against websockets 14-17 (the range pinned in pyproject.toml): the parsing
step is ``ServerProtocol.parse``, a generator started in ``Protocol.__init__``;
:func:`install` restarts it as ours before any byte has arrived.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import InvalidMessage
from websockets.http11 import Request
from websockets.protocol import CONNECTING, Protocol
from websockets.server import ServerProtocol

from .routes import API_PREFIX  # paths whose requests may carry a body (the HTTP API)

log = logging.getLogger("chathub.edge.handshake")

#: the largest body read by default (``api.max_body``)
DEFAULT_MAX_BODY = 65_536


@dataclass
class BodyRequest(Request):
    """A request to the HTTP API, with its body (empty when it had none)."""

    body: bytes = b""


class BodyTooLarge(ValueError):
    """The request announced a body larger than the limit; answered 413 without reading it."""


class _BodyHeaders:
    """Wraps ``read_line`` for ``Request.parse``: for an API request, keeps the body's
    ``Content-Length`` / ``Transfer-Encoding`` lines out of websockets' sight (it refuses
    any request with a body) and records them here."""

    def __init__(self, read_line: Any) -> None:
        self._read_line = read_line
        self._first = True
        #: whether the request line names an API path
        self.api = False
        #: the Content-Length values seen, and whether Transfer-Encoding came
        self.lengths: list[bytes] = []
        self.chunked = False

    def read_line(self, *args: Any) -> Generator[None, None, bytes]:
        while True:
            line = yield from self._read_line(*args)
            if self._first:
                self._first = False
                parts = bytes(line).split(b" ")
                self.api = len(parts) == 3 and parts[1].startswith(API_PREFIX.encode())
                return line
            if self.api:
                name, _, value = bytes(line).partition(b":")
                low = name.lower()
                if low == b"content-length":
                    self.lengths.append(value.strip())
                    continue
                if low == b"transfer-encoding":
                    self.chunked = True
                    continue
            return line


def parse_request(read_line: Any, read_exact: Any, max_body: int
                  ) -> Generator[None, None, Request]:
    """websockets' ``Request.parse``, except that an API request may carry a body.

    Raises what ``Request.parse`` raises, and :class:`BodyTooLarge`.
    """
    seen = _BodyHeaders(read_line)
    request = yield from Request.parse(seen.read_line)
    if not seen.api:
        return request
    if seen.chunked:
        raise NotImplementedError("transfer codings aren't supported")
    if len(set(seen.lengths)) > 1:
        raise ValueError("unsupported request body: conflicting Content-Length")
    length = 0
    if seen.lengths:
        value = seen.lengths[0]
        if not value.isdigit() or len(value) > 12:
            raise ValueError("unsupported request body: invalid Content-Length")
        length = int(value)
    if length > max_body:
        raise BodyTooLarge(f"request body over {max_body} bytes")
    body = bytes((yield from read_exact(length))) if length else b""
    return BodyRequest(request.path, request.headers, request.method, request.protocol,
                       body=body)


def _status_for(exc: Exception) -> tuple[http.HTTPStatus, str]:
    """The status and one-line reason for a request websockets could not parse."""
    text = str(exc)
    if isinstance(exc, BodyTooLarge):
        return http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE, text
    if isinstance(exc, NotImplementedError) or "request body" in text:
        return http.HTTPStatus.BAD_REQUEST, "requests to this server carry no body"
    if "protocol" in text:
        return http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "use HTTP/1.1"
    if "too long" in text:
        return http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request line or header too long"
    if "too many" in text:
        return http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers"
    return http.HTTPStatus.BAD_REQUEST, "malformed HTTP request"


class AnsweringProtocol(ServerProtocol):
    """websockets' server protocol, answering unparseable requests with a status line."""

    #: the largest HTTP API body (set by :func:`install`)
    max_body = DEFAULT_MAX_BODY

    def parse(self) -> Generator[None]:
        if self.state is CONNECTING:
            try:
                request = yield from parse_request(self.reader.read_line, self.reader.read_exact,
                                                   self.max_body)
            except EOFError as exc:
                # The peer left before a whole request came (a TCP health check, a port
                # scan): nothing to answer. Close as websockets does; raising here would
                # reach the event loop and log two tracebacks at ERROR per connection.
                self.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
                self.handshake_exc.__cause__ = exc
                self.send_eof()
                self.parser = self.discard()
                next(self.parser)
                yield
                return
            except Exception as exc:
                status, reason = _status_for(exc)
                self.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
                self.handshake_exc.__cause__ = exc
                self.send_response(self.reject(status, reason + "\n"))  # then EOF, discard
                yield
                return
            self.events.append(request)
            # Read nothing more until the answer is out. A client must wait for the 101
            # before it sends frames (RFC 6455 section 4.1); bytes that came early are a
            # pipelined HTTP request, which would otherwise be parsed as a broken frame
            # and the connection dropped before its first answer was written.
            while self.state is CONNECTING:
                yield
        yield from Protocol.parse(self)


def install(protocol: ServerProtocol, max_body: int = DEFAULT_MAX_BODY) -> None:
    """Make ``protocol`` (fresh, nothing received yet) answer unparseable requests, and
    read API request bodies up to ``max_body`` bytes."""
    protocol.__class__ = AnsweringProtocol
    protocol.max_body = max_body  # type: ignore[attr-defined]
    protocol.parser = protocol.parse()
    next(protocol.parser)
