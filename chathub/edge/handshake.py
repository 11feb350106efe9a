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

Checked against websockets 14-17 (the range pinned in pyproject.toml): the parsing
step is ``ServerProtocol.parse``, a generator started in ``Protocol.__init__``;
:func:`install` restarts it as ours before any byte has arrived.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Generator

from websockets.exceptions import InvalidMessage
from websockets.http11 import Request
from websockets.protocol import CONNECTING, Protocol
from websockets.server import ServerProtocol

log = logging.getLogger("chathub.edge.handshake")


def _status_for(exc: Exception) -> tuple[http.HTTPStatus, str]:
    """The status and one-line reason for a request websockets could not parse."""
    text = str(exc)
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

    def parse(self) -> Generator[None]:
        if self.state is CONNECTING:
            try:
                request = yield from Request.parse(self.reader.read_line)
            except EOFError:
                raise  # the peer left before sending a request: nothing to answer
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


def install(protocol: ServerProtocol) -> None:
    """Make ``protocol`` (fresh, nothing received yet) answer unparseable requests."""
    protocol.__class__ = AnsweringProtocol
    protocol.parser = protocol.parse()
    next(protocol.parser)
