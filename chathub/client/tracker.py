"""What a client has seen, per channel: the ``since`` to resume from and de-duplication.
Sans I/O.

Channel ``None`` is the default channel (also under its name, :attr:`Tracker.default`,
once a protocol v2 welcome said it); whispers count there too, because the server
recovers a user's whispers with the connection's ``?since=``.
"""

from __future__ import annotations

from collections import deque

from .events import Chat, Whisper

#: ids remembered per channel for de-duplication. A duplicate can only come from a
#: reconnect's recovery overlapping what was already received, which is at most the
#: server's history_on_join/recovery window; 4096 is well above it.
SEEN_IDS = 4096


def id_key(message_id: str) -> tuple[int, int]:
    """An id ``"<ms>-<seq>"`` as two integers, for ordering (ValueError when it is not one)."""
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq)


class ChannelView:
    """One channel: the highest id seen and the recent ids, for :meth:`admit`."""

    def __init__(self, seen_ids: int = SEEN_IDS) -> None:
        #: the highest id seen (the ``since`` of a resume), or None before any message
        self.last_id: str | None = None
        self._last_key: tuple[int, int] | None = None
        self._seen: set[str] = set()
        self._order: deque[str] = deque()
        self._limit = seen_ids

    def reset(self) -> None:
        """Forget everything seen: the server could not recover what was missed, or the
        ids came from another message cache (docs/protocol.md, welcome)."""
        self.last_id, self._last_key = None, None
        self._seen.clear()
        self._order.clear()

    def admit(self, message_id: str) -> bool:
        """Record ``message_id``; False when it was seen before (a duplicate to drop)."""
        if message_id in self._seen:
            return False
        self._seen.add(message_id)
        self._order.append(message_id)
        if len(self._order) > self._limit:
            self._seen.discard(self._order.popleft())
        try:
            key = id_key(message_id)
        except ValueError:
            return True
        if self._last_key is None or key > self._last_key:
            self._last_key, self.last_id = key, message_id
        return True


class Tracker:
    """Every channel's :class:`ChannelView`, keyed by channel name (None: default)."""

    def __init__(self) -> None:
        self.views: dict[str | None, ChannelView] = {None: ChannelView()}
        #: the default channel's name (v2 welcome ``channels[0]``); kept under None
        self.default: str | None = None

    def _key(self, channel: str | None) -> str | None:
        return None if channel == self.default else channel

    def view(self, channel: str | None) -> ChannelView:
        channel = self._key(channel)
        v = self.views.get(channel)
        if v is None:
            v = self.views[channel] = ChannelView()
        return v

    def admit(self, msg: Chat | Whisper) -> bool:
        """Record a message; False when it is a duplicate."""
        channel = msg.channel if isinstance(msg, Chat) else None
        return self.view(channel).admit(msg.id)

    def since(self, channel: str | None) -> str | None:
        """The id to resume ``channel`` from, or None when nothing was seen there."""
        v = self.views.get(self._key(channel))
        return v.last_id if v else None

    def fresh(self, messages: list[Chat | Whisper]) -> list[Chat | Whisper]:
        """The messages of a welcome/subscribed history not seen before, in order."""
        return [m for m in messages if self.admit(m)]
