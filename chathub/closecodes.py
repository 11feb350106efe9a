"""WebSocket close codes chathub uses, each with what it means to a client.

RFC 6455 codes are below 4000; 4000-4999 are private to chathub.
"""

#: normal close, by the client or the server
NORMAL = 1000
#: the daemon is shutting down; sent after a ``shutdown`` frame; reconnect with backoff
GOING_AWAY = 1001
#: the connection dropped without a closing handshake (never sent on the wire)
ABNORMAL = 1006
#: the client broke the WebSocket protocol (bad framing, unmasked frame, ...)
PROTOCOL_ERROR = 1002
#: a text frame was not valid UTF-8
INVALID_DATA = 1007
#: the client broke a rule the server enforces
POLICY_VIOLATION = 1008
#: an incoming frame was larger than ``server.max_message_bytes``
MESSAGE_TOO_BIG = 1009
#: the server failed unexpectedly while handling this connection
INTERNAL_ERROR = 1011
#: an operator kicked this user; sent after a ``kicked`` frame; do not reconnect at once
KICKED = 4001
#: the client's outgoing backlog stayed above ``hub.client_queue_limit`` for ``hub.write_timeout``
#: without falling below it, or would pass ``hub.client_queue_max`` (see chathub/drain.py)
SLOW_CONSUMER = 4002
#: the token used to connect has expired; get a new one
TOKEN_EXPIRED = 4003
#: a dependency (Valkey) failed while this connection was being registered; reconnect
#: with backoff (RFC 6455 registry: "Try Again Later")
TRY_AGAIN_LATER = 1013

#: most bytes of UTF-8 a close frame's reason may hold: a control frame's payload is at
#: most 125 bytes, two of which carry the code (RFC 6455, sections 5.5 and 5.5.1)
MAX_REASON_BYTES = 123

#: the reason recorded in the session row, by close code
REASONS = {
    NORMAL: "client closed",
    GOING_AWAY: "shutdown",
    PROTOCOL_ERROR: "protocol error",
    ABNORMAL: "connection lost",
    INVALID_DATA: "invalid utf-8",
    POLICY_VIOLATION: "policy violation",
    MESSAGE_TOO_BIG: "message too big",
    INTERNAL_ERROR: "internal error",  # also websockets' keepalive timeout, see reason_for()
    KICKED: "kicked",
    SLOW_CONSUMER: "slow consumer",
    TOKEN_EXPIRED: "token expired",
    TRY_AGAIN_LATER: "try again later",
}


def wire_reason(reason: str) -> str:
    """``reason`` cut to :data:`MAX_REASON_BYTES` of UTF-8 on a character boundary.

    Every close chathub starts passes its reason through here: a longer reason makes
    websockets refuse to send the close frame, and the connection would stay open.
    The full text may travel in a frame sent before the close (``kicked``).
    """
    data = reason.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return reason
    return data[:MAX_REASON_BYTES].decode("utf-8", "ignore")


def reason_for(code: int | None, text: str | None) -> str:
    """The session's close reason for a close the client (or the network) caused."""
    if code == INTERNAL_ERROR and text and "keepalive" in text:
        return "keepalive timeout"
    if code is None:
        return REASONS[ABNORMAL]
    return REASONS.get(code, f"closed with {code}")
