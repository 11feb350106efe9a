"""Stream entries as chathub writes them to Valkey, read back as messages.

A channel's stream holds ``[id, [f, sender, t, text, n, node]]``; the whisper stream
adds ``to``; the flush queue adds ``c`` (the channel, ``""`` for a whisper) and also
carries channel records (``k = "channel"``). valkey-py gives the fields as a list or,
with some reply callbacks, as a dict. The message cache, the flusher and the audit
trail read them here.
"""

from __future__ import annotations

from collections.abc import Sequence

from .protocol import Message

#: the consumer group that flushes the queue to PostgreSQL
FLUSH_GROUP = "flusher"


def entry_fields(entry: Sequence[object]) -> dict[str, str]:
    """The fields of a stream entry, whether the client parsed them into a dict or not."""
    fields = entry[1]
    if isinstance(fields, dict):
        return fields
    assert isinstance(fields, list)
    return dict(zip(fields[::2], fields[1::2], strict=True))


def entry_to_message(entry: Sequence[object], channel: str | None = None) -> Message:
    """A stream entry ``[id, [field, value, ...]]`` as a :class:`Message`.

    Entries of the flush queue name their channel (``c``); those of a channel's
    stream do not, so the caller passes it.
    """
    mid = str(entry[0])
    d = entry_fields(entry)
    to = d.get("to")
    if channel is None:
        channel = d.get("c") or None
    return Message(type="whisper" if to is not None else "chat", id=mid, from_=d["f"],
                   text=d["t"], ts=int(mid.split("-", 1)[0]), to=to,
                   channel=None if to is not None else channel)
