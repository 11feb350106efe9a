"""Server frames, sans I/O: typed values in, the UTF-8 JSON payload of one frame out.

Each ``encode_*`` function returns ``bytes`` (compact JSON; an optional field that is
None is left out), built once and sent to many connections; :mod:`chathub.framing`
wraps a payload in the bytes of a WebSocket frame. Shapes are those of
docs/protocol.md, "Server to client"; ``ts`` and ``until`` are epoch milliseconds,
``retry_after_ms`` milliseconds. :func:`encode` raises ``TypeError`` for a value
msgspec cannot encode; the ``encode_*`` functions do not raise on arguments of their
annotated types.
"""

from __future__ import annotations

from typing import Any

import msgspec

#: 2 adds channels (subscribe, unsubscribe, channels; a channel on chat, join, leave,
#: users and history); every v1 frame keeps its meaning (docs/protocol.md)
PROTOCOL_VERSION = 2

_encoder = msgspec.json.Encoder()


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """A stamped chat or whisper, as stored in the cache and sent to clients.

    Encodes as ``{"type","id","from","text","ts","to"?,"channel"?}``: ``type`` is
    ``"chat"`` or ``"whisper"``, ``id`` a message id (``"<ms>-<seq>"``), ``ts`` epoch ms.
    """

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


def _encode(frame: dict[str, Any], **optional: Any) -> bytes:
    """``frame`` with each ``optional`` field that is not None added in the order given,
    as JSON bytes."""
    for key, value in optional.items():
        if value is not None:
            frame[key] = value
    return _encoder.encode(frame)


def encode_error(code: str, message: str, ref: str | None = None,
                 retry_after_ms: int | None = None) -> bytes:
    """An ``error`` frame: ``{"type":"error","code","message","ref"?,"retry_after_ms"?}``."""
    return _encode({"type": "error", "code": code, "message": message},
                   ref=ref, retry_after_ms=retry_after_ms)


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
    (the auto-join channels); ``recovered`` None leaves it out (no ``since`` was given).
    ``history_partial`` says older messages that only PostgreSQL holds were left out
    (it was down or slow); page back with ``history``.
    """
    return _encode({"type": "welcome", "protocol": PROTOCOL_VERSION, "user": user,
                    "session": session, "users": users, "history": history,
                    "channels": channels or []},
                   recovered=recovered, history_partial=True if history_partial else None)


def encode_presence(kind: str, user: str, ts: int, reason: str | None = None,
                    channel: str | None = None) -> bytes:
    """A ``join`` or ``leave`` frame: ``user``'s first subscription to / last unsubscription
    from ``channel`` on any hub; ``ts`` is epoch ms."""
    return _encode({"type": kind, "user": user, "ts": ts}, channel=channel, reason=reason)


def encode_users(users: list[str], ref: str | None = None, channel: str | None = None) -> bytes:
    """The reply to ``users``: ``{"type":"users","users":[...],"channel"?,"ref"?}``."""
    return _encode({"type": "users", "users": users}, channel=channel, ref=ref)


def encode_history(messages: list[Message], ref: str | None = None,
                   channel: str | None = None) -> bytes:
    """The reply to ``history``: ``{"type":"history","messages":[...],"channel"?,"ref"?}``."""
    return _encode({"type": "history", "messages": messages}, channel=channel, ref=ref)


def encode_subscribed(channel: str, users: list[str], history: list[Message],
                      recovered: bool | None, ref: str | None,
                      history_partial: bool = False) -> bytes:
    """The reply to ``subscribe``: the channel's members, history and recovery, as a welcome."""
    return _encode({"type": "subscribed", "channel": channel, "users": users,
                    "history": history},
                   recovered=recovered, history_partial=True if history_partial else None,
                   ref=ref)


def encode_unsubscribed(channel: str, ref: str | None = None, reason: str | None = None,
                        message: str | None = None, until: int | None = None) -> bytes:
    """The reply to ``unsubscribe``, or an operator's removal with ``reason`` (``kicked``,
    ``banned``, ``deleted``) and the operator's words in ``message`` when there are any.
    A removal for a channel ban also carries ``until`` (epoch ms; ``null`` until lifted)."""
    frame: dict[str, Any] = {"type": "unsubscribed", "channel": channel}
    if reason == "banned":
        frame.update(reason=reason, until=until)
        reason = None
    return _encode(frame, reason=reason, message=message or None, ref=ref)


def encode_channels(channels: list[tuple[str, int]], ref: str | None = None) -> bytes:
    """The reply to ``channels``: ``[{"name": N, "users": U}, ...]`` from ``(name, users)``
    pairs, in the order given (the caller sorts them by name)."""
    return _encode({"type": "channels",
                    "channels": [{"name": n, "users": u} for n, u in channels]}, ref=ref)


def encode_kicked(reason: str) -> bytes:
    """Sent before close 4001."""
    return _encoder.encode({"type": "kicked", "reason": reason})


def encode_banned(reason: str, until: int | None) -> bytes:
    """Sent before close 4004; ``until`` is epoch ms, or None (``null``) for a ban until
    lifted."""
    return _encoder.encode({"type": "banned", "reason": reason, "until": until})


def encode_muted(reason: str, until: int | None) -> bytes:
    """An operator muted this user (the connection stays open; chats and whispers are
    refused with ``muted`` until ``until``, epoch ms, or ``null`` until lifted)."""
    return _encoder.encode({"type": "muted", "reason": reason, "until": until})


#: an operator lifted this user's mute before it ran out
UNMUTED_FRAME = b'{"type":"unmuted"}'


def encode_delete(mid: str, channel: str | None) -> bytes:
    """An operator removed message ``mid``: ``{"type": "delete", "id", "channel"}``, without
    ``channel`` for a whisper (sent to its sender and recipient only)."""
    return _encode({"type": "delete", "id": mid}, channel=channel)


#: sent before close 1001 when the daemon stops
SHUTDOWN_FRAME = b'{"type":"shutdown"}'
