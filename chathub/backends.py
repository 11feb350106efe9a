"""What the hub needs from its backends, as Protocols, and the values that cross them.

The hub is built with a :class:`MessageCache` and a :class:`Presence`; the daemon
hands it the Valkey implementations (:class:`chathub.cache.MessageCache`,
:class:`chathub.cluster.presence.Presence`) and a unit test the in-memory ones in
:mod:`chathub.memory`, so join/leave, whisper routing, slow consumers and batching
are tested in milliseconds without a server. The model is centrifuge's ``Broker``
and ``PresenceManager`` interfaces, each with a memory and a Redis implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .protocol import Message


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A chat or whisper waiting for an id."""

    sender: str
    text: str
    to: str | None = None
    #: the channel of a chat (None: the default channel); whispers have none
    channel: str | None = None
    #: skip the sender's chat/whisper rate budget (the HTTP API: its key's budget applies)
    unlimited: bool = False
    #: "<session>:<ref>" when the sender gave a ref: a resend with the same one and the
    #: same text within two minutes is recognised (:class:`Resent`), never stored twice
    resend_key: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The cache stamped the message: deliver ``message``."""

    message: Message
    #: whether it was also published to the other hubs (then it comes back to this hub on
    #: the bus too, in id order with theirs)
    published: bool = False


@dataclass(frozen=True, slots=True)
class Resent:
    """A resend of a message stamped already (its answer was lost): nothing stored again;
    ``message`` is the one stamped first."""

    message: Message


@dataclass(frozen=True, slots=True)
class UnknownUser:
    """The whisper's recipient is online on no hub: nothing stored."""


@dataclass(frozen=True, slots=True)
class Failed:
    """Valkey refused this one message (an error reply): nothing stored."""

    error: str


@dataclass(frozen=True, slots=True)
class Recent:
    """A welcome's history: ``messages`` oldest first; ``top`` the last id issued (in any
    stream) when read; ``partial`` when older messages that PostgreSQL holds were left
    out; ``floor`` the newest id of the channel when read (the order a subscriber starts
    from, :meth:`chathub.cluster.relay.RemoteFeed.welcomed`; ``top`` when unknown)."""

    messages: list[Message]
    top: str
    partial: bool
    floor: str = ""

    @property
    def since(self) -> str:
        """Where this history leaves its reader in its channel: ``floor``, else ``top``."""
        return self.floor or self.top


@dataclass(frozen=True, slots=True)
class Limited:
    """Over the sender's budget: nothing stored; try again after ``retry_after_ms``.
    ``slow``: the channel's slow-mode budget refused it (chathub.slowmode)."""

    retry_after_ms: int
    slow: bool = False


Stamped = Accepted | Resent | Limited | UnknownUser | Failed


@dataclass(frozen=True, slots=True)
class Joined:
    """The outcome of one subscription: ``status`` "ok", "unknown" (no such channel and
    channels are not created on demand) or "full" (``max_channels`` reached); ``first``
    when it is the user's first subscription to the channel on any hub; ``members`` the
    channel's members (sorted) when asked for."""

    status: str
    first: bool
    members: list[str] | None


class MessageCache(Protocol):
    """Ids, recent history and rate limits. Every method may raise
    :class:`~chathub.errors.CacheUnavailable`, which the hub answers ``unavailable``."""

    async def accept(self, batch: Sequence[Outgoing]) -> list[Stamped]:
        """Rate-limit and stamp ``batch`` in one round trip; results in the same order.
        Accepted messages are also published to the other hubs, in id order."""
        ...

    async def recent(self, channel: str | None = None) -> Recent:
        """A welcome's (or ``subscribed`` reply's) history of ``channel`` (default: the
        first auto-join channel); no wait on PostgreSQL: the hub loop calls it."""
        ...

    async def recent_many(self, channels: Sequence[str]) -> dict[str, Recent]:
        """:meth:`recent` of several channels in one round trip."""
        ...

    async def prepare_welcome(self, channel: str | None = None) -> None:
        """Wait, bounded, for what a welcome (``channel`` None) or a ``subscribed`` reply to
        ``channel`` needs from slower storage (not in the hub loop)."""
        ...

    async def recover(self, since: str, user: str, channel: str | None = None,
                      whispers: bool = True) -> tuple[list[Message] | None, str]:
        """What ``user`` missed after ``since`` in ``channel`` (and their whispers, with
        ``whispers``); None when it cannot be told; and the last id."""
        ...

    async def history(self, before: str | None, limit: int, channel: str | None = None
                      ) -> list[Message]:
        """Messages of ``channel`` older than ``before``, oldest first (not in the hub loop)."""
        ...

    async def last_id(self) -> str:
        """The id of the newest message ever stamped ("0-0" before the first)."""
        ...

    async def since(self, after: str, limit: int, channel: str | None = None
                    ) -> list[tuple[str, Message]]:
        """Up to ``limit`` messages after ``after`` in ``channel`` (None: whispers), oldest
        first, as (origin node, message)."""
        ...


class Presence(Protocol):
    """Who is online on any hub. Every method may raise
    :class:`~chathub.errors.CacheUnavailable`; the hub then falls back to what it knows."""

    async def connect(self, users: list[str]) -> list[str] | None:
        """Record one new connection per entry; everyone online when other hubs exist, else
        None (``join`` is per channel: :meth:`subscribe` says when one is due)."""
        ...

    async def disconnect_many(self, users: list[str]) -> list[bool]:
        """Record a closed connection for each of ``users`` (a user once per connection),
        in order and in one round trip; for each, whether it was the user's last anywhere."""
        ...

    async def users(self) -> list[str]:
        """Everyone online on any hub, sorted."""
        ...

    async def subscribe(self, subs: list[tuple[str, str, bool, bool]], *, create: bool,
                        max_channels: int, kept: bool = False) -> list[Joined]:
        """Record (channel, user, private, want members) subscriptions, creating channels
        when ``create`` (up to ``max_channels``); a :class:`Joined` for each. At
        ``max_channels``, channels created here (unless ``kept``) that have no member
        and no history are forgotten to make room."""
        ...

    async def unsubscribe(self, subs: list[tuple[str, str, str]]) -> list[bool]:
        """Record (channel, user, reason) unsubscriptions; for each, whether it was the
        user's last subscription to the channel anywhere (a ``leave`` is due)."""
        ...

    async def create(self, channel: str, private: bool, by: str, max_channels: int) -> str:
        """Create ``channel``: "ok", "exists", or "full" (``max_channels`` reached); a
        channel a subscribe created is kept from then on."""
        ...

    async def members(self, channel: str) -> list[str]:
        """Who is subscribed to ``channel`` on any hub, sorted."""
        ...

    async def channels(self, private: bool = False) -> list[tuple[str, int, bool]]:
        """(name, members, private) of every channel, sorted; public ones unless ``private``."""
        ...

    async def resync(self, counts: dict[str, int],
                     subs: dict[tuple[str, str], int] | None = None) -> list[str]:
        """Replace this hub's presence with ``counts`` (user -> connections) and ``subs``
        ((channel, user) -> subscriptions); everyone online, sorted."""
        ...
