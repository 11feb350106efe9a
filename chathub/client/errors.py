"""Errors a :class:`~chathub.client.ChatClient` raises, with one root.

    ChathubError                     (chathub.errors)
    └── ChatError                    anything the client library raises on purpose
        ├── ServerError              the server answered a request with an ``error`` frame
        │   ├── BadRequest           bad_request: the frame was malformed
        │   ├── UnknownType          unknown_type: the server does not know the frame
        │   │                        (subscribe/unsubscribe against a protocol v1 server)
        │   ├── TooLong              too_long: text longer than ``max_text_chars``
        │   ├── UnknownUser          unknown_user: whisper to a user who is not online
        │   ├── RateLimited          rate_limited: ``retry_after`` seconds to wait
        │   ├── Blocked              blocked: refused by moderation
        │   ├── Unavailable          unavailable: nothing delivered; ``retry_after`` when known
        │   ├── Forbidden            forbidden (v2): a private channel the token does not name
        │   ├── NotSubscribed        not_subscribed (v2): this connection is not in the channel
        │   ├── UnknownChannel       unknown_channel (v2): no such channel (no auto-create)
        │   └── TooManyChannels      too_many_channels (v2): over the per-connection or server limit
        ├── Refused                  the upgrade was refused with HTTP ``status``
        ├── NotConnected             a request while the client is not connected (reconnecting)
        ├── Disconnected             the connection dropped before the reply came
        ├── ReplyTimeout             no reply within ``reply_timeout`` seconds
        └── Terminated               the client stopped for good (kicked, banned, closed)

An ``error`` code this version does not know is a plain :class:`ServerError` with
its ``code``. Each also subclasses the standard type a caller would catch.
"""

from __future__ import annotations

from ..errors import ChathubError


class ChatError(ChathubError):
    """Root of every error of the client library."""


class ServerError(ChatError):
    """The server refused a request. ``code`` is the protocol's error code."""

    code = "error"

    def __init__(self, message: str, code: str | None = None,
                 retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        #: what the server said to wait before trying again, in ms (None: not said)
        self.retry_after_ms = retry_after_ms

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before trying again, when the server said so."""
        return None if self.retry_after_ms is None else self.retry_after_ms / 1000


class BadRequest(ServerError, ValueError):
    code = "bad_request"


class UnknownType(ServerError, NotImplementedError):
    """The server does not know the frame type: a v2 request sent to a protocol v1 server."""

    code = "unknown_type"


class TooLong(ServerError, ValueError):
    code = "too_long"


class UnknownUser(ServerError, LookupError):
    code = "unknown_user"


class RateLimited(ServerError):
    """Over the chat, whisper or request budget; :attr:`retry_after` seconds to wait."""

    code = "rate_limited"


class Blocked(ServerError, PermissionError):
    code = "blocked"


class Unavailable(ServerError, ConnectionError):
    """The server's cache or database failed; nothing was delivered. Try again later."""

    code = "unavailable"


class Forbidden(ServerError, PermissionError):
    code = "forbidden"


class NotSubscribed(ServerError, LookupError):
    code = "not_subscribed"


class UnknownChannel(ServerError, LookupError):
    code = "unknown_channel"


class TooManyChannels(ServerError):
    code = "too_many_channels"


#: error code -> class; one per code of docs/protocol.md
BY_CODE: dict[str, type[ServerError]] = {
    cls.code: cls for cls in (BadRequest, UnknownType, TooLong, UnknownUser, RateLimited,
                              Blocked, Unavailable, Forbidden, NotSubscribed, UnknownChannel,
                              TooManyChannels)
}


def error_for(code: str, message: str, retry_after_ms: int | None = None) -> ServerError:
    """The typed exception for an ``error`` frame (a plain :class:`ServerError` when the
    code is unknown to this version)."""
    cls = BY_CODE.get(code)
    if cls is None:
        return ServerError(message, code, retry_after_ms)
    return cls(message, retry_after_ms=retry_after_ms)


class Refused(ChatError, ConnectionError):
    """The server refused the upgrade with HTTP ``status`` (400 bad name, 401 bad token, ...)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body.strip()[:200]}")
        self.status = status
        self.body = body


class NotConnected(ChatError, ConnectionError):
    """A request was made while the client is (re)connecting or closed; it was not sent."""


class Disconnected(ChatError, ConnectionError):
    """The connection dropped before the reply came. A chat may or may not have been
    delivered: after the reconnect it arrives as an event if it was."""


class ReplyTimeout(ChatError, TimeoutError):
    """No reply within ``reply_timeout`` seconds."""


class Terminated(ChatError, ConnectionError):
    """The client stopped for good; ``event`` is the terminal event (Kicked, Banned, Closed)."""

    def __init__(self, event: object) -> None:
        super().__init__(f"connection ended: {event!r}")
        self.event = event
