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

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from ..protocol import Message, parse_id

#: seconds a stamped message waits for its echo before it is delivered without it: far
#: above a bus round trip on a busy hub (well under 10 ms), short enough that a lost
#: subscription only slows the hub's own messages, never loses them
ECHO_WAIT = 1.0
#: ids remembered as delivered without their echo (so a late echo is not delivered
#: again): far more than the messages one hub stamps while an echo is late
REMEMBERED = 4096


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
        #: ids of this hub's published messages delivered without waiting for the echo
        self._done: OrderedDict[str, None] = OrderedDict()
        #: (user, text) -> (connection, ref) of messages whose stamp timed out
        self._unsure: OrderedDict[tuple[str, str], tuple[Any, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, message: Message, frame: bytes, own: bytes, sender: Any, now: float) -> None:
        """Keep ``message`` (stamped after every message held) until its echo."""
        self._held.append(Held(message, frame, own, sender, now, parse_id(message.id)))

    def delivered(self, message_id: str) -> None:
        """A message of this hub went out (without waiting, at its deadline, on its echo):
        a late echo or a resend of it is not news."""
        done = self._done
        done[message_id] = None
        if len(done) > REMEMBERED:
            done.popitem(last=False)

    def unsure(self, user: str, text: str, sender: Any, ref: str) -> None:
        """A stamp of ``text`` by ``user`` timed out: if its echo comes, it answers ``ref``
        on ``sender``'s connection."""
        unsure = self._unsure
        unsure[(user, text)] = (sender, ref)
        if len(unsure) > REMEMBERED:
            unsure.popitem(last=False)

    def sender_of(self, user: str, text: str) -> tuple[Any, str | None]:
        """The connection and ref an orphan echo answers, or (None, None)."""
        return self._unsure.pop((user, text), (None, None))

    def seen(self, message_id: str) -> bool:
        """Whether ``message_id`` went out here already or is held for its echo."""
        return message_id in self._done or any(h.message.id == message_id for h in self._held)

    def arrived(self, message_id: str) -> tuple[list[Held], bool]:
        """The echo of ``message_id`` came: it and every held message before it, to deliver
        now in id order; and whether the echo is an *orphan*: a message this hub stamped
        but never heard the answer for (the stamp timed out), which nobody here has yet.
        A held message and one delivered already (at its deadline, or without waiting)
        are not orphans."""
        key = parse_id(message_id)
        out: list[Held] = []
        held = self._held
        while held and held[0].key <= key:
            out.append(held.popleft())
        if out and out[-1].message.id == message_id:
            return out, False
        if message_id in self._done:
            return out, False
        return out, True

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
