"""What a :class:`~chathub.client.ChatClient` yields: one typed event per server frame,
plus a few the client makes itself (connection lost, gap, overflow). Sans I/O.

:func:`decode` turns one server frame's text into an event. It never raises: a frame
of a type this version does not know, or a known type with a shape it cannot read,
becomes :class:`Unknown` carrying the decoded JSON, so a newer server never breaks an
older client. Field names follow docs/protocol.md; ``from`` is ``from_`` in Python.

Frames of protocol v2 (channels) are read too: ``subscribed``, ``unsubscribed``,
``channels``, ``delete``, ``muted``, ``unmuted``, and the ``channel`` field of ``chat``,
``join``, ``leave``, ``users`` and ``history``; a v1 server never sends them, and their
fields default to None.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event."""


class _Frame(Event, tag_field="type", frozen=True, kw_only=True):
    """An event that is a server frame; ``type`` on the wire picks the class."""


# -- messages -----------------------------------------------------------------


class Chat(_Frame, tag="chat", frozen=True, kw_only=True):
    """A public message. ``channel`` is None for the default channel (all of v1).

    ``ref`` is set on the copy sent back to the connection that sent it.
    """

    id: str
    from_: str = msgspec.field(name="from")
    text: str
    #: milliseconds since the epoch
    ts: int
    channel: str | None = None
    ref: str | None = None


class Whisper(_Frame, tag="whisper", frozen=True, kw_only=True):
    """A private message between ``from_`` and ``to``; every connection of both gets it."""

    id: str
    from_: str = msgspec.field(name="from")
    to: str
    text: str
    #: milliseconds since the epoch
    ts: int
    ref: str | None = None


Message = Chat | Whisper


# -- server frames -------------------------------------------------------------


class Welcome(_Frame, tag="welcome", frozen=True, kw_only=True):
    """First frame of every connection (also after each reconnect).

    ``history`` holds only messages this client had not seen yet (the client
    de-duplicates it); ``recovered`` is None when no ``since`` was sent.
    ``reconnected`` is set by the client: False on the first connection.
    """

    user: str
    session: str = ""
    users: list[str] = []
    history: list[Chat | Whisper] = []
    recovered: bool | None = None
    history_partial: bool = False
    protocol: int = 1
    #: v2: the channels this connection joined at once; the first is the default channel
    channels: list[str] = []
    reconnected: bool = False


class Join(_Frame, tag="join", frozen=True, kw_only=True):
    """A user's first connection opened."""

    user: str
    ts: int = 0
    channel: str | None = None


class Leave(_Frame, tag="leave", frozen=True, kw_only=True):
    """A user's last connection closed; ``reason`` as the server recorded it."""

    user: str
    ts: int = 0
    reason: str | None = None
    channel: str | None = None


class Users(_Frame, tag="users", frozen=True, kw_only=True):
    """Reply to ``users``: sorted names."""

    users: list[str]
    channel: str | None = None
    ref: str | None = None


class History(_Frame, tag="history", frozen=True, kw_only=True):
    """Reply to ``history``: public chat older than ``before``, oldest first; empty at the start."""

    messages: list[Chat]
    channel: str | None = None
    ref: str | None = None


class Error(_Frame, tag="error", frozen=True, kw_only=True):
    """An ``error`` frame no request of this client was waiting for (no or unknown ``ref``).

    :meth:`exception` gives the typed :class:`~chathub.client.errors.ChatError`.
    """

    code: str
    message: str = ""
    ref: str | None = None
    retry_after_ms: int | None = None

    def exception(self) -> Exception:
        from .errors import error_for

        return error_for(self.code, self.message, self.retry_after_ms)


class Kicked(_Frame, tag="kicked", frozen=True, kw_only=True):
    """Terminal: an operator kicked this user (close 4001). The client does not reconnect."""

    reason: str = ""


class Banned(_Frame, tag="banned", frozen=True, kw_only=True):
    """Terminal: an operator banned this user (close 4004) until ``until`` (epoch ms; None:
    until lifted). The client does not reconnect."""

    reason: str = ""
    until: int | None = None


class Muted(_Frame, tag="muted", frozen=True, kw_only=True):
    """An operator muted this user until ``until`` (epoch ms; None: until lifted); chats and
    whispers are refused with ``muted`` meanwhile. Also sent right after the welcome
    while a mute is in force. The connection stays open."""

    reason: str = ""
    until: int | None = None


class Unmuted(_Frame, tag="unmuted", frozen=True, kw_only=True):
    """An operator lifted this user's mute (a mute that runs out sends nothing)."""


class Delete(_Frame, tag="delete", frozen=True, kw_only=True):
    """An operator removed message ``id``: take it off the screen. ``channel`` is None
    for a whisper (sent to its sender and recipient). The client has already dropped it
    from the events not yet read, and history never returns it again."""

    id: str
    channel: str | None = None


class Shutdown(_Frame, tag="shutdown", frozen=True, kw_only=True):
    """The daemon is stopping (close 1001 follows); the client reconnects with backoff."""


class Subscribed(_Frame, tag="subscribed", frozen=True, kw_only=True):
    """v2: reply to ``subscribe``. ``history`` is de-duplicated like a welcome's."""

    channel: str
    users: list[str] = []
    history: list[Chat] = []
    recovered: bool | None = None
    ref: str | None = None


class Unsubscribed(_Frame, tag="unsubscribed", frozen=True, kw_only=True):
    """v2: reply to ``unsubscribe``, or the server ended a subscription: ``reason`` is
    ``kicked``, ``banned`` or ``deleted``, ``message`` the operator's words, and ``until``
    when a channel ban ends (epoch ms; None: until lifted, or not a ban)."""

    channel: str
    ref: str | None = None
    reason: str | None = None
    message: str | None = None
    until: int | None = None


class ChannelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One public channel of a ``channels`` reply and how many users are in it."""

    name: str
    users: int = 0


class Channels(_Frame, tag="channels", frozen=True, kw_only=True):
    """v2: reply to ``channels``: the public channels, sorted by name."""

    channels: list[ChannelInfo]
    ref: str | None = None


class Unknown(Event, frozen=True, kw_only=True):
    """A frame this client cannot read: an unknown ``type``, or a known one of the wrong shape.

    ``frame`` is the decoded JSON (None when the text was not JSON); ``problem`` says why.
    """

    type: str | None
    frame: Any
    problem: str


# -- events the client makes ------------------------------------------------------


class ConnectionLost(Event, frozen=True, kw_only=True):
    """The connection dropped; the client reconnects in ``retry_in`` seconds.

    ``code``/``reason`` are the close frame's (None when the network failed), or the
    HTTP ``status`` of a refused reconnect.
    """

    code: int | None = None
    reason: str = ""
    status: int | None = None
    retry_in: float = 0.0
    attempt: int = 0


class Gap(Event, frozen=True, kw_only=True):
    """Messages may be missing in ``channel`` (None: the default channel and whispers).

    After a reconnect the server answered ``recovered: false``: what was sent after
    ``since`` is older than its cache reaches, or ``since`` came from another message
    cache. The client forgets what it saw in that channel (the history that follows is
    the server's recent one); page back with ``history`` to fill in.
    """

    channel: str | None
    since: str | None


class Overflow(Event, frozen=True, kw_only=True):
    """The application did not read events fast enough: ``dropped`` were discarded.

    The client keeps reading the socket whatever the application does, into a buffer
    of ``ChatClient(max_events=...)`` events; past that, messages are dropped and
    counted here, with the first and last id dropped (fetch them with ``history``).
    """

    dropped: int
    first_id: str | None = None
    last_id: str | None = None


class Closed(Event, frozen=True, kw_only=True):
    """Terminal: the server closed for good (a terminal close code, or a refusal on
    reconnect that retrying will not change, such as HTTP 401). Last event."""

    code: int | None = None
    reason: str = ""
    status: int | None = None


#: events after which the client stops and yields nothing more
TERMINAL = (Kicked, Banned, Closed)

_FRAMES: dict[str, type[_Frame]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (Chat, Whisper, Welcome, Join, Leave, Users, History, Error, Kicked, Banned,
                Muted, Unmuted, Shutdown, Subscribed, Unsubscribed, Channels, Delete)
}
_json = msgspec.json.Decoder()


def decode(data: str | bytes) -> Event:
    """One server frame's text to its event; :class:`Unknown` when it cannot be read.

    Unknown fields of known frames are ignored (a newer server may add some).
    """
    try:
        obj = _json.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        return Unknown(type=None, frame=None, problem=f"not JSON: {exc}")
    kind = obj.get("type") if isinstance(obj, dict) else None
    cls = _FRAMES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return Unknown(type=kind if isinstance(kind, str) else None, frame=obj,
                       problem="unknown frame type")
    try:
        return msgspec.convert(obj, cls)
    except msgspec.ValidationError as exc:
        return Unknown(type=kind, frame=obj, problem=str(exc))
