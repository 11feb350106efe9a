"""The wire protocol, sans I/O: frame text in, typed messages out, and back.

Nothing here touches a socket. This is the protocol's public face for client code
(``from chathub.protocol import Chat, ProtocolError``); each part lives in a module
of its own, and every name below is importable from here:

- :mod:`chathub.clientframes`: the frames a client may send (:class:`Chat`,
  :class:`Whisper`, :class:`Users`, :class:`History`, :class:`Subscribe`,
  :class:`Unsubscribe`, :class:`Channels`) and their size limits.
- :mod:`chathub.clientparse`: :func:`parse` turns one client frame into one of those,
  validated, or raises :class:`ProtocolError` carrying the error code to send back.
- :mod:`chathub.serverframes`: :class:`Message` and the ``encode_*`` functions, which
  build server frames as UTF-8 JSON bytes, ready to be written once and sent to many
  connections.
- :mod:`chathub.errorcodes`: the error codes and :class:`ProtocolError`.
- :mod:`chathub.identifiers`: user names, channel names and message ids.

docs/protocol.md is the reader's version of this module.
"""

from __future__ import annotations

from .clientframes import (
    DEFAULT_HISTORY_LIMIT,
    KNOWN_TYPES,
    MAX_HISTORY_LIMIT,
    MAX_REF_CHARS,
    WORST_BYTES_PER_CHAR,
    Channels,
    Chat,
    ClientMessage,
    History,
    Ref,
    Subscribe,
    Unsubscribe,
    Users,
    Whisper,
    max_frame_bytes,
)
from .clientparse import parse, validate_text
from .errorcodes import (
    BAD_REQUEST,
    BLOCKED,
    FORBIDDEN,
    MUTED,
    NOT_SUBSCRIBED,
    RATE_LIMITED,
    TOO_LONG,
    TOO_MANY_CHANNELS,
    UNAVAILABLE,
    UNKNOWN_CHANNEL,
    UNKNOWN_TYPE,
    UNKNOWN_USER,
    ProtocolError,
)
from .identifiers import (
    CHANNEL_RE,
    FIRST_ID,
    ID_PART_MAX,
    ID_RE,
    USER_RE,
    before_first,
    canonical_id,
    is_private,
    parse_id,
    valid_channel,
    valid_user,
)
from .serverframes import (
    PROTOCOL_VERSION,
    SHUTDOWN_FRAME,
    UNMUTED_FRAME,
    Message,
    encode,
    encode_banned,
    encode_channels,
    encode_delete,
    encode_error,
    encode_history,
    encode_kicked,
    encode_message,
    encode_muted,
    encode_presence,
    encode_subscribed,
    encode_unsubscribed,
    encode_users,
    encode_welcome,
)

__all__ = [
    # clientframes
    "DEFAULT_HISTORY_LIMIT", "KNOWN_TYPES", "MAX_HISTORY_LIMIT", "MAX_REF_CHARS",
    "WORST_BYTES_PER_CHAR", "Channels", "Chat", "ClientMessage", "History", "Ref",
    "Subscribe", "Unsubscribe", "Users", "Whisper", "max_frame_bytes",
    # clientparse
    "parse", "validate_text",
    # errorcodes
    "BAD_REQUEST", "BLOCKED", "FORBIDDEN", "MUTED", "NOT_SUBSCRIBED", "RATE_LIMITED",
    "TOO_LONG", "TOO_MANY_CHANNELS", "UNAVAILABLE", "UNKNOWN_CHANNEL", "UNKNOWN_TYPE",
    "UNKNOWN_USER", "ProtocolError",
    # identifiers
    "CHANNEL_RE", "FIRST_ID", "ID_PART_MAX", "ID_RE", "USER_RE", "before_first",
    "canonical_id", "is_private", "parse_id", "valid_channel", "valid_user",
    # serverframes
    "PROTOCOL_VERSION", "SHUTDOWN_FRAME", "UNMUTED_FRAME", "Message", "encode",
    "encode_banned", "encode_channels", "encode_delete", "encode_error", "encode_history",
    "encode_kicked", "encode_message", "encode_muted", "encode_presence", "encode_subscribed", "encode_unsubscribed",
    "encode_users", "encode_welcome",
]
