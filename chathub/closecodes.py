"""WebSocket close codes chathub uses, each with what it means to a client.

Each is a :class:`Close`: the code and its reason travel together.

RFC 6455 codes are below 4000; 4000-4999 are private to chathub.
"""

from __future__ import annotations


class Close(int):
    """A close code that carries its reason: ``KICKED == 4001``, ``KICKED.reason == "kicked"``.

    An ``int``, so it compares with the codes clients and websockets report; the reason
    is what chathub sends and records unless a call site gives a more specific one
    (the model is centrifuge's ``disconnect.go``: typed values with documented ranges).
    """

    reason: str

    def __new__(cls, code: int, reason: str) -> Close:
        obj = super().__new__(cls, code)
        obj.reason = reason
        return obj


#: normal close, by the client or the server
NORMAL = Close(1000, "client closed")
#: the daemon is shutting down; sent after a ``shutdown`` frame; reconnect with backoff
GOING_AWAY = Close(1001, "shutdown")
#: the client broke the WebSocket protocol (bad framing, unmasked frame, ...)
PROTOCOL_ERROR = Close(1002, "protocol error")
#: the connection dropped without a closing handshake (never sent on the wire)
ABNORMAL = Close(1006, "connection lost")
#: a text frame was not valid UTF-8
INVALID_DATA = Close(1007, "invalid utf-8")
#: the client broke a rule the server enforces
POLICY_VIOLATION = Close(1008, "policy violation")
#: an incoming frame was larger than ``server.max_message_bytes``
MESSAGE_TOO_BIG = Close(1009, "message too big")
#: the server failed unexpectedly while handling this connection (a fault of the server,
#: never of what a client sent); also websockets' keepalive timeout, see reason_for()
INTERNAL_ERROR = Close(1011, "internal error")
#: no pong within ``ping_timeout``: the peer is gone (websockets uses 1011 for it too)
KEEPALIVE_TIMEOUT = Close(1011, "keepalive ping timeout")
#: a dependency (Valkey) failed while this connection was being registered; reconnect
#: with backoff (RFC 6455 registry: "Try Again Later")
TRY_AGAIN_LATER = Close(1013, "try again later")
#: an operator kicked this user; sent after a ``kicked`` frame; do not reconnect at once
KICKED = Close(4001, "kicked")
#: the client's outgoing backlog stayed above ``hub.client_queue_limit`` for ``hub.write_timeout``
#: without falling below it, or would pass ``hub.client_queue_max`` (see chathub/drain.py)
SLOW_CONSUMER = Close(4002, "slow consumer")
#: the token used to connect has expired; get a new one
TOKEN_EXPIRED = Close(4003, "token expired")
#: an operator banned this user (or its address); sent after a ``banned`` frame. Terminal:
#: a client must not reconnect by itself (the upgrade is refused with 403 until the ban ends)
BANNED = Close(4004, "banned")

#: most bytes of UTF-8 a close frame's reason may hold: a control frame's payload is at
#: most 125 bytes, two of which carry the code (RFC 6455, sections 5.5 and 5.5.1)
MAX_REASON_BYTES = 123

#: the reason recorded in the session row, by close code
REASONS = {int(c): c.reason for c in (
    NORMAL, GOING_AWAY, PROTOCOL_ERROR, ABNORMAL, INVALID_DATA, POLICY_VIOLATION,
    MESSAGE_TOO_BIG, INTERNAL_ERROR, TRY_AGAIN_LATER, KICKED, SLOW_CONSUMER, TOKEN_EXPIRED,
    BANNED)}


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


#: the recorded close reason of a connection that stopped answering pings
KEEPALIVE_REASON = "keepalive timeout"


def reason_for(code: int | None, text: str | None) -> str:
    """The session's close reason for a close the client (or the network) caused."""
    if code == INTERNAL_ERROR and text and "keepalive" in text:
        return KEEPALIVE_REASON
    if code is None:
        return REASONS[ABNORMAL]
    return REASONS.get(code, f"closed with {code}")


#: every reason :func:`counted` may return besides ``closed with N``
COUNTED = frozenset(REASONS.values()) | {KEEPALIVE_REASON}


def counted(code: int | None, reason: str | None) -> str:
    """The label a finished connection is counted under (``stats.closes``,
    ``chathub_closes_total{reason}``): ``reason`` when it is one of chathub's own,
    else the name of ``code`` (``kicked``, ``banned``). An operator's kick or ban
    reason is free text: as a label it would add a metric series per distinct reason
    forever; the session row keeps it whole."""
    if reason in COUNTED:
        return reason
    return reason_for(code, None)
