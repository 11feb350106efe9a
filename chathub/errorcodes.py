"""The protocol's error codes and :class:`ProtocolError`, the refusal that carries one.

A client frame that cannot be served is answered with an ``error`` frame and the
connection stays open (docs/protocol.md, "Error codes", says when each code is sent).
Close codes, which end a connection, are in :mod:`chathub.closecodes`.
"""

from __future__ import annotations

from .errors import ChathubError
from .serverframes import encode_error

# Error codes (docs/protocol.md, "Error codes").
BAD_REQUEST = "bad_request"
UNKNOWN_TYPE = "unknown_type"
TOO_LONG = "too_long"
UNKNOWN_USER = "unknown_user"
RATE_LIMITED = "rate_limited"
BLOCKED = "blocked"
UNAVAILABLE = "unavailable"
NOT_SUBSCRIBED = "not_subscribed"
FORBIDDEN = "forbidden"
UNKNOWN_CHANNEL = "unknown_channel"
TOO_MANY_CHANNELS = "too_many_channels"
MUTED = "muted"


class ProtocolError(ChathubError, ValueError):
    """A client frame that cannot be served; send :meth:`frame` back and keep the connection.

    Attributes:
        code: one of the error codes above.
        message: one line for the client saying what was wrong.
        ref: the ``ref`` of the frame it answers, when it had a readable one.
        retry_after_ms: milliseconds the client should wait before asking again, when known.
    """

    def __init__(self, code: str, message: str, ref: str | None = None,
                 retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.retry_after_ms = retry_after_ms

    def frame(self) -> bytes:
        """The ``error`` frame for this error."""
        return encode_error(self.code, self.message, self.ref, self.retry_after_ms)
