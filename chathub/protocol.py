"""The wire protocol, sans I/O: frame text in, typed messages out, and back.

Nothing here touches a socket. :func:`parse` turns one client frame into a
:class:`Chat`, :class:`Whisper`, :class:`Users` or :class:`History`, or raises
:class:`ProtocolError` carrying the error code to send back. The ``encode_*``
functions build server frames as UTF-8 JSON bytes, ready to be written once and
sent to many connections. docs/protocol.md is the reader's version of this module.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from .errors import ChathubError

#: 2 adds channels (subscribe, unsubscribe, channels; a channel on chat, join, leave,
#: users and history); every v1 frame keeps its meaning (docs/protocol.md)
PROTOCOL_VERSION = 2

#: longest ``ref`` a client may attach to a frame
MAX_REF_CHARS = 64
#: most messages one ``history`` request may ask for
MAX_HISTORY_LIMIT = 200
#: messages a ``history`` request returns when it names no limit
DEFAULT_HISTORY_LIMIT = 50

#: user names: 1-32 of A-Z a-z 0-9 _ - .
USER_RE = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
#: channel names: 1-64 of A-Z a-z 0-9 _ - . : after an optional "$" (private channels)
CHANNEL_RE = re.compile(r"\$?[A-Za-z0-9_.:\-]{1,64}")
#: message ids are Valkey stream ids: "<ms>-<seq>", each part an unsigned 64-bit integer
ID_RE = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
#: the largest value of either part of an id (Valkey's streamID is two uint64_t)
ID_PART_MAX = 2**64 - 1
#: the lowest id Valkey ever issues: XADD refuses 0-0, so nothing is older than 0-1
FIRST_ID = (0, 1)
#: control characters refused in text (all of C0 but tab and newline, DEL, C1)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

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

Ref = Annotated[str, msgspec.Meta(max_length=MAX_REF_CHARS)]

#: most bytes JSON may spend on one character: a character outside the BMP written as a
#: surrogate pair of escapes, "\ud83d\ude00" (RFC 8259 section 7), as Python's json.dumps does
WORST_BYTES_PER_CHAR = 12
#: bytes for the rest of the largest frame: keys, quotes, separators with json.dumps' spaces,
#: a 32-character user name escaped 6 bytes a character, and slack for whitespace
_ENVELOPE_BYTES = 512


def max_frame_bytes(max_text_chars: int) -> int:
    """The largest frame a client may need to carry ``max_text_chars`` of text.

    That is a ``whisper`` with the longest text and ``ref`` in the worst legal JSON
    encoding; ``server.max_message_bytes`` must be at least this (checked at start).
    """
    return WORST_BYTES_PER_CHAR * (max_text_chars + MAX_REF_CHARS) + _ENVELOPE_BYTES


class ProtocolError(ChathubError, ValueError):
    """A client frame that cannot be served; send :meth:`frame` back and keep the connection."""

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


class _Base(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    ref: Ref | None = None


class Chat(_Base, tag="chat", frozen=True):
    """``{"type":"chat","text":T,"channel":C?}``: a public message in channel C (default:
    the first auto-join channel)."""

    text: str
    channel: str | None = None


class Whisper(_Base, tag="whisper", frozen=True):
    """``{"type":"whisper","to":V,"text":T}``: a private message to user V."""

    to: str
    text: str


class Users(_Base, tag="users", frozen=True):
    """``{"type":"users","channel":C?}``: who is online (in channel C when given)."""

    channel: str | None = None


class History(_Base, tag="history", frozen=True):
    """``{"type":"history","before":ID,"limit":N,"channel":C?}``: older messages of a channel."""

    before: str | None = None
    limit: int = DEFAULT_HISTORY_LIMIT
    channel: str | None = None


class Subscribe(_Base, tag="subscribe", frozen=True):
    """``{"type":"subscribe","channel":C,"since":ID?}``: join channel C."""

    channel: str
    since: str | None = None


class Unsubscribe(_Base, tag="unsubscribe", frozen=True):
    """``{"type":"unsubscribe","channel":C}``: leave channel C."""

    channel: str


class Channels(_Base, tag="channels", frozen=True):
    """``{"type":"channels"}``: the public channels and how many users are in each."""


ClientMessage = Chat | Whisper | Users | History | Subscribe | Unsubscribe | Channels
KNOWN_TYPES = ("chat", "whisper", "users", "history", "subscribe", "unsubscribe", "channels")

_decoder = msgspec.json.Decoder(ClientMessage)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def _explain(data: str | bytes, exc: msgspec.DecodeError) -> ProtocolError:
    """Work out the error code for a frame the fast decoder refused (the slow path)."""
    try:
        obj = _any_decoder.decode(data)
    except msgspec.DecodeError:
        return ProtocolError(BAD_REQUEST, "frame is not valid JSON")
    except RecursionError:
        return ProtocolError(BAD_REQUEST, "frame is nested too deeply")
    if not isinstance(obj, dict):
        return ProtocolError(BAD_REQUEST, "frame must be a JSON object")
    ref = obj.get("ref")
    ref = ref if isinstance(ref, str) and len(ref) <= MAX_REF_CHARS else None
    kind = obj.get("type")
    if not isinstance(kind, str):
        return ProtocolError(BAD_REQUEST, "field 'type' must be a string", ref)
    if kind not in KNOWN_TYPES:
        return ProtocolError(UNKNOWN_TYPE, f"unknown type {kind[:40]!r}", ref)
    detail = str(exc).replace("`$.", "'").replace("`", "'")
    return ProtocolError(BAD_REQUEST, detail, ref)


def validate_text(text: str, max_chars: int, ref: str | None) -> None:
    """Refuse text that is empty, too long or holds control characters.

    Raises:
        ProtocolError: ``too_long`` or ``bad_request``.
    """
    if len(text) > max_chars:
        raise ProtocolError(TOO_LONG, f"text is longer than {max_chars} characters", ref)
    if not text or text.isspace():
        raise ProtocolError(BAD_REQUEST, "text must not be empty", ref)
    if _CONTROL_RE.search(text):
        raise ProtocolError(BAD_REQUEST, "text must not contain control characters", ref)


def parse(data: str | bytes, max_text_chars: int) -> ClientMessage:
    """Turn one client text frame into a message.

    Args:
        data: the frame's payload (text frames arrive as ``str``).
        max_text_chars: the server's ``max_text_chars``.

    Returns:
        A :class:`Chat`, :class:`Whisper`, :class:`Users` or :class:`History`,
        fully validated: the caller may act on it at once.

    Raises:
        ProtocolError: with the code to send back; the connection stays open.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(BAD_REQUEST, "binary frames are not accepted; send JSON text")
    try:
        msg = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise _explain(data, exc) from None
    except RecursionError:
        raise ProtocolError(BAD_REQUEST, "frame is nested too deeply") from None
    channel = getattr(msg, "channel", None)
    if channel is not None and not valid_channel(channel):
        raise ProtocolError(BAD_REQUEST, "field 'channel' must be 1-64 of A-Z a-z 0-9 _ - . : "
                            "after an optional '$'", msg.ref)
    if isinstance(msg, Chat):
        validate_text(msg.text, max_text_chars, msg.ref)
    elif isinstance(msg, Whisper):
        if not USER_RE.fullmatch(msg.to):
            raise ProtocolError(BAD_REQUEST, "field 'to' must be a valid user name", msg.ref)
        validate_text(msg.text, max_text_chars, msg.ref)
    elif isinstance(msg, History):
        if not 1 <= msg.limit <= MAX_HISTORY_LIMIT:
            raise ProtocolError(
                BAD_REQUEST, f"field 'limit' must be 1-{MAX_HISTORY_LIMIT}", msg.ref)
        msg = _with_canonical_id(msg, "before")
    elif isinstance(msg, Subscribe):
        msg = _with_canonical_id(msg, "since")
    return msg


def _with_canonical_id(msg: Any, field: str) -> Any:
    """``msg`` with its id ``field`` (when set) in canonical form.

    Raises:
        ProtocolError: ``bad_request`` naming the field when it is not an id in range.
    """
    value = getattr(msg, field)
    if value is None:
        return msg
    canonical = canonical_id(value)
    if canonical is None:
        raise ProtocolError(BAD_REQUEST, f"field '{field}' must be a message id "
                            "(two unsigned 64-bit integers, '<ms>-<seq>')", msg.ref)
    return msg if canonical == value else msgspec.structs.replace(msg, **{field: canonical})


def valid_channel(name: str | None) -> bool:
    """Whether ``name`` is an acceptable channel name (``$`` first for a private one)."""
    return name is not None and CHANNEL_RE.fullmatch(name) is not None


def is_private(channel: str) -> bool:
    """Private channels start with ``$``: only tokens that name them may subscribe."""
    return channel.startswith("$")


def valid_user(name: str | None) -> bool:
    """Whether ``name`` is an acceptable user name."""
    return name is not None and USER_RE.fullmatch(name) is not None


def parse_id(value: str) -> tuple[int, int]:
    """Split a message id into its two integers, for ordering.

    Every id that comes from outside (``before``, ``since``, admin commands) passes
    through here: both parts must fit in an unsigned 64-bit integer, as Valkey's do.

    Raises:
        ValueError: when ``value`` is not an id or a part is out of range.
    """
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise ValueError(f"not a message id: {str(value)[:60]!r}")
    ms, seq = value.split("-")
    parts = int(ms), int(seq)
    if parts[0] > ID_PART_MAX or parts[1] > ID_PART_MAX:
        raise ValueError(f"message id out of range (each part at most 2^64-1): {value!r}")
    return parts


def canonical_id(value: str) -> str | None:
    """``value`` as Valkey writes it (no leading zeros), or None when it is not a valid id."""
    try:
        ms, seq = parse_id(value)
    except ValueError:
        return None
    return f"{ms}-{seq}"


def before_first(value: str) -> bool:
    """Whether nothing can be older than id ``value`` (it is at or below :data:`FIRST_ID`)."""
    return parse_id(value) <= FIRST_ID


# -- server frames ----------------------------------------------------------


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """A stamped chat or whisper, as stored in the cache and sent to clients."""

    type: str
    id: str
    from_: str = msgspec.field(name="from")
    text: str = ""
    ts: int = 0
    to: str | None = None
    #: the channel of a chat (None for a whisper)
    channel: str | None = None


def encode(obj: Any) -> bytes:
    """Encode any frame (a dict or a :class:`Message`) to JSON bytes."""
    return _encoder.encode(obj)


def encode_error(code: str, message: str, ref: str | None = None,
                 retry_after_ms: int | None = None) -> bytes:
    """An ``error`` frame."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    if retry_after_ms is not None:
        frame["retry_after_ms"] = retry_after_ms
    return _encoder.encode(frame)


def encode_message(msg: Message, ref: str | None = None) -> bytes:
    """A ``chat`` or ``whisper`` frame; ``ref`` only on the copy for the sending connection."""
    if ref is None:
        return _encoder.encode(msg)
    d = msgspec.structs.asdict(msg)
    d["from"] = d.pop("from_")
    for key in ("to", "channel"):
        if d[key] is None:
            del d[key]
    d["ref"] = ref
    return _encoder.encode(d)


def encode_welcome(user: str, session: str, users: list[str], history: list[Message],
                   recovered: bool | None, history_partial: bool = False,
                   channels: list[str] | None = None) -> bytes:
    """The ``welcome`` frame, first after the upgrade.

    ``users``, ``history`` and ``recovered`` are those of the first of ``channels``
    (the auto-join channels). ``history_partial`` says older messages that only
    PostgreSQL holds were left out (it was down or slow); page back with ``history``.
    """
    frame: dict[str, Any] = {
        "type": "welcome", "protocol": PROTOCOL_VERSION, "user": user, "session": session,
        "users": users, "history": history, "channels": channels or [],
    }
    if recovered is not None:
        frame["recovered"] = recovered
    if history_partial:
        frame["history_partial"] = True
    return _encoder.encode(frame)


def encode_presence(kind: str, user: str, ts: int, reason: str | None = None,
                    channel: str | None = None) -> bytes:
    """A ``join`` or ``leave`` frame: ``user``'s first subscription to / last unsubscription
    from ``channel`` on any hub."""
    frame: dict[str, Any] = {"type": kind, "user": user, "ts": ts}
    if channel is not None:
        frame["channel"] = channel
    if reason is not None:
        frame["reason"] = reason
    return _encoder.encode(frame)


def encode_users(users: list[str], ref: str | None = None, channel: str | None = None) -> bytes:
    """The reply to ``users``."""
    frame: dict[str, Any] = {"type": "users", "users": users}
    if channel is not None:
        frame["channel"] = channel
    if ref is not None:
        frame["ref"] = ref
    return _encoder.encode(frame)


def encode_history(messages: list[Message], ref: str | None = None,
                   channel: str | None = None) -> bytes:
    """The reply to ``history``."""
    frame: dict[str, Any] = {"type": "history", "messages": messages}
    if channel is not None:
        frame["channel"] = channel
    if ref is not None:
        frame["ref"] = ref
    return _encoder.encode(frame)


def encode_subscribed(channel: str, users: list[str], history: list[Message],
                      recovered: bool | None, ref: str | None,
                      history_partial: bool = False) -> bytes:
    """The reply to ``subscribe``: the channel's members, history and recovery, as a welcome."""
    frame: dict[str, Any] = {"type": "subscribed", "channel": channel, "users": users,
                             "history": history}
    if recovered is not None:
        frame["recovered"] = recovered
    if history_partial:
        frame["history_partial"] = True
    if ref is not None:
        frame["ref"] = ref
    return _encoder.encode(frame)


def encode_unsubscribed(channel: str, ref: str | None = None, reason: str | None = None) -> bytes:
    """The reply to ``unsubscribe`` (or an operator's removal, with ``reason``)."""
    frame: dict[str, Any] = {"type": "unsubscribed", "channel": channel}
    if reason is not None:
        frame["reason"] = reason
    if ref is not None:
        frame["ref"] = ref
    return _encoder.encode(frame)


def encode_channels(channels: list[tuple[str, int]], ref: str | None = None) -> bytes:
    """The reply to ``channels``: ``[{"name": N, "users": U}, ...]`` sorted by name."""
    frame: dict[str, Any] = {"type": "channels",
                             "channels": [{"name": n, "users": u} for n, u in channels]}
    if ref is not None:
        frame["ref"] = ref
    return _encoder.encode(frame)


def encode_kicked(reason: str) -> bytes:
    """Sent before close 4001."""
    return _encoder.encode({"type": "kicked", "reason": reason})


def encode_banned(reason: str, until: int | None) -> bytes:
    """Sent before close 4004; ``until`` is epoch ms, or None for a ban until lifted."""
    return _encoder.encode({"type": "banned", "reason": reason, "until": until})


def encode_delete(mid: str, channel: str | None) -> bytes:
    """An operator removed message ``mid``: ``{"type": "delete", "id", "channel"}``, without
    ``channel`` for a whisper (sent to its sender and recipient only)."""
    frame: dict[str, Any] = {"type": "delete", "id": mid}
    if channel is not None:
        frame["channel"] = channel
    return _encoder.encode(frame)


SHUTDOWN_FRAME = b'{"type":"shutdown"}'
