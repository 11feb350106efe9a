"""Client frames, sans I/O: the typed messages a client may send, and their size limits.

Each frame is a frozen msgspec struct tagged by its JSON ``type``; any of them may carry
``ref`` (a string of at most :data:`MAX_REF_CHARS` characters, echoed on the reply).
Shapes are those of docs/protocol.md, "Client to server". Parsing and validating a
frame's text into one of these is :mod:`chathub.clientparse`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

#: longest ``ref`` a client may attach to a frame
MAX_REF_CHARS = 64
#: most messages one ``history`` request may ask for
MAX_HISTORY_LIMIT = 200
#: messages a ``history`` request returns when it names no limit
DEFAULT_HISTORY_LIMIT = 50

Ref = Annotated[str, msgspec.Meta(max_length=MAX_REF_CHARS)]

#: most bytes JSON may spend on one character: a character outside the BMP written as a
#: surrogate pair of escapes, "\ud83d\ude00" (RFC 8259 section 7), as Python's json.dumps does
WORST_BYTES_PER_CHAR = 12
#: bytes for the rest of the largest frame: keys, quotes, separators with json.dumps' spaces,
#: a 32-character user name escaped 6 bytes a character, and slack for whitespace
_ENVELOPE_BYTES = 512


def max_frame_bytes(max_text_chars: int) -> int:
    """The largest frame, in bytes, a client may need to carry ``max_text_chars`` of text.

    That is a ``whisper`` with the longest text and ``ref`` in the worst legal JSON
    encoding; ``server.max_message_bytes`` must be at least this (checked at start).
    """
    return WORST_BYTES_PER_CHAR * (max_text_chars + MAX_REF_CHARS) + _ENVELOPE_BYTES


class _Base(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    """What every client frame has: its ``type`` tag and an optional ``ref``."""

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


#: any client frame, as :func:`chathub.clientparse.parse` returns it
ClientMessage = Chat | Whisper | Users | History | Subscribe | Unsubscribe | Channels
#: the ``type`` of every client frame; any other is answered ``unknown_type``
KNOWN_TYPES = ("chat", "whisper", "users", "history", "subscribe", "unsubscribe", "channels")
