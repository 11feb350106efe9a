"""Parsing client frames, sans I/O: one frame's text in, a validated message out.

:func:`parse` turns the payload of one client text frame into a
:class:`~chathub.clientframes.Chat`, ``Whisper``, ``Users``, ``History``, ``Subscribe``,
``Unsubscribe`` or ``Channels``, checked so the caller may act on it at once, or raises
:class:`~chathub.errorcodes.ProtocolError` carrying the error code to send back
(``bad_request``, ``unknown_type`` or ``too_long``). Valid frames take the fast path
(one typed msgspec decode); only a refused one is decoded again to explain why.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .clientframes import (
    KNOWN_TYPES,
    MAX_HISTORY_LIMIT,
    MAX_REF_CHARS,
    Chat,
    ClientMessage,
    History,
    Subscribe,
    Whisper,
)
from .errorcodes import BAD_REQUEST, TOO_LONG, UNKNOWN_TYPE, ProtocolError
from .identifiers import USER_RE, canonical_id, valid_channel

#: control characters refused in text (all of C0 but tab and newline, DEL, C1)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

#: the fast path: decodes and type-checks a frame in one pass
_decoder = msgspec.json.Decoder(ClientMessage)
#: the slow path, for a refused frame only: any JSON, to tell which error it was
_any_decoder = msgspec.json.Decoder()


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

    Args:
        text: a ``chat`` or ``whisper`` text.
        max_chars: the most characters (code points) it may have; the server's
            ``max_text_chars``.
        ref: the frame's ``ref``, put on the error.

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
        data: the frame's payload (text frames arrive as ``str``; ``bytes``, a binary
            frame, is refused).
        max_text_chars: the server's ``max_text_chars``: the most characters a
            ``chat`` or ``whisper`` text may have.

    Returns:
        One of :data:`~chathub.clientframes.ClientMessage`, fully validated: the caller
        may act on it at once. Its ``channel`` (when set) is a valid channel name, a
        whisper's ``to`` a valid user name, a history ``limit`` 1 to
        :data:`~chathub.clientframes.MAX_HISTORY_LIMIT`, and ``before`` / ``since``
        ids are in canonical form (no leading zeros).

    Raises:
        ProtocolError: ``bad_request``, ``unknown_type`` or ``too_long``, to send back;
            the connection stays open.
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

