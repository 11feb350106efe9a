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
from collections.abc import Callable
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

    async def since(self, after: str, limit: int, channel: str | None = None
                    ) -> list[tuple[str, Message]]: ...


def message_of(payload: dict[str, Any]) -> Message:
    """The message in a bus payload ``{"k": "m", "id", "f", "t", "c"?, "to"?}``."""
    to = payload.get("to")
    return Message(type="whisper" if to else "chat", id=payload["id"], from_=payload["f"],
                   text=payload["t"], ts=int(payload["id"].split("-", 1)[0]), to=to,
                   channel=None if to else payload.get("c"))


class RemoteFeed:
    """De-duplication and gap fill for messages from other hubs; one per hub.

    Each channel (and the whispers, under ``None``) has its own order: the bus
    delivers a channel's messages in id order, so one at or below the newest
    delivered in that channel is a duplicate. A client is any hashable the hub uses
    for a connection.
    """

    def __init__(self, cache: StreamReader, node_id: str) -> None:
        self.cache = cache
        self.node_id = node_id
        #: channel (None: whispers) -> (ms, seq) of the newest message delivered in it
        self._last: dict[str | None, tuple[int, int]] = {}
        #: the last id when the bus first subscribed (where gap fills start)
        self._floor = "0-0"
        #: channel -> client -> the last id at its welcome / subscribe; messages up to it
        #: were in its history already. Kept per channel so a message looks at its own
        #: channel's recent joiners only, and per client (below) so leaving is O(1)
        self._fresh: dict[str | None, dict[Any, tuple[int, int]]] = {}
        #: client -> the channels it has an entry in under _fresh
        self._fresh_in: dict[Any, set[str | None]] = {}
        #: the last top :meth:`welcomed` parsed, and its (ms, seq)
        self._top = ""
        self._top_at = (0, 0)

    async def mark_subscribed(self) -> None:
        """Note where the streams stood when the bus first subscribed."""
        self._floor = await self.cache.last_id()

    def welcomed(self, client: Any, channel: str | None, top: str) -> None:
        """``client`` got the history of ``channel`` up to id ``top``; a channel seen for
        the first time starts from there."""
        if not top:
            return
        if top != self._top:  # a batch of welcomes shares one top: parse it once, share it
            self._top, self._top_at = top, parse_id(top)
        at = self._top_at
        last = self._last.get(channel)
        if last is None and channel is not None:
            self._last[channel] = last = at
        if last is not None and at <= last:
            # Every message admitted from now on is newer than last, hence than at: the
            # entry would never make it skip this client. Most joiners of a channel with
            # no traffic from other hubs since its last message are such, so an idle
            # hub holds no entry per subscription.
            return
        self._fresh.setdefault(channel, {})[client] = at
        self._fresh_in.setdefault(client, set()).add(channel)

    def fresh_entries(self) -> int:
        """Entries of the fresh-client bookkeeping held: (client, channel) pairs plus the
        clients they belong to; 0 once every client left."""
        return sum(len(f) for f in self._fresh.values()) + len(self._fresh_in)

    def forget(self, client: Any) -> None:
        for channel in self._fresh_in.pop(client, ()):
            self._unfresh(channel, client)

    def _unfresh(self, channel: str | None, client: Any) -> None:
        fresh = self._fresh.get(channel)
        if fresh is not None:
            fresh.pop(client, None)
            if not fresh:
                del self._fresh[channel]

    def drop_channel(self, channel: str) -> None:
        """No local subscriber is left in ``channel``: forget its order."""
        self._last.pop(channel, None)
        for client in self._fresh.pop(channel, {}):
            self._fresh_in.get(client, set()).discard(channel)

    def admit(self, msg: Message, own: bool = False) -> set[Any] | None:
        """Whether to deliver ``msg``: None for a duplicate, else the clients to leave out.

        ``own``: a message of this hub, back from the bus or past its echo deadline
        (:mod:`chathub.cluster.echo`); never a duplicate, it only moves the order on.
        """
        mid = parse_id(msg.id)
        last = self._last.get(msg.channel)
        if last is not None and mid <= last:
            if not own:
                return None  # already delivered (a gap fill got here first, or the reverse)
        else:
            self._last[msg.channel] = mid
        skip: set[Any] = set()
        for client, floor in list(self._fresh.get(msg.channel, {}).items()):
            if mid <= floor:
                skip.add(client)
            else:  # every later message is new to it too
                self._unfresh(msg.channel, client)
                self._fresh_in[client].discard(msg.channel)
        return skip

    async def missed(self, channel: str | None = None,
                     own: Callable[[Message], None] | None = None) -> list[Message]:
        """What other hubs stamped in ``channel`` (None: whispers) since the last message
        delivered there (or since the bus first subscribed): read from the streams after
        the bus came back. Empty when Valkey is down. This hub's own messages in that
        range go to ``own`` (one whose stamp timed out here may have gone nowhere yet)."""
        last = self._last.get(channel)
        after = self._floor if last is None else f"{last[0]}-{last[1]}"
        try:
            entries = await self.cache.since(after, GAP_FILL_LIMIT, channel)
        except CacheUnavailable:
            return []
        if own is not None:
            for origin, msg in entries:
                if origin == self.node_id:
                    own(msg)
        return [msg for origin, msg in entries if origin != self.node_id]
