"""What other hubs stamped, delivered here exactly once and in id order.

Several hubs share one Valkey stream. A message another hub stamped arrives here
on the bus; while the bus was down, it is read from the stream afterwards (a gap
fill). :class:`RemoteFeed` decides, for each such message, whether it is new
(the bus delivers in id order, so anything at or below the newest delivered is a
duplicate) and which of this hub's clients already have it (those that joined
after it was stamped got it in their welcome history). The hub calls it from its
loop, in order with everything else; it never touches a client.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ..errors import CacheUnavailable
from ..protocol import Message, parse_id

log = logging.getLogger("chathub.cluster.relay")

#: most messages delivered from the stream after the bus resubscribed (a longer gap is
#: left to the clients' own recovery with ?since=)
GAP_FILL_LIMIT = 10_000


class StreamReader(Protocol):
    """The part of the message cache a gap fill reads."""

    async def last_id(self) -> str: ...

    async def since(self, after: str, limit: int) -> list[tuple[str, Message]]: ...


def message_of(payload: dict[str, Any]) -> Message:
    """The message in a bus payload ``{"k": "m", "id", "f", "t", "to"?}``."""
    return Message(type="whisper" if payload.get("to") else "chat", id=payload["id"],
                   from_=payload["f"], text=payload["t"],
                   ts=int(payload["id"].split("-", 1)[0]), to=payload.get("to"))


class RemoteFeed:
    """De-duplication and gap fill for messages from other hubs; one per hub.

    ``K`` is whatever identifies a client to the hub (its connection object).
    """

    def __init__(self, cache: StreamReader, node_id: str) -> None:
        self.cache = cache
        self.node_id = node_id
        #: (ms, seq) of the newest message delivered from another hub
        self._last: tuple[int, int] | None = None
        #: the stream's last id when the bus first subscribed (where gap fills start)
        self._floor = "0-0"
        #: clients that joined recently -> the stream's last id at their welcome; messages
        #: from other hubs up to it were in their welcome already
        self._fresh: dict[Any, tuple[int, int]] = {}

    async def mark_subscribed(self) -> None:
        """Note where the stream stood when the bus first subscribed."""
        self._floor = await self.cache.last_id()

    def welcomed(self, client: Any, top: str) -> None:
        """``client`` got a welcome with history up to id ``top``."""
        if top:
            self._fresh[client] = parse_id(top)

    def forget(self, client: Any) -> None:
        self._fresh.pop(client, None)

    def admit(self, msg: Message) -> set[Any] | None:
        """Whether to deliver ``msg``: None for a duplicate, else the clients to leave out."""
        mid = parse_id(msg.id)
        if self._last is not None and mid <= self._last:
            return None  # already delivered (a gap fill got here first, or the reverse)
        self._last = mid
        skip: set[Any] = set()
        for c, floor in list(self._fresh.items()):
            if mid <= floor:
                skip.add(c)
            else:
                del self._fresh[c]  # every later message is new to it too
        return skip

    async def missed(self) -> list[Message]:
        """What other hubs stamped since the last message delivered (or since the bus first
        subscribed): read from the stream after the bus came back. Empty when Valkey is down."""
        after = self._floor
        if self._last is not None:
            after = f"{self._last[0]}-{self._last[1]}"
        try:
            entries = await self.cache.since(after, GAP_FILL_LIMIT)
        except CacheUnavailable:
            return []
        return [msg for origin, msg in entries if origin != self.node_id]
