"""This hub's own messages, delivered in bus order when other hubs share the cache.

When a hub is alone it delivers a message as soon as the cache stamped it. With
other hubs, that would let a local message overtake one another hub stamped a
moment earlier (a smaller id, still on its way over the bus): a client would see
ids out of order, and its "highest id seen" would be an unsafe ``?since=`` (the
message with the smaller id would be skipped on recovery). The stamping function
publishes every message in id order on the one subscribed connection each hub
reads (:mod:`chathub.cluster.bus`), so a hub that waits for its *own* message to
come back on the bus delivers everything, its own and others', in id order.

:class:`OwnEchoes` holds a stamped message until its echo arrives. An echo also
releases every held message with a smaller id (its echo was lost: the bus
resubscribed in between). A message whose echo does not come within
:data:`ECHO_WAIT` is delivered anyway, so a lost subscription delays the hub's own
messages by at most that long and loses none. The hub calls this from its loop; it
never touches a client.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from ..protocol import Message, parse_id

#: seconds a stamped message waits for its echo before it is delivered without it: far
#: above a bus round trip on a busy hub (well under 10 ms), short enough that a lost
#: subscription only slows the hub's own messages, never loses them
ECHO_WAIT = 1.0


@dataclass(slots=True)
class Held:
    """A stamped message of this hub, waiting for its echo."""

    message: Message
    #: the frame for everyone, and the one for its sender (with the sender's ``ref``)
    frame: bytes
    own: bytes
    #: the sending connection (None for the HTTP API)
    sender: Any
    #: loop time it was stamped (seconds)
    held_at: float
    #: (ms, seq) of its id, for ordering
    key: tuple[int, int]


class OwnEchoes:
    """The hub's own stamped messages waiting for their echo, in id order."""

    def __init__(self, wait: float = ECHO_WAIT) -> None:
        #: seconds a message waits for its echo (:data:`ECHO_WAIT`)
        self.wait = wait
        self._held: deque[Held] = deque()
        #: messages delivered at their deadline, without their echo (for stats)
        self.timed_out = 0

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, message: Message, frame: bytes, own: bytes, sender: Any, now: float) -> None:
        """Keep ``message`` (stamped after every message held) until its echo."""
        self._held.append(Held(message, frame, own, sender, now, parse_id(message.id)))

    def arrived(self, message_id: str) -> list[Held]:
        """The echo of ``message_id`` came: it and every held message before it, to deliver
        now in id order (empty when it was delivered already, at its deadline)."""
        key = parse_id(message_id)
        out: list[Held] = []
        held = self._held
        while held and held[0].key <= key:
            out.append(held.popleft())
        return out

    def due(self, now: float) -> list[Held]:
        """Held messages whose echo is later than :attr:`wait` seconds at ``now``, and
        every one before them, to deliver now in id order."""
        out: list[Held] = []
        held = self._held
        while held and held[0].held_at + self.wait <= now:
            out.append(held.popleft())
        self.timed_out += len(out)
        return out

    def next_due(self) -> float | None:
        """Loop time at which the oldest held message is due, or None when none is held."""
        return self._held[0].held_at + self.wait if self._held else None

    def drain(self) -> list[Held]:
        """Every held message (the hub is stopping)."""
        out = list(self._held)
        self._held.clear()
        return out
